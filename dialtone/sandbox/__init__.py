"""The local sandbox: a stand-in for Twilio that runs on loopback.

REST side: `state` holds the account (numbers, messages, calls; `applications`, `optouts`) and
announces changes as `events`; `api/rest.py` serves Twilio's REST API over it, checking every
request and response against Twilio's OpenAPI description (`api/openapi.py`); `server` runs it all
on waitress in a background thread, behind `guard` (loopback clients, Host and Origin only).

Carrier side (`carrier/`): `network.Carrier` is the front; `delivery` carries messages, `calls`
carries calls through the voice engine (`voice`, `voice_queue`, `twiml`); `webhook_client` calls
the app as Twilio does (signed, timeouts, fallbacks, connection `overrides`); `stop_filter` is
Twilio's STOP/START/HELP handling; `failures` is failure on demand. `phone/` is the phone API and
its client. docs/sandbox-fidelity.md says which Twilio page each behaviour follows.

Errors come in two kinds with separate code ranges: `api/errors.py` holds the 2xxxx codes the REST
API answers a bad request with; `carrier/webhook_errors.py` the 11xxx-14xxx codes the carrier
reports when the app's webhook or TwiML fails (debugger notices).
"""
