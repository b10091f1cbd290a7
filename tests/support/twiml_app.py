"""A tiny webhook app on loopback for the sandbox engine's tests: canned answers, checked signatures.

Each route answers with a fixed body (or a function of the request), a status, a Content-Type and
an optional delay. Every request is recorded with whether its X-Twilio-Signature verified with
twilio's RequestValidator, so tests can assert on exactly what the engine sent.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TypeAlias
from urllib.parse import parse_qsl, urlsplit

from twilio.request_validator import RequestValidator
from twilio.twiml import TwiML

Params = dict[str, str]
Text: TypeAlias = "str | TwiML"
Body: TypeAlias = "Text | Callable[[Params], Text]"


@dataclass(frozen=True)
class Received:
    """One request the app received."""

    method: str
    path: str
    params: Params
    signature_ok: bool
    headers: dict[str, str]


@dataclass
class Route:
    body: Body = ""
    status: int = 200
    content_type: str = "text/xml"
    delay: float = 0.0


@dataclass
class TwimlApp:
    """The routes to answer and the requests received; `url(path)` is a path's full URL."""

    auth_token: str
    base: str = ""
    routes: dict[str, Route] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)

    def route(self, path: str, body: Body = "", **options: object) -> None:
        """Answer `path` with `body` (TwiML object, raw text, or a function of the params)."""
        self.routes[path] = Route(body, **options)  # type: ignore[arg-type]

    def url(self, path: str) -> str:
        return self.base + path

    def requests_to(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]


def _handler(app: TwimlApp) -> type[BaseHTTPRequestHandler]:
    validator = RequestValidator(app.auth_token)

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            split = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode("utf-8") if length else ""
            signature = self.headers.get("X-Twilio-Signature", "")
            full_url = app.base + self.path
            if self.command == "GET":
                params = dict(parse_qsl(split.query, keep_blank_values=True))
                ok = validator.validate(full_url, {}, signature)
            else:
                params = dict(parse_qsl(raw, keep_blank_values=True))
                ok = validator.validate(full_url, params, signature)
            headers = dict(self.headers.items())
            app.received.append(Received(self.command, split.path, params, ok, headers))
            route = app.routes.get(split.path)
            if route is None:
                self._send(404, "text/plain", "no such route")
                return
            if route.delay:
                time.sleep(route.delay)
            body = route.body(params) if callable(route.body) else route.body
            self._send(route.status, route.content_type, str(body))

        def _send(self, status: int, content_type: str, body: str) -> None:
            data = body.encode("utf-8")
            self.send_response(status)
            if content_type:
                self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(data)  # fails when the client gave up (the timeout tests)

        do_GET = _answer
        do_POST = _answer

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@contextmanager
def serve(auth_token: str) -> Iterator[TwimlApp]:
    """Run a TwimlApp on 127.0.0.1 on a free port for the duration of the block."""
    app = TwimlApp(auth_token)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(app))
    server.daemon_threads = True
    app.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield app
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
