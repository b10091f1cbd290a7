"""Failure on demand: make the next message(s) or call(s) to a number fail the way Twilio reports it.

Delivery in the sandbox always succeeds unless asked otherwise, so an app's failure handling
would never run. A `FailurePlan` holds what to fail next, per destination number:

    plan.fail_messages("+15555550100", error_code=30003)            # next text: undelivered
    plan.fail_messages("+15555550100", error_code=30001, status="failed", count=2)
    plan.fail_calls("+15555550100", status="busy")                  # next call: busy

The carrier takes one planned failure per message or call it carries to that number. Messages
then move queued -> sent -> undelivered, or queued -> failed, with the ErrorCode in the status
callback (Twilio's "Outbound Message Status in Status Callbacks" page); calls go initiated ->
ringing -> busy / no-answer, or initiated -> failed without ringing. The phone API serves this as
`POST /_phone/failures`, and the terminal phone as `/fail`.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

# Twilio's delivery error codes (https://www.twilio.com/docs/api/errors/<code>) and the status a
# message ends with when the code is given without one.
MESSAGE_ERRORS: dict[int, tuple[str, str]] = {
    30001: ("Queue overflow", "failed"),
    30002: ("Account suspended", "failed"),
    30003: ("Unreachable destination handset", "undelivered"),
    30004: ("Message blocked", "undelivered"),
    30005: ("Unknown destination handset", "undelivered"),
    30006: ("Landline or unreachable carrier", "undelivered"),
    30007: ("Message filtered", "undelivered"),
    30008: ("Unknown error", "undelivered"),
    30010: ("Message price exceeds max price", "failed"),
}
MESSAGE_END = frozenset({"undelivered", "failed"})
CALL_END = frozenset({"busy", "no-answer", "failed"})
MAX_COUNT = 100


class FailureError(ValueError):
    """A failure that cannot be planned (unknown code or status); the message says why."""


@dataclass(frozen=True)
class MessageFailure:
    """How one message ends: `status` (undelivered or failed) with a Twilio `error_code`."""

    status: str
    error_code: int

    @property
    def error_message(self) -> str:
        """Twilio's title for the code."""
        return MESSAGE_ERRORS[self.error_code][0]


@dataclass(frozen=True)
class CallFailure:
    """How one call ends: busy, no-answer or failed."""

    status: str


class FailurePlan:
    """Failures to apply to the next messages and calls, per destination (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._messages: dict[str, deque[MessageFailure]] = {}
        self._calls: dict[str, deque[CallFailure]] = {}

    def fail_messages(
        self, to: str, *, error_code: int, status: str | None = None, count: int = 1
    ) -> MessageFailure:
        """Make the next `count` messages to `to` end `status` with `error_code`."""
        if error_code not in MESSAGE_ERRORS:
            known = ", ".join(str(code) for code in MESSAGE_ERRORS)
            raise FailureError(f"error_code must be one of Twilio's delivery codes: {known}.")
        status = status or MESSAGE_ERRORS[error_code][1]
        if status not in MESSAGE_END:
            raise FailureError('A message fails as "undelivered" or "failed".')
        failure = MessageFailure(status, error_code)
        with self._lock:
            self._messages.setdefault(_bare(to), deque()).extend([failure] * _count(count))
        return failure

    def fail_calls(self, to: str, *, status: str, count: int = 1) -> CallFailure:
        """Make the next `count` calls to `to` end `status` (busy, no-answer or failed)."""
        if status not in CALL_END:
            raise FailureError('A call fails as "busy", "no-answer" or "failed".')
        failure = CallFailure(status)
        with self._lock:
            self._calls.setdefault(_bare(to), deque()).extend([failure] * _count(count))
        return failure

    def next_message(self, to: str) -> MessageFailure | None:
        """Take the failure planned for the next message to `to`, if any."""
        with self._lock:
            planned = self._messages.get(_bare(to))
            return planned.popleft() if planned else None

    def next_call(self, to: str) -> CallFailure | None:
        """Take the failure planned for the next call to `to`, if any."""
        with self._lock:
            planned = self._calls.get(_bare(to))
            return planned.popleft() if planned else None

    def pending(self) -> dict[str, list[dict[str, object]]]:
        """What is still planned, JSON-ready: {"messages": [...], "calls": [...]}."""
        with self._lock:
            messages: list[dict[str, object]] = [
                {"to": to, "status": f.status, "error_code": f.error_code}
                for to, queue in self._messages.items()
                for f in queue
            ]
            calls: list[dict[str, object]] = [
                {"to": to, "status": f.status} for to, q in self._calls.items() for f in q
            ]
        return {"messages": messages, "calls": calls}

    def clear(self) -> None:
        """Forget every planned failure."""
        with self._lock:
            self._messages.clear()
            self._calls.clear()


def _bare(number: str) -> str:
    return number.removeprefix("whatsapp:")


def _count(count: int) -> int:
    if not 1 <= count <= MAX_COUNT:
        raise FailureError(f"count must be from 1 to {MAX_COUNT}.")
    return count
