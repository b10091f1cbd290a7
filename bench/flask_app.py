"""The usual alternative: a Flask app doing the same signature check and MessagingResponse
reply, served by gunicorn with sync workers (see bench/run.py for the command line).

gunicorn -w 2 -k sync 'bench.flask_app:create_app()'
"""

from __future__ import annotations

import os

from flask import Flask, Response, abort, request
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse


def create_app() -> Flask:
    """The Flask app, configured from TWILIO_AUTH_TOKEN and PUBLIC_URL."""
    app = Flask(__name__)
    validator = RequestValidator(os.environ["TWILIO_AUTH_TOKEN"])
    public_url = os.environ["PUBLIC_URL"]

    @app.post("/<path:path>")
    def webhook(path: str) -> Response:
        signature = request.headers.get("X-Twilio-Signature", "")
        if not validator.validate(public_url + request.path, request.form, signature):
            abort(403)
        reply = MessagingResponse()
        reply.message("Thanks, got it.")
        return Response(str(reply), mimetype="text/xml")

    return app
