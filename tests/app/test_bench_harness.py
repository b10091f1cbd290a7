"""The benchmark's own machinery (not the benchmark): the load generator and its parsing."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

import pytest
from twilio.request_validator import RequestValidator
from waitress.server import create_server

from bench import loadgen
from tests.support.live_server import free_socket

TOKEN = "harness-token"
PUBLIC_URL = "https://bench.example"


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """200 for a correctly signed form, 403 otherwise."""
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)).decode()
    form = dict(parse_qsl(body))
    url = PUBLIC_URL + environ["PATH_INFO"]
    ok = RequestValidator(TOKEN).validate(url, form, environ.get("HTTP_X_TWILIO_SIGNATURE", ""))
    reply = form.get("MessageSid", "").encode()
    headers = [("Content-Length", str(len(reply)))]
    start_response("200 OK" if ok else "403 Forbidden", headers)
    return [reply]


@pytest.fixture
def port() -> Iterator[int]:
    """The app above on real waitress over loopback."""
    sock = free_socket()
    server = create_server(app, sockets=[sock], threads=2)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield sock.getsockname()[1]
    server.close()
    thread.join(timeout=5)


def requests(port: int, path: str, count: int, token: str = TOKEN) -> list[bytes]:
    form = lambda i: loadgen.inbound_sms_form(i, "AC" + "0" * 32, "+15550001111")  # noqa: E731
    return [
        loadgen.signed_request(
            f"127.0.0.1:{port}", path, form(i), auth_token=token, public_url=PUBLIC_URL
        )
        for i in range(count)
    ]


def test_counts_signed_answers_over_keep_alive(port: int) -> None:
    result = loadgen.run("127.0.0.1", port, requests(port, "/sms_url", 12), connections=3)
    assert result.statuses == {200: 12}
    assert sorted(result.answered) == list(range(12))
    assert result.count == 12
    assert not result.errors
    assert 0 < result.percentile(50) <= result.percentile(99)


class Closing(BaseHTTPRequestHandler):
    """Answers 200 with `Connection: close` and closes, as gunicorn's sync workers do."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(b"ok")
        self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_reconnects_when_the_server_closes() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Closing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        result = loadgen.run("127.0.0.1", port, requests(port, "/x", 7), connections=2)
    finally:
        server.shutdown()
        server.server_close()
    assert result.statuses == {200: 7}
    assert not result.errors


def test_counts_rejections_apart(port: int) -> None:
    good = requests(port, "/sms_url", 3)
    bad = requests(port, "/sms_url", 2, token="wrong-token")
    result = loadgen.run("127.0.0.1", port, good + bad, connections=1)
    assert result.statuses == {200: 3, 403: 2}
    assert sorted(result.answered) == [0, 1, 2]


def test_a_refused_connection_is_an_error_not_a_hang() -> None:
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    result = loadgen.run("127.0.0.1", port, requests(port, "/x", 2), connections=2)
    assert result.count == 0
    assert sum(result.errors.values()) == 2


def test_parse_head() -> None:
    head = b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    assert loadgen._parse_head(head) == (204, 0, True)
    head = b"HTTP/1.1 200 OK\r\nServer: x\r\ncontent-length: 42\r\n\r\n"
    assert loadgen._parse_head(head) == (200, 42, False)


def test_doubled_sends_each_request_twice_in_a_row() -> None:
    assert loadgen.doubled([b"a", b"b"]) == [b"a", b"a", b"b", b"b"]


def test_at_a_fixed_rate_sends_on_time(port: int) -> None:
    result = loadgen.run_at_rate(
        "127.0.0.1", [port], requests(port, "/sms_url", 100), rate=50, duration=1.0
    )
    assert result.statuses == {200: 50}  # the rate times the duration, not the whole list
    assert sorted(result.answered) == list(range(50))
    assert 0.95 < result.elapsed < 2.0


class Slow(BaseHTTPRequestHandler):
    """Answers each request after 50 ms, keeping the connection open."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        time.sleep(0.05)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_at_a_fixed_rate_a_server_behind_is_charged_for_the_wait() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        # 20 requests due in 0.2 s, one connection, 50 ms each: the last is answered about
        # 0.8 s after it was due, though each took 50 ms once sent.
        result = loadgen.run_at_rate(
            "127.0.0.1", [port], requests(port, "/x", 20), rate=100, duration=0.2, connections=1
        )
    finally:
        server.shutdown()
        server.server_close()
    assert result.statuses == {200: 20}
    assert result.percentile(50) > 0.3
    assert result.percentile(100) > 0.7


def test_rates_option() -> None:
    from bench.run import parse_args

    assert parse_args([]).rates == [1000.0]
    assert parse_args(["--rates", "500,2000"]).rates == [500.0, 2000.0]
    assert parse_args(["--rates", "none"]).rates == []
    for bad in ("fast", "0", "-5,100"):
        with pytest.raises(SystemExit):
            parse_args(["--rates", bad])


def test_the_postgresql_rows_run_the_recommended_deployment_by_default() -> None:
    """THREADS=2 and a CPU per instance, as docs/deployment.md recommends; both can be undone."""
    from bench.run import parse_args

    default = parse_args([])
    assert (default.pg_threads, default.pg_pin) == (2, True)
    moved = parse_args(["--no-pg-pin", "--pg-threads", "4"])
    assert (moved.pg_threads, moved.pg_pin) == (4, False)
