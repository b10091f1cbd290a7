"""The app process of `make dev`: started, and restarted on every edit, by hupper.

The parent (dialtone.devloop.command) keeps the tunnel, the sandbox and the number; this child only
serves the app, with settings the parent put in its environment (PUBLIC_URL among them).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterable
from typing import Any

from bottle import Bottle
from waitress.server import create_server

from dialtone import logs
from dialtone.devloop import capture
from dialtone.devloop.console import RequestLogHandler, dev_console
from dialtone.errors import DialtoneError
from dialtone.settings import Settings
from dialtone.web.serving import make_server

WSGIApp = Callable[..., Iterable[bytes]]


def main() -> None:
    """Serve the app until the reloader stops this process (hupper's worker calls this)."""
    import hupper

    # Ctrl-C while the app is still importing or starting: the parent says the rest.
    with contextlib.suppress(KeyboardInterrupt):
        serve(reloader=hupper.get_reloader() if hupper.is_active() else None)
    # Stopped for a reload or for good: leave now. Returning to hupper's worker would join its
    # sys.modules poller, which sleeps a second between polls, and each Ctrl-C and each reload
    # waited for it. (The next worker reports its own imports; a crash still returns through
    # hupper, which watches the files of its traceback.)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def serve(reloader: Any = None) -> None:
    """Serve the app until Ctrl-C or SIGTERM; `reloader` is hupper's proxy when reloading."""
    settings = Settings.from_env()
    logs.configure(settings.log_level)
    console = dev_console()
    logging.getLogger().handlers = [RequestLogHandler(console)]
    # The request line already shows a rejected signature (with the URL it was checked against)
    # and each status callback's status.
    logging.getLogger("dialtone.web.signature").setLevel(logging.ERROR)
    logging.getLogger("dialtone.status").setLevel(logging.WARNING)
    # waitress warns of its task queue and of tasks it cancels at every Ctrl-C: noise in a dev
    # loop, where the request log shows each request anyway.
    logging.getLogger("waitress").setLevel(logging.ERROR)
    reloading = reloader is not None
    if reloader is not None:
        # A broken route must be able to bring the app back once it is fixed, and a new file in
        # the routes directory (its mtime changes) is a new route. rules.toml is not watched
        # here: the running app re-reads it itself, and a restart on every save would drop the
        # webhooks (and a replay) that arrive meanwhile.
        routes = settings.routes_dir
        reloader.watch_files([str(routes), str(routes / "*.py")])
    # Imported here so that an edit to a route is picked up by the fresh process hupper starts.
    from dialtone.app import close_app, create_app
    from dialtone.bot.rules import RulesError
    from dialtone.web.routing import RouteError

    try:
        app = create_app(settings)
    except DialtoneError as exc:
        if not reloading:
            raise
        if isinstance(exc, RulesError | RouteError):
            # A broken rules file must bring the app back once it is fixed: watched from now on.
            reloader.watch_files([str(settings.rules_file)])
            advice = (
                "Fix it and save: the app starts again by itself (after changing a setting "
                "such as RULES_FILE or ROUTES_DIR, restart make dev)."
            )
        else:
            # A setting (the record's path or URL): read once, when make dev starts.
            advice = "Fix it, then stop make dev (Ctrl-C) and start it again."
        console.print(f"\n{exc}\n", style="red", highlight=False)
        console.print(advice, style="yellow")
        # Meanwhile every request (a text, a call) is answered 500 with the reason, so the phone,
        # the sandbox's notices and the inspector name the file and line, not a refused connection.
        # Alive, too, so that hupper hears of the watched file before a fix.
        # Without the request log, which would only repeat the reason the terminal shows.
        _serve_until_stopped(
            broken_app(str(exc), advice),
            lambda served: create_server(served, host=settings.host, port=settings.port, threads=2),
        )
        return
    for warning in unrouted_webhooks(app, settings):
        console.print(warning, style="yellow", highlight=False)
    try:
        _serve_until_stopped(app, lambda served: make_server(served, settings))
    finally:
        close_app(app)


BROKEN_HEADER = "X-Dialtone-App-Broken"  # the dev loop's banner waits for an app without it


def broken_app(reason: str, advice: str) -> WSGIApp:
    """A WSGI app that answers everything 500 with why the real one cannot start."""
    said = " ".join(reason.split())
    body = f"The app cannot start: {said} {advice}\n".encode()

    def answer(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response(
            "500 Internal Server Error",
            [
                ("Content-Type", "text/plain; charset=utf-8"),
                ("Content-Length", str(len(body))),
                (BROKEN_HEADER, "1"),
            ],
        )
        return [body]

    return answer


def _serve_until_stopped(app: WSGIApp, server_for: Callable[[WSGIApp], Any]) -> None:
    """Serve `app` (through the inspector's capture) on the server `server_for` makes, until
    hupper stops this process: SIGTERM between reloads, SIGHUP a closed terminal (POSIX only:
    Windows has none), Ctrl-C."""
    # The inspector page in the parent sees every request through this (make dev only).
    served = capture.from_environment(app, dict(os.environ))
    server = server_for(served)
    signal.signal(signal.SIGTERM, _stop)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, _stop)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
        if isinstance(served, capture.Capture):
            served.close()


def unrouted_webhooks(app: Bottle, settings: Settings) -> list[str]:
    """A warning for SMS_PATH or VOICE_PATH (--sms-path, --voice-path) that no route answers:
    the number points there, and Twilio would get a 404 (error 11200) on every text or call."""
    posts = sorted({route.rule for route in app.routes if route.method == "POST"})
    return [
        f"{name} {path} is not a route of this app: the number's webhook points there, so "
        f"Twilio will get 404 (error 11200). POST routes: {', '.join(posts)}."
        for name, path in (("SMS_PATH", settings.sms_path), ("VOICE_PATH", settings.voice_path))
        if path not in posts
    ]


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
