"""Dialtone's app: `create_app()` builds the Bottle app from the routes directory; `main()`
serves it.

The routes (`@webhook` and `@api` functions in ROUTES_DIR, see dialtone.web.routing) ask for what
they need by parameter name; `Services` is the one place those things are made.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bottle import Bottle, HTTPError, request, response
from twilio.rest import Client

from dialtone import cli, logs
from dialtone.bot.outbound import Outbox
from dialtone.bot.rules import RulesFile
from dialtone.bot.voice_menu import AGENT_PIN_FAILURES_PER_HOUR
from dialtone.errors import SettingsError
from dialtone.loopback import is_loopback_name
from dialtone.record.base import RecordStore
from dialtone.record.limits import limiter_factory
from dialtone.record.recorder import Recorder
from dialtone.record.spool import OptOutSpool
from dialtone.record.store import open_store
from dialtone.settings import Settings
from dialtone.twilio_api import TwilioHandle
from dialtone.untrusted import printable
from dialtone.web import health, serving
from dialtone.web.api_auth import ApiGuard
from dialtone.web.handlers import mount
from dialtone.web.jsonapi import error_body, query_strings
from dialtone.web.ratelimit import Limiter, in_memory
from dialtone.web.routing import Injector, RouteSpec, load_routes
from dialtone.web.signature import SignatureChecker

log = logging.getLogger("dialtone.server")


@dataclass(frozen=True)
class Services:
    """What route handlers can ask for by parameter name (besides `form`, `query`, `payload`)."""

    settings: Settings
    record: Recorder  # the record: every write attempted, none can stop an answer
    store: RecordStore  # the record's storage itself (listings)
    twilio: TwilioHandle  # Twilio's REST API, made on first use
    rules_file: RulesFile
    outbox: Outbox  # calls and texts through Twilio, checked and recorded
    link_limiter: Limiter  # voice option 3's texts per caller (across instances with PostgreSQL)
    link_total_limiter: Limiter  # voice option 3's texts to all callers together
    agent_pin_failures: Limiter  # wrong agent PINs, all callers together

    def providers(self) -> dict[str, Callable[[], Any]]:
        """Parameter name -> how to get its value for the current request."""
        return {
            "query": query_strings,
            "settings": lambda: self.settings,
            "record": lambda: self.record,
            "store": lambda: self.store,
            "twilio": lambda: self.twilio,
            "rules": self.rules_file.current,
            "outbox": lambda: self.outbox,
            "link_limiter": lambda: self.link_limiter,
            "link_total_limiter": lambda: self.link_total_limiter,
            "agent_pin_failures": lambda: self.agent_pin_failures,
        }


def create_app(
    settings: Settings,
    *,
    twilio: Client | None = None,
    store: RecordStore | None = None,
    routes: list[RouteSpec] | None = None,
) -> Bottle:
    """The whole app, configured by `settings`; `twilio` replaces the client made from them.

    The routes are loaded from ROUTES_DIR unless `routes` is given. The record is opened from
    DATABASE_PATH unless `store` is given (then the caller closes it); call `close_app(app)` once
    the server has stopped.
    """
    if settings.validate_signatures and not settings.auth_token:
        raise SettingsError(
            [
                "TWILIO_AUTH_TOKEN is not set, and it is needed to check X-Twilio-Signature on "
                "webhooks. Set it, or set VALIDATE_SIGNATURES=false for a local experiment."
            ]
        )
    specs = load_routes(settings.routes_dir) if routes is None else routes
    rules = RulesFile(settings.rules_file)
    app = Bottle()
    with contextlib.ExitStack() as opened:  # closed again (last first) if a later step fails
        if store is None:
            store = open_store(settings)
            opened.callback(store.close)
        recorder = Recorder(store, OptOutSpool.beside(settings.database_path))
        opened.callback(recorder.close)
        # With PostgreSQL the limits count in the record, across instances; else in this process.
        limiters = limiter_factory(store, in_memory, recorder.breaker)
        handle = TwilioHandle(settings, twilio)
        services = Services(
            settings=settings,
            record=recorder,
            store=store,
            twilio=handle,
            rules_file=rules,
            outbox=Outbox(settings, handle, recorder),
            link_limiter=limiters("voice-link-texts", settings.link_texts_per_hour, 3600.0),
            link_total_limiter=limiters(
                "voice-link-texts-total", settings.link_texts_total_per_hour, 3600.0
            ),
            agent_pin_failures=limiters("agent-pin-failures", AGENT_PIN_FAILURES_PER_HOUR, 3600.0),
        )
        checker = SignatureChecker(
            settings.auth_token,
            public_url=settings.public_url,
            validate=settings.validate_signatures,
        )
        app.add_hook("before_request", _path_is_utf8)
        app.add_hook("before_request", _body_limit(settings.max_body_bytes))
        app.default_error_handler = _plain_error_for({s.path for s in specs if s.kind == "api"})
        health.install(app, recorder)
        mount(app, specs, Injector(services.providers()), checker, ApiGuard(settings, limiters))
        # Opened for good: close_app(app) closes them, the opt-out thread first, then the record.
        app.install(_CloseOnShutdown(opened.pop_all().close))
    return app


def close_app(app: Bottle) -> None:
    """Close what create_app opened (the record: WAL checkpointed). Safe to call twice."""
    app.close()


class _CloseOnShutdown:
    """A Bottle plugin that changes no route; Bottle.close() calls `close` (what create_app
    opened: the opt-out thread, and the record unless it was given one)."""

    api = 2
    name = "dialtone_record"

    def __init__(self, close: Callable[[], None]) -> None:
        self._close = close

    def apply(self, callback: Callable[..., object], route: object) -> Callable[..., object]:
        return callback

    def close(self) -> None:
        self._close()


def _path_is_utf8() -> None:
    """400 for a path that is not UTF-8. Bottle drops the bytes it cannot decode, so
    /se%80nd_sms would reach /send_sms past a proxy rule that refuses /send_sms."""
    try:
        request.environ["bottle.raw_path"].encode("latin-1").decode("utf-8")
    except UnicodeError:
        raise HTTPError(400, "The path is not valid UTF-8.") from None


def _body_limit(limit: int) -> Callable[[], None]:
    def check() -> None:
        if request.content_length > limit:
            raise HTTPError(413, f"The request body is larger than {limit} bytes.")

    return check


def _plain_error_for(api_paths: set[str]) -> Callable[[HTTPError], str]:
    def plain_error(error: HTTPError) -> str:
        """Errors as one plain line (JSON for JSON clients), never an HTML page or a traceback."""
        message = error.body if isinstance(error.body, str) and error.body else error.status_line
        allowed = error.headers.get("Allow") if error.status_code == 405 else None
        if allowed and message == "Method not allowed.":  # Bottle's words: say what works
            method = printable(request.method, 40)
            methods = " or ".join(name.strip() for name in allowed.split(","))
            message = f"{method} is not allowed here; use {methods}."
        accept = request.get_header("Accept") or ""
        if "application/json" in accept or request.path in api_paths:
            response.content_type = "application/json"
            return error_body(error.status_code, message)
        response.content_type = "text/plain; charset=utf-8"
        return (
            f"{error.status_line}: {message}\n" if message != error.status_line else message + "\n"
        )

    return plain_error


def security_warnings(settings: Settings) -> list[str]:
    """What leaves the app open to anyone who finds its URL (make dev's tunnel included)."""
    warnings = []
    if not settings.validate_signatures:
        warnings.append(
            "VALIDATE_SIGNATURES is off: ANYONE can post fake Twilio webhooks to this server. "
            "Use this only for local experiments."
        )
    if settings.agents and not settings.agent_pin:
        warnings.append(
            "AGENT_NUMBERS or FORWARD_TO is set but AGENT_PIN is not, so agent pickup (key 9 "
            "and /voice_url/agent) is off: caller ID can be spoofed, so an agent's number alone "
            "proves nothing. Set AGENT_PIN (6 to 12 digits) to switch it on."
        )
    return warnings


def startup_warnings(settings: Settings) -> list[str]:
    """What an operator must know before the first request."""
    warnings = security_warnings(settings)
    if not settings.api_token:
        warnings.append(
            "API_TOKEN is not set, so POST /make_call, POST /send_sms, GET /messages and "
            "GET /calls are switched off (they answer 503). Set API_TOKEN to a long random "
            "string to use them."
        )
    if settings.validate_signatures and not settings.public_url and not settings.trusted_proxy:
        warnings.append(
            "Neither PUBLIC_URL nor TRUSTED_PROXY is set: signatures are checked against the URL "
            "this server sees, which fails behind a tunnel or proxy. Set PUBLIC_URL to the "
            "https URL Twilio calls."
        )
    if settings.api_token and settings.trusted_proxy == "*" and not is_loopback_name(settings.host):
        warnings.append(
            f"TRUSTED_PROXY=* believes X-Forwarded-For from any client, and HOST={settings.host} "
            "lets clients connect directly: anyone can pose as a new address for each guess of "
            "API_TOKEN, past the failed-token lockout. Set TRUSTED_PROXY to your proxy's "
            "address, or HOST=127.0.0.1 behind it."
        )
    if (
        settings.api_token
        and settings.public_url
        and not settings.trusted_proxy
        and is_loopback_name(settings.host)
    ):
        warnings.append(
            "PUBLIC_URL is set and HOST is loopback, so a proxy is in front, but TRUSTED_PROXY is "
            "not set: every client has the proxy's address, and ten wrong API tokens from anyone "
            "lock every API client out for a minute. Set TRUSTED_PROXY=127.0.0.1 (the proxy's "
            "address)."
        )
    return warnings


def spool_warning(settings: Settings) -> str | None:
    """Why the opt-out changes the record cannot take could not be kept on disk, if so (it
    makes the spool's directory and lock file if missing, as the first change would)."""
    spool = OptOutSpool.beside(settings.database_path)
    problem = spool.writable()
    if problem is None:
        return None
    return (
        f"STOPs and STARTs the record cannot take while it is down would be kept in "
        f"{spool.path}, but that cannot be written ({problem}): they would be held in memory "
        "only, and lost if the process stops. Make DATABASE_PATH's directory writable by this "
        "user."
    )


def main() -> int:
    """Serve the app on waitress (one instance, or WORKERS sharing the port) until SIGTERM."""
    settings = cli.load_settings()
    logs.configure(settings.log_level)

    def make_app() -> Bottle:
        app = create_app(settings)
        for warning in [*startup_warnings(settings), spool_warning(settings)]:
            if warning:
                log.warning(warning)
        return app

    # Each instance builds its own app (and opens its own record) in its own process.
    code = serving.serve(settings, make_app, close_app=close_app)
    if code == 0:
        log.info("Stopped; the record is closed.")
    return code


if __name__ == "__main__":
    cli.run(main)
