"""Replay: send a webhook the app answered again, signed afresh, to the app this dev loop serves.

The target is fixed when the inspector starts (the app's local address, PUBLIC_URL and the auth
token the app checks with); a request to the inspector only chooses which event to repeat and,
optionally, new parameters.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from bottle import FormsDict
from twilio.request_validator import RequestValidator

from dialtone.devloop.capture import REPLAY_HEADER
from dialtone.devloop.inspector import twiml_view

MAX_PARAMS = 200
RESTART_WAIT = 10.0  # seconds a replay waits for an app that hupper is restarting


class ReplayError(Exception):
    """The event cannot be replayed; the message says why (shown on the page)."""


@dataclass(frozen=True)
class Target:
    """The app this dev loop serves: where it listens, the URL Twilio calls, its auth token."""

    app_url: str  # http://127.0.0.1:5000
    public_url: str  # https://abc.ngrok.app, or the app's own URL in sandbox mode
    auth_token: str | None


def params_of(event: dict[str, Any], edited: Any) -> list[tuple[str, str]]:
    """The parameters to send: the captured form, or `edited` ([[name, value], ...] or a dict)."""
    if edited is None:
        return [(str(k), str(v)) for k, v in event.get("form") or []]
    pairs = list(edited.items()) if isinstance(edited, dict) else edited
    if not isinstance(pairs, list) or len(pairs) > MAX_PARAMS:
        raise ReplayError(f'"params" must be a list of at most {MAX_PARAMS} [name, value] pairs.')
    clean = []
    for pair in pairs:
        if (
            not isinstance(pair, list | tuple)
            or len(pair) != 2
            or not all(isinstance(part, str) for part in pair)
        ):
            raise ReplayError("Each parameter must be a [name, value] pair of strings.")
        if pair[0]:
            clean.append((pair[0], pair[1]))
    return clean


def replay(target: Target, event: dict[str, Any], edited: Any = None) -> dict[str, Any]:
    """POST the event's webhook again (with `edited` parameters if given); the new answer."""
    if event.get("kind") not in ("webhook", "status") or event.get("method") != "POST":
        raise ReplayError("Only webhooks and status callbacks (form POSTs) can be replayed.")
    params = params_of(event, edited)
    suffix = str(event["path"]) + (f"?{event['query']}" if event.get("query") else "")
    form = FormsDict()
    for name, value in params:
        form.append(name, value)
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        REPLAY_HEADER: str(event["id"]),
    }
    if target.auth_token:
        signed_for = target.public_url + suffix
        validator = RequestValidator(target.auth_token)
        headers["X-Twilio-Signature"] = validator.compute_signature(signed_for, form)
    data = urlencode(params).encode("utf-8")
    request = urllib.request.Request(  # noqa: S310 (the app's fixed loopback URL)
        target.app_url + suffix, data=data, headers=headers, method="POST"
    )
    started = time.perf_counter()
    status, body, kind = _send(request, target.app_url)
    text = body.decode("utf-8", errors="replace")
    steps = twiml_view.steps(text)
    old_steps = list(event.get("steps") or [])
    changed = twiml_view.changes(old_steps, steps)
    if status != event.get("status"):
        changed.insert(0, f"status {event.get('status')} -> {status}")
    return {
        "of": event["id"],
        "params": [list(p) for p in params],
        "status": status,
        "duration_ms": round((time.perf_counter() - started) * 1000, 2),
        "answer": text,
        "answer_type": kind or "",
        "twiml": twiml_view.pretty(text) if twiml_view.parse(text) is not None else "",
        "steps": steps,
        "changes": changed,
    }


def _send(request: urllib.request.Request, app_url: str) -> tuple[int, bytes, str | None]:
    """(status, body, content type); an app that is restarting (after an edit) is waited for."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + RESTART_WAIT
    while True:
        try:
            with opener.open(request, timeout=20) as answer:
                return answer.status, answer.read(), answer.headers.get("Content-Type")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), exc.headers.get("Content-Type")
        except OSError as exc:
            refused = isinstance(getattr(exc, "reason", exc), ConnectionRefusedError)
            if not refused or time.monotonic() > deadline:
                raise ReplayError(f"The app does not answer at {app_url} ({exc}).") from None
            time.sleep(0.1)
