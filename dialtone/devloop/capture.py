"""WSGI middleware the dev loop's app child wraps around the app: each request, for the inspector.

Only `make dev` installs it (dialtone.devloop.app_process), never `make serve`. For every request
it keeps the form (or JSON body), the answer, the time taken and the webhook plugin's signature
verdict (`environ["dialtone.webhook"]`), and a background thread posts them as JSON to the
inspector in the dev loop's parent. The request never waits for that: a full queue drops events.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import queue
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl

from dialtone.web.signature import WEBHOOK_KEY

log = logging.getLogger("dialtone.devloop.capture")

INGEST_ENV = "DIALTONE_INSPECTOR_INGEST"  # the parent's ingest URL, in the child's environment
TOKEN_ENV = "DIALTONE_INSPECTOR_TOKEN"  # noqa: S105 (a variable name, not a secret)
TOKEN_HEADER = "X-Dialtone-Token"  # noqa: S105 (a header name)
# Set by the inspector's replay: which event it repeats (and the WSGI name of the header).
REPLAY_HEADER = "X-Dialtone-Replay"
REPLAY_ENVIRON = "HTTP_" + REPLAY_HEADER.upper().replace("-", "_")
MAX_BODY = 256 * 1024  # larger bodies pass through uncaptured
MAX_ANSWER = 64 * 1024
QUEUE_SIZE = 1000
SKIPPED_PATHS = frozenset({"/healthz", "/favicon.ico"})

# The environ keys describe_request reads (the environ itself is the server's to reuse).
REQUEST_KEYS = (
    "REQUEST_METHOD",
    "PATH_INFO",
    "QUERY_STRING",
    "CONTENT_TYPE",
    "HTTP_X_TWILIO_SIGNATURE",
    REPLAY_ENVIRON,
)

StartResponse = Callable[..., Any]
Captured = tuple[dict[str, Any], bytes, dict[str, Any]]  # request keys, body, answer
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def describe_request(environ: dict[str, Any], body: bytes) -> dict[str, Any]:
    """The request as the inspector shows it: method, path, query, form pairs or JSON."""
    kind = (environ.get("CONTENT_TYPE") or "").split(";")[0].strip().lower()
    event: dict[str, Any] = {
        "method": environ.get("REQUEST_METHOD", "GET"),
        "path": environ.get("PATH_INFO", "/"),
        "query": environ.get("QUERY_STRING", ""),
        "signed": bool(environ.get("HTTP_X_TWILIO_SIGNATURE")),
        "form": [],
        "json": None,
    }
    if kind == "application/x-www-form-urlencoded":
        text = body.decode("utf-8", errors="replace")
        event["form"] = [list(pair) for pair in parse_qsl(text, keep_blank_values=True)]
    elif kind == "application/json" and body:
        try:
            event["json"] = json.loads(body)
        except ValueError:
            event["json"] = body.decode("utf-8", errors="replace")
    replay_of = environ.get(REPLAY_ENVIRON, "")
    if replay_of.isdigit():
        event["replay_of"] = int(replay_of)
    return event


class Capture:
    """Records each request and its answer and hands them to `send` on a background thread."""

    def __init__(self, app: WSGIApp, send: Callable[[list[dict[str, Any]]], None]) -> None:
        self.app = app
        self.send = send
        self.queue: queue.Queue[Captured | None] = queue.Queue(QUEUE_SIZE)
        self._thread = threading.Thread(target=self._ship, name="inspector-capture", daemon=True)
        self._thread.start()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") in SKIPPED_PATHS:
            return self.app(environ, start_response)
        started, began = time.perf_counter(), time.time()
        body = b""
        length = _length(environ)
        if 0 < length <= MAX_BODY:
            body = environ["wsgi.input"].read(length)
            environ["wsgi.input"] = io.BytesIO(body)  # the app reads it again
        answer: dict[str, Any] = {"status": 500, "content_type": ""}

        def recording(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            answer["status"] = int(status.split(" ", 1)[0])
            answer["content_type"] = next(
                (value for name, value in headers if name.lower() == "content-type"), ""
            )
            return start_response(status, headers, exc_info)

        chunks: list[bytes] = []
        result = self.app(environ, recording)
        try:
            for chunk in result:
                chunks.append(chunk)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
            # Only what the request thread must take now; parsing waits for the shipping thread.
            request = {key: environ[key] for key in REQUEST_KEYS if key in environ}
            event = {
                "time": began,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                "status": answer["status"],
                "answer_type": answer["content_type"],
                "answer": b"".join(chunks)[:MAX_ANSWER],
                "webhook": environ.get(WEBHOOK_KEY),
            }
            self._put((request, body, event))
        return chunks

    def _put(self, event: Captured) -> None:
        # The inspector is behind or gone when the queue is full: the app must not slow down.
        with contextlib.suppress(queue.Full):
            self.queue.put_nowait(event)

    def close(self) -> None:
        """Ship what is queued, then stop the thread (waits at most a second)."""
        with contextlib.suppress(queue.Full):
            self.queue.put(None, timeout=1)
        self._thread.join(timeout=1)

    def _ship(self) -> None:
        while True:
            first = self.queue.get()
            if first is None:
                return
            batch = [_finish(first)]
            while len(batch) < 50:
                try:
                    more = self.queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._send(batch)
                    return
                batch.append(_finish(more))
            self._send(batch)

    def _send(self, batch: list[dict[str, Any]]) -> None:
        try:
            self.send(batch)
        except Exception as exc:  # the inspector is optional: never let it break the app
            log.debug("inspector did not take %d events: %s", len(batch), exc)


def _finish(captured: Captured) -> dict[str, Any]:
    """The event to ship, parsed from what the request thread took."""
    request, body, event = captured
    shipped = describe_request(request, body)
    shipped.update(event, answer=event["answer"].decode("utf-8", errors="replace"))
    return shipped


def _length(environ: dict[str, Any]) -> int:
    try:
        return int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


def poster(url: str, token: str) -> Callable[[list[dict[str, Any]]], None]:
    """A `send` for Capture: POST the events as JSON to the parent's ingest URL with the token."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, no proxy

    def send(batch: list[dict[str, Any]]) -> None:
        data = json.dumps({"events": batch}).encode("utf-8")
        req = urllib.request.Request(url, data=data, method="POST")  # noqa: S310 (loopback http)
        req.add_header("Content-Type", "application/json")
        req.add_header(TOKEN_HEADER, token)
        with opener.open(req, timeout=2) as answer:
            answer.read()

    return send


def from_environment(app: WSGIApp, env: dict[str, str]) -> WSGIApp:
    """`app` wrapped in Capture when the dev loop's parent asked for it (its ingest URL and
    token in `env`); `app` itself otherwise."""
    url, token = env.get(INGEST_ENV), env.get(TOKEN_ENV)
    if not url or not token or not url.startswith("http://127.0.0.1:"):
        return app
    return Capture(app, poster(url, token))
