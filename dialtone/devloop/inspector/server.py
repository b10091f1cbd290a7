"""The inspector's web server: the page, its live timeline, replay, and the browser phone's relay.

Started by `make dev` in its own (parent) process on 127.0.0.1, on a waitress thread; never by
`make serve`. Every route but the static files is behind the Guard (loopback Host, own Origin,
per-run token, JSON for changes).

    GET  /?token=T                 the page
    GET  /api/info                 mode, number, whether the browser phone is available
    GET  /api/events?token=T       server-sent events: every request the app answered
    GET  /api/qr.svg?token=T       a QR code that opens a text to the number
    POST /api/ingest               events from the app child (dialtone.devloop.capture)
    POST /api/replay {"id", "params"?}   send a webhook again; the new answer and what changed
    GET  /api/phone_events?token=T server-sent events: the sandbox phone's events (sandbox mode)
    GET|POST /api/phone/<path>     the sandbox's phone API (sandbox mode only)
"""

from __future__ import annotations

import io
import json
import logging
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import segno
from bottle import Bottle, HTTPError, HTTPResponse, request, response, static_file
from waitress.server import create_server

from dialtone.devloop.inspector.guard import Guard
from dialtone.devloop.inspector.phone_proxy import PhoneFeed, PhoneProxy
from dialtone.devloop.inspector.replay import ReplayError, Target, replay
from dialtone.devloop.inspector.timeline import EventLog, Timeline

log = logging.getLogger("dialtone.devloop.inspector")

STATIC = Path(__file__).resolve().parent / "static"
MAX_INGEST = 4 * 1024 * 1024
KEEPALIVE = 5.0  # seconds between SSE comments: a closed page frees its thread this soon
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' http: https: data:; media-src 'self' http: https: blob:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


@dataclass(frozen=True)
class PageInfo:
    """What the page shows about this run."""

    mode: str  # "sandbox" or "Twilio" (or a local Twilio API)
    phone_number: str | None
    public_url: str
    phone_user_number: str | None = None  # the browser phone's own number (sandbox)


def create_inspector_app(
    *,
    port: int,
    token: str,
    timeline: Timeline,
    target: Target,
    info: PageInfo,
    phone: PhoneProxy | None,
    feed: PhoneFeed | None = None,
) -> Bottle:
    """The inspector's Bottle app for one run (its port and token)."""
    app = Bottle()
    app.add_hook("before_request", Guard(port, token))
    app.add_hook("after_request", _headers)
    app.default_error_handler = _error

    @app.get("/")
    def page() -> Any:
        return static_file("index.html", root=str(STATIC))

    @app.get("/static/<name:re:[a-z0-9_.-]+>")
    def asset(name: str) -> Any:
        return static_file(name, root=str(STATIC))

    @app.get("/favicon.ico")
    def favicon() -> HTTPResponse:
        return HTTPResponse("", 204)

    @app.get("/api/info")
    def about() -> dict[str, Any]:
        return {
            "mode": info.mode,
            "sandbox": phone is not None,
            "phone_number": info.phone_number,
            "phone_user_number": info.phone_user_number,
            "public_url": info.public_url,
            "app_url": target.app_url,
        }

    @app.get("/api/qr.svg")
    def qr() -> Any:
        if not info.phone_number:
            raise HTTPError(404, "No number to text.")
        svg = io.BytesIO()  # a whole SVG document (with its xmlns), as an <img> needs
        segno.make(f"sms:{info.phone_number}", error="m").save(svg, kind="svg", scale=8, border=2)
        return HTTPResponse(svg.getvalue(), 200, {"Content-Type": "image/svg+xml"})

    @app.get("/api/events")
    def events() -> Iterator[str]:
        return _event_stream(timeline)

    @app.get("/api/phone_events")
    def phone_events() -> Iterator[str]:
        if feed is None:
            raise HTTPError(404, "The browser phone works in sandbox mode only.")
        return _event_stream(feed)

    @app.post("/api/ingest")
    def ingest() -> dict[str, Any]:
        payload = _payload(MAX_INGEST)
        batch = payload.get("events")
        if not isinstance(batch, list):
            raise HTTPError(400, '"events" must be a list.')
        for event in batch:
            if isinstance(event, dict):
                timeline.add(event)
        return {"ok": True}

    @app.post("/api/replay")
    def replay_event() -> dict[str, Any]:
        payload = _payload()
        event_id = payload.get("id")
        if not isinstance(event_id, int):
            raise HTTPError(400, '"id" must be the number of an event on the timeline.')
        event = timeline.get(event_id)
        if event is None:
            raise HTTPError(404, "That event is no longer kept; replay a newer one.")
        try:
            return replay(target, event, payload.get("params"))
        except ReplayError as exc:
            raise HTTPError(400, str(exc)) from None

    @app.route("/api/phone/<path:path>", method=["GET", "POST"])
    def phone_api(path: str) -> HTTPResponse:
        if phone is None:
            raise HTTPError(404, "The browser phone works in sandbox mode only.")
        body = None if request.method == "GET" else request.body.read(64 * 1024)
        status, answer = phone.forward(request.method, path, dict(request.query), body)
        return HTTPResponse(json.dumps(answer), status, {"Content-Type": "application/json"})

    return app


def _event_stream(source: EventLog) -> Iterator[str]:
    """Server-sent events from `source`, from the one after Last-Event-ID (or ?after=) on."""
    last = request.get_header("Last-Event-ID") or request.query.get("after") or "0"
    response.content_type = "text/event-stream"
    response.set_header("Cache-Control", "no-cache")
    return _stream(source, int(last) if last.isdigit() else 0)


def _stream(source: EventLog, after: int) -> Iterator[str]:
    yield "retry: 1000\n\n"
    while not source.closed:
        found = source.since(after, wait=KEEPALIVE)
        if not found:
            yield ": keep-alive\n\n"
            continue
        for event in found:
            after = event["id"]
            yield f"id: {after}\ndata: {json.dumps(event)}\n\n"


def _payload(limit: int = 64 * 1024) -> dict[str, Any]:
    if request.content_length > limit:
        raise HTTPError(413, f"The body is larger than {limit} bytes.")
    try:
        payload = json.loads(request.body.read(limit) or b"null")
    except ValueError:
        raise HTTPError(400, "The body is not valid JSON.") from None
    if not isinstance(payload, dict):
        raise HTTPError(400, "The body must be a JSON object.")
    return payload


def _headers() -> None:
    response.set_header("Content-Security-Policy", CSP)
    response.set_header("X-Content-Type-Options", "nosniff")
    # The token is in the page's URL: never send it to a media host as a Referer.
    response.set_header("Referrer-Policy", "no-referrer")
    response.set_header("Cache-Control", response.get_header("Cache-Control") or "no-store")


def _error(error: HTTPError) -> str:
    if error.status_code >= 500:
        log.error("inspector error on %s", request.path, exc_info=error.exception)
    _headers()
    message = error.body if isinstance(error.body, str) and error.body else error.status_line
    if not request.path.startswith("/api/"):  # the page itself, opened without its token
        response.content_type = "text/plain; charset=utf-8"
        return message + "\n"
    response.content_type = "application/json"
    return json.dumps({"error": message})


class InspectorServer:
    """The inspector on 127.0.0.1:`port` (0: any free port), served by waitress on a thread."""

    def __init__(
        self,
        *,
        port: int,
        target: Target,
        info: PageInfo,
        sandbox_url: str | None = None,
        token: str | None = None,
    ) -> None:
        self.token = token or secrets.token_urlsafe(24)
        self.timeline = Timeline()
        # Each open page holds two threads (its two event streams).
        self._server = create_server(
            self._dispatch, host="127.0.0.1", port=port, threads=24, ident="dialtone-inspector"
        )
        self.port = int(self._server.effective_port)
        phone = PhoneProxy(sandbox_url) if sandbox_url else None
        self.feed = PhoneFeed(phone) if phone else None
        self.app = create_inspector_app(
            port=self.port,
            token=self.token,
            timeline=self.timeline,
            target=target,
            info=info,
            phone=phone,
            feed=self.feed,
        )
        self._thread: threading.Thread | None = None

    def _dispatch(self, environ: dict[str, Any], start_response: Any) -> Any:
        return self.app(environ, start_response)

    @property
    def url(self) -> str:
        """The page's URL with this run's token: what the banner prints."""
        return f"http://127.0.0.1:{self.port}/?token={self.token}"

    @property
    def ingest_url(self) -> str:
        """Where the app child posts what it captured."""
        return f"http://127.0.0.1:{self.port}/api/ingest"

    def start(self) -> None:
        """Serve on a daemon thread (and follow the sandbox phone's events)."""
        if self.feed is not None:
            self.feed.start()
        self._thread = threading.Thread(target=self._run, name="inspector", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._server.run()
        except OSError as exc:  # closed while stopping
            log.debug("inspector server stopped: %s", exc)

    def stop(self) -> None:
        """Wake the event streams and close the server."""
        self.timeline.close()
        if self.feed is not None:
            self.feed.close()
        # The event streams end as soon as they see their source closed: let them, before
        # their channels go away under them.
        self._server.task_dispatcher.shutdown(cancel_pending=True, timeout=1)
        if self._thread is None:
            self._server.close()
            return
        # Closing every channel from inside the loop ends it at once; waitress's close() is only
        # noticed at the loop's next 1 s select timeout.
        server = self._server
        try:
            server.trigger.pull_trigger(lambda: [ch.close() for ch in list(server._map.values())])
        except OSError:  # the loop has already ended (and closed its trigger)
            server.close()
        self._thread.join(timeout=2)
