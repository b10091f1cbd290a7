"""The local sandbox: a stand-in for Twilio that runs on loopback.

REST side: `state` holds the account (numbers, messages, calls) and announces changes as events;
`rest` serves Twilio's REST API over it; `openapi` checks every request and response against
Twilio's OpenAPI description; `server` runs it all on waitress in a background thread.

Carrier side: `webhook_client` calls the app as Twilio does (signed, timeouts, fallbacks);
`twiml` parses and checks TwiML; `voice` carries out a call, `messaging` a text; `queues` holds
callers in <Enqueue>; `stop_filter` is Twilio's STOP/START handling on long codes.

Errors come in two kinds with separate code ranges: `rest_errors` holds the 2xxxx codes the REST
API answers a bad request with (an HTTP error and Twilio's JSON body); `webhook_errors` the
11xxx-14xxx codes the carrier reports when the app's webhook or TwiML fails (debugger notices).
"""
