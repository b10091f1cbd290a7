"""The local sandbox: a stand-in for Twilio that runs on loopback.

`state` holds the account (numbers, messages, calls) and announces changes as events; `rest` serves
Twilio's REST API over it; `openapi` checks every request and response against Twilio's OpenAPI
description; `server` runs it all on waitress in a background thread.
"""
