"""Dialtone's webhook server: `create_app()` builds the Bottle app, `main()` serves it.

python server.py          # or: make serve
"""

from __future__ import annotations

import json
import logging
import signal
from collections.abc import Callable

from bottle import Bottle, HTTPError, request, response
from twilio.rest import Client

from dialtone import cli, logs
from dialtone.errors import SettingsError
from dialtone.rules import RulesFile
from dialtone.serving import make_server
from dialtone.settings import Settings
from dialtone.signature import TwilioWebhookPlugin
from dialtone.twilio_api import TwilioHandle
from routes import health, outbound, sms, status, voice

log = logging.getLogger("dialtone.server")


def create_app(
    settings: Settings, *, twilio: Client | None = None, store: object | None = None
) -> Bottle:
    """The whole app, configured by `settings`; `twilio` replaces the client made from them."""
    twilio_handle = TwilioHandle(settings, twilio)
    if settings.validate_signatures and not settings.auth_token:
        raise SettingsError(
            [
                "TWILIO_AUTH_TOKEN is not set, and it is needed to check X-Twilio-Signature on "
                "webhooks. Set it, or set VALIDATE_SIGNATURES=false for a local experiment."
            ]
        )
    app = Bottle()
    app.install(
        TwilioWebhookPlugin(
            settings.auth_token,
            public_url=settings.public_url,
            validate=settings.validate_signatures,
        )
    )
    app.add_hook("before_request", _body_limit(settings.max_body_bytes))
    app.default_error_handler = _plain_error
    health.install(app, settings)
    status.install(app, settings)
    voice.install(app, settings, twilio_handle)
    outbound.install(app, settings, twilio_handle)
    sms.install(app, settings, RulesFile(settings.rules_file))
    return app


def _body_limit(limit: int) -> Callable[[], None]:
    def check() -> None:
        if request.content_length > limit:
            raise HTTPError(413, f"The request body is larger than {limit} bytes.")

    return check


def _plain_error(error: HTTPError) -> str:
    """Errors as one plain line (JSON for JSON clients), never an HTML page or a traceback."""
    message = error.body if isinstance(error.body, str) and error.body else error.status_line
    if "application/json" in (request.get_header("Accept") or "") or request.path in outbound.PATHS:
        response.content_type = "application/json"
        return json.dumps({"error": {"status": error.status_code, "message": message}})
    response.content_type = "text/plain; charset=utf-8"
    return f"{error.status_line}: {message}\n" if message != error.status_line else message + "\n"


def startup_warnings(settings: Settings) -> list[str]:
    """What an operator must know before the first request."""
    warnings = []
    if not settings.validate_signatures:
        warnings.append(
            "VALIDATE_SIGNATURES is off: ANYONE can post fake Twilio webhooks to this server. "
            "Use this only for local experiments."
        )
    if not settings.api_token:
        warnings.append(
            "API_TOKEN is not set, so POST /make_call and POST /send_sms are switched off "
            "(they answer 503). Set API_TOKEN to a long random string to use them."
        )
    if settings.validate_signatures and not settings.public_url and not settings.trusted_proxy:
        warnings.append(
            "Neither PUBLIC_URL nor TRUSTED_PROXY is set: signatures are checked against the URL "
            "this server sees, which fails behind a tunnel or proxy. Set PUBLIC_URL to the "
            "https URL Twilio calls."
        )
    return warnings


def main() -> int:
    """Serve the app on waitress until interrupted."""
    settings = cli.load_settings()
    logs.configure(settings.log_level)
    app = create_app(settings)
    for warning in startup_warnings(settings):
        log.warning(warning)
    server = make_server(app, settings)
    log.info("Dialtone listening on http://%s:%s", settings.host, settings.port)
    signal.signal(signal.SIGTERM, _stop)
    try:
        server.run()  # returns on Ctrl-C or SIGTERM (waitress catches the KeyboardInterrupt)
    finally:
        log.info("Stopping: finishing the requests in flight.")
        server.close()
    return 0


def _stop(signum: int, frame: object) -> None:
    # SIGTERM (systemd stop) ends the serve loop the way Ctrl-C does.
    raise KeyboardInterrupt


if __name__ == "__main__":
    cli.run(main)
