"""One log line per request: client, method, path, status, duration, and what the webhook was
about.

`AccessLog` is WSGI middleware around the Bottle app, so 404s, 405s and 500s are logged too.
Routes add detail to the line through `note()` (the webhook plugin records the SID, From, Body or
Digits, and why a signature was rejected). Each line is a record on the `dialtone.access` logger
with the structured `RequestRecord` in `record.request`, so `make dev` can render it richly and
`make serve` as plain text.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from ipaddress import ip_address
from typing import Any

from bottle import request

from dialtone.untrusted import printable

__all__ = ["AccessLog", "RequestRecord", "note", "note_webhook", "printable"]

log = logging.getLogger("dialtone.access")

NOTE_KEY = "dialtone.note"

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


@dataclass
class RequestRecord:
    """What one request was and how it ended; the fields of an access-log line."""

    method: str
    path: str
    status: int = 0
    duration_ms: float = 0.0
    notes: dict[str, str] = field(default_factory=dict)
    client: str = "-"  # the address waitress saw (through TRUSTED_PROXY: the proxy's client)

    def line(self) -> str:
        """The plain-text form: `203.0.113.5 POST /sms_url 200 3.1ms sid=SM... from=+1555...`."""
        extras = " ".join(f"{key}={_quote(value)}" for key, value in self.notes.items())
        client = self.client if _is_address(self.client) else repr(self.client)
        head = f"{client} {self.method} {_spaced(self.path)} {self.status}"
        text = f"{head} {self.duration_ms:.1f}ms"
        return f"{text} {extras}" if extras else text


def _quote(value: str) -> str:
    if len(value) > 60:
        value = value[:57] + "..."
    return _spaced(value)


def _spaced(value: str) -> str:
    """`value` quoted when it holds a space (or is empty), so it cannot pass for two fields."""
    return repr(value) if (" " in value or not value) else value


def _is_address(value: str) -> bool:
    """An IP address as such (through TRUSTED_PROXY the client field is the sender's text: a
    tool that bans addresses from this log must not read a forged one as someone else's)."""
    try:
        ip_address(value)
    except ValueError:
        return value == "-"
    return True


def note(environ: dict[str, Any], **fields: str) -> None:
    """Add fields to this request's access-log line (they may come from anyone: escaped)."""
    environ.setdefault(NOTE_KEY, {}).update(
        {key: printable(value) for key, value in fields.items()}
    )


# The webhook fields worth a glance in the log, in the order they are shown.
WEBHOOK_FIELDS = (
    ("sid", ("MessageSid", "CallSid")),
    ("from", ("From",)),
    ("status", ("MessageStatus", "CallStatus")),
    ("digits", ("Digits",)),
    ("body", ("Body",)),
)


def note_webhook(form: Mapping[str, str]) -> None:
    """Note a webhook's SID, From, status, Digits and Body on the current request."""
    fields = {}
    for name, keys in WEBHOOK_FIELDS:
        for key in keys:
            if key in form:
                fields[name] = form[key]
                break
    note(request.environ, **fields)


class AccessLog:
    """WSGI middleware that logs every request once it has been answered."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter()
        # The path is as the client sent it, unquoted: %0a there would forge a log line.
        record = RequestRecord(
            printable(environ.get("REQUEST_METHOD", "-"), 20),
            printable(environ.get("PATH_INFO", "/"), 500),
            client=printable(environ.get("REMOTE_ADDR") or "-", 60),
        )

        def recording_start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
            record.status = int(status.split(" ", 1)[0])
            return start_response(status, headers, exc_info)

        try:
            return self.app(environ, recording_start_response)
        finally:
            record.duration_ms = (time.perf_counter() - started) * 1000
            record.notes = environ.get(NOTE_KEY, {})
            if record.status == 0:
                record.status = 500
            log.info(record.line(), extra={"request": record})
