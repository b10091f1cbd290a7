"""The local sandbox: a stand-in for Twilio that runs on loopback.

REST side: `state` holds the account (numbers, messages, calls) and announces changes as events;
`rest` serves Twilio's REST API over it; `openapi` checks every request and response against
Twilio's OpenAPI description; `server` runs it all on waitress in a background thread.

Carrier side: `webhook_client` calls the app as Twilio does (signed, timeouts, fallbacks);
`twiml` parses and checks TwiML; `voice` carries out a call, `messaging` a text; `queues` holds
callers in <Enqueue>; `codes` names Twilio's webhook error codes.
"""
