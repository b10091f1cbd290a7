"""The inspector's memory: the recent requests the app saw, enriched for the page, in order.

Events arrive from the app child (dialtone.devloop.capture) as plain dicts; `Timeline.add` gives
each an id, the SID it is grouped under, its kind (webhook, status callback, API call), the
numbers it involves (for the page's filter), what a failed signature check means, and the answer
as pretty TwiML and plain steps. The page reads them with `since()` (server-sent events); the
newest `limit` are kept, so a reloaded page gets them all again.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from typing import Any

from dialtone.devloop.inspector import twiml_view

MAX_EVENTS = 500
API_PATHS = frozenset({"/make_call", "/send_sms"})
STATUS_PATHS = frozenset({"/status"})

# What to fix, for each signature verdict that refused a request.
VERDICT_HELP = {
    "missing": (
        "The request has no X-Twilio-Signature header, so it did not come from Twilio (or a proxy "
        "dropped the header). Real webhooks always carry one; a test request must be signed with "
        "the auth token, for the URL shown."
    ),
    "mismatch": (
        "The signature was made for another URL or with another auth token. Twilio signs the URL "
        "it called: is the number's webhook URL exactly the URL shown (PUBLIC_URL + path, same "
        "https and host)? Is TWILIO_AUTH_TOKEN the account's current token?"
    ),
    "bad-host": (
        "The Host header is not a valid host name, so no URL could be checked. Set PUBLIC_URL to "
        "the https URL Twilio calls."
    ),
}


def classify(event: dict[str, Any]) -> str:
    """webhook, status (a status callback), api (the app's outbound API) or other."""
    form = dict(event.get("form") or [])
    if event.get("path") in API_PATHS:
        return "api"
    if not form:
        return "other"
    if event.get("path") in STATUS_PATHS or ("MessageStatus" in form and "Body" not in form):
        return "status"
    return "webhook"


def group_of(event: dict[str, Any]) -> str:
    """The call or message SID the event belongs to ("" if none)."""
    form = dict(event.get("form") or [])
    sid = form.get("CallSid") or form.get("MessageSid") or form.get("SmsSid")
    if sid:
        return str(sid)
    if event.get("kind") == "api":
        try:
            answer = json.loads(event.get("answer") or "{}")
        except ValueError:
            return ""
        if isinstance(answer, dict) and isinstance(answer.get("sid"), str):
            return answer["sid"]
    return ""


def numbers_of(event: dict[str, Any]) -> list[str]:
    """The phone numbers the event mentions (From, To, Called, Caller; `to` for the API)."""
    form = dict(event.get("form") or [])
    found = [str(form[k]) for k in ("From", "To", "Caller", "Called") if form.get(k)]
    payload = event.get("json")
    if isinstance(payload, dict) and isinstance(payload.get("to"), str):
        found.append(payload["to"])
    return sorted(set(found))


def enrich(event: dict[str, Any]) -> dict[str, Any]:
    """The captured event with what the page shows: kind, group, numbers, help, TwiML views."""
    event = dict(event)
    event["kind"] = classify(event)
    event["group"] = group_of(event)
    event["numbers"] = numbers_of(event)
    webhook = event.get("webhook")
    verdict = webhook.get("verdict") if isinstance(webhook, dict) else None
    event["verdict_help"] = VERDICT_HELP.get(str(verdict), "")
    answer = str(event.get("answer") or "")
    event["twiml"] = twiml_view.pretty(answer) if twiml_view.parse(answer) is not None else ""
    event["steps"] = twiml_view.steps(answer)
    return event


class EventLog:
    """Thread-safe, bounded log of events with increasing ids, read with a long wait: the
    timeline and the phone's feed are each one."""

    def __init__(self, limit: int) -> None:
        self._events: deque[dict[str, Any]] = deque(maxlen=limit)
        self._changed = threading.Condition()
        self._last = 0
        self._closed = False

    def _append(self, events: list[dict[str, Any]]) -> None:
        """Keep `events` (each with an int "id" above the last one's) and wake every reader."""
        with self._changed:
            for event in events:
                self._events.append(event)
                self._last = max(self._last, event["id"])
            self._changed.notify_all()

    def since(self, after: int, wait: float = 0.0) -> list[dict[str, Any]]:
        """Events with an id above `after`, waiting up to `wait` s for one."""
        with self._changed:
            if self._last <= after and not self._closed and wait > 0:
                self._changed.wait_for(lambda: self._last > after or self._closed, wait)
            return [dict(e) for e in self._events if e["id"] > after]

    @property
    def closed(self) -> bool:
        """True once the inspector is stopping."""
        return self._closed

    def close(self) -> None:
        """Wake every reader now: the inspector is stopping."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()


class Timeline(EventLog):
    """The requests the app answered, enriched for the page, numbered in arrival order."""

    def __init__(self, limit: int = MAX_EVENTS) -> None:
        super().__init__(limit)

    def add(self, captured: dict[str, Any]) -> dict[str, Any]:
        """Enrich and append one captured event; wakes every reader."""
        event = enrich(captured)
        with self._changed:  # numbered and kept under one lock: ids stay in order
            event["id"] = self._last + 1
            self._append([event])
        return event

    def get(self, event_id: int) -> dict[str, Any] | None:
        """The event with this id, if it is still kept."""
        with self._changed:
            return next((dict(e) for e in self._events if e["id"] == event_id), None)
