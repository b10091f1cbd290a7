"""Failures on purpose: make the sandbox's REST API answer 429 or 5xx for the next N requests.

For tests of Dialtone's retries, and for trying them by hand:

    sandbox.faults.fail_next(2, status=503)    # the next two requests get Twilio's 503 body
    sandbox.faults.fail_next(1, status=429, retry_after=0)

`Faults` is WSGI middleware in front of the REST app (SandboxServer installs it). It also keeps
the method and path of every request it saw (`.seen`), so a test can show that no request
reached "Twilio" at all. A failed request is answered before the REST app sees it: nothing is
created, as when Twilio rejects a request with 429.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

from dialtone.sandbox.api.errors import TwilioError

# Twilio's error codes for these statuses (https://www.twilio.com/docs/errors/<code>).
CODES = {429: 20429, 500: 20500, 502: 20500, 503: 20503, 504: 20504}

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class Faults:
    """WSGI middleware: queued failures, answered in order, and a log of requests seen."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app
        self._queue: deque[tuple[int, float | None]] = deque()
        self._lock = threading.Lock()
        self.seen: list[tuple[str, str]] = []

    def fail_next(self, count: int, *, status: int = 503, retry_after: float | None = None) -> None:
        """Answer the next `count` requests with `status` and Twilio's error body."""
        if status not in CODES:
            raise ValueError(f"status must be one of {sorted(CODES)}")
        with self._lock:
            self._queue.extend([(status, retry_after)] * count)

    def clear(self) -> None:
        """Forget queued failures and the requests seen."""
        with self._lock:
            self._queue.clear()
            self.seen.clear()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        with self._lock:
            self.seen.append((environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")))
            fault = self._queue.popleft() if self._queue else None
        if fault is None:
            return self.app(environ, start_response)
        status, retry_after = fault
        code = CODES[status]
        body = json.dumps(TwilioError(status, code, HTTPStatus(status).phrase).body()).encode()
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        if retry_after is not None:
            headers.append(("Retry-After", f"{retry_after:g}"))
        start_response(f"{status} {HTTPStatus(status).phrase}", headers)
        return [body]
