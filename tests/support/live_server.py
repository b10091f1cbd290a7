"""Real servers on loopback for tests: the app on waitress, and a TLS-terminating proxy stand-in."""

from __future__ import annotations

import http.client
import socket
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bottle import Bottle

from dialtone.app import close_app
from dialtone.settings import Settings
from dialtone.web.serving import make_server


def free_socket() -> socket.socket:
    """A listening TCP socket on 127.0.0.1 with a free port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock


@contextmanager
def serve_app(app: Any, settings: Settings, sock: socket.socket | None = None) -> Iterator[str]:
    """Serve a WSGI app on real waitress (as `make serve` does); yields its base URL, and
    closes a Bottle app afterwards (close_app).

    Pass a `free_socket()` to know the URL before the app is built (for its PUBLIC_URL)."""
    sock = sock or free_socket()
    port = sock.getsockname()[1]
    server = make_server(app, settings.with_overrides(port=port), sockets=[sock])
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        # Closing every channel from inside the loop ends it at once (waitress's own close()
        # is only noticed at the loop's next 1 s select timeout).
        server.trigger.pull_trigger(lambda: [ch.close() for ch in list(server._map.values())])
        thread.join(timeout=5)
        server.task_dispatcher.shutdown(timeout=5)
        if isinstance(app, Bottle):
            close_app(app)  # what create_app opened (a store given to it stays open)


@contextmanager
def https_terminating_proxy(upstream_port: int) -> Iterator[int]:
    """A reverse proxy like nginx or a tunnel after TLS: forwards to the upstream port adding
    X-Forwarded-Proto: https, X-Forwarded-Host (the Host the client asked for) and
    X-Forwarded-For. Yields the proxy's port."""

    class Forward(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.forward()

        def do_GET(self) -> None:
            self.forward()

        def forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
            headers["X-Forwarded-Proto"] = "https"
            headers["X-Forwarded-Host"] = self.headers.get("Host", "")
            headers["X-Forwarded-For"] = self.client_address[0]
            upstream = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=10)
            upstream.request(self.command, self.path, body=body, headers=headers)
            answer = upstream.getresponse()
            payload = answer.read()
            self.send_response(answer.status)
            for key, value in answer.getheaders():
                if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            upstream.close()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    proxy = ThreadingHTTPServer(("127.0.0.1", 0), Forward)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy.server_address[1]
    finally:
        proxy.shutdown()
        proxy.server_close()
        thread.join(timeout=5)


def urlopen(request: urllib.request.Request | str, timeout: float = 10) -> Any:
    """urllib's urlopen without proxies: loopback only, and immune to the proxy variables other
    tests set (urllib's global opener keeps the proxies it saw first, forever)."""
    return _DIRECT.open(request, timeout=timeout)


_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
