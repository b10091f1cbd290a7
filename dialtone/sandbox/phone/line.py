"""The phone's side of the carrier: the event log the phone reads, and a call's line to the phone.

`EventLog` is what `GET /_phone/events` serves: JSON-ready events with increasing ids, read with a
long poll. `PhoneLine` is the `CallPeer` the voice engine talks to for a call with the phone: it
shows every verb as an event and waits for the keys the phone sends for Gather and Record.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from dialtone.sandbox.carrier.call_peer import RecordResult
from dialtone.sandbox.carrier.webhook_errors import Notice

log = logging.getLogger("dialtone.sandbox.phone")

DialOutcome = Callable[[str], "str | None"]  # a dialled number -> DialCallStatus, None: answers

MAX_EVENTS = 1000  # the log keeps the newest events only; a phone that falls behind skips ahead


class EventLog:
    """Thread-safe, bounded list of events for the phone, each a dict with `id` and `type`."""

    def __init__(self, limit: int = MAX_EVENTS) -> None:
        self._events: deque[dict[str, Any]] = deque(maxlen=limit)
        self._changed = threading.Condition()
        self._last = 0
        self._closed = False
        self._waiting = 0

    @property
    def waiting(self) -> int:
        """How many readers are waiting in `since` right now."""
        with self._changed:
            return self._waiting

    @property
    def last_id(self) -> int:
        """The id of the newest event (0 before any)."""
        with self._changed:
            return self._last

    def add(self, type_: str, **fields: Any) -> dict[str, Any]:
        """Append an event and wake every reader; returns it."""
        with self._changed:
            self._last += 1
            event = {"id": self._last, "type": type_, "time": time.time(), **fields}
            self._events.append(event)
            self._changed.notify_all()
        return event

    def since(self, after: int, wait: float = 0.0) -> list[dict[str, Any]]:
        """Events with an id above `after`, waiting up to `wait` s for one if there is none yet."""
        deadline = time.monotonic() + wait
        with self._changed:
            self._waiting += 1
            try:
                while self._last <= after and not self._closed:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._changed.wait(left)
            finally:
                self._waiting -= 1
            return [dict(e) for e in self._events if e["id"] > after]

    def close(self) -> None:
        """Wake every waiting reader now (the sandbox is stopping)."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()


class PhoneLine:
    """One call as the phone sees it: verbs become events, keys come from the phone."""

    def __init__(
        self,
        call_sid: str,
        events: EventLog,
        *,
        input_scale: float = 1.0,
        dial_outcome: DialOutcome | None = None,
    ) -> None:
        self.call_sid = call_sid
        self.events = events
        self.input_scale = input_scale  # stretches Gather/Record timeouts for people typing
        self.dial_outcome = dial_outcome  # a planned failure for a dialled number, if any
        self._keys = ""
        self._typed = threading.Condition()
        self._closed = False
        self._interrupts = 0  # bumped by interrupt(): a Gather or Record waiting stops

    # --- from the phone ---------------------------------------------------------------------

    def press(self, keys: str) -> None:
        """Keys (or, while recording, any text) sent by the phone."""
        with self._typed:
            self._keys += keys
            self._typed.notify_all()

    def close(self) -> None:
        """The call is over: wake a waiting Gather or Record."""
        with self._typed:
            self._closed = True
            self._typed.notify_all()

    def interrupt(self) -> None:
        """The call moves to new TwiML: a Gather or Record in progress ends with nothing."""
        with self._typed:
            self._interrupts += 1
            self._typed.notify_all()

    # --- CallPeer ---------------------------------------------------------------------------

    def _show(self, type_: str, **fields: Any) -> None:
        self.events.add(type_, call_sid=self.call_sid, **fields)

    def say(self, text: str, voice: str | None, language: str | None) -> None:
        """Show spoken text."""
        self._show("say", text=text, voice=voice, language=language)

    def play(self, url: str) -> None:
        """Show the audio that plays."""
        self._show("play", url=url)

    def pause(self, seconds: int) -> None:
        """Show a pause."""
        self._show("pause", seconds=seconds)

    def gather(self, num_digits: int | None, timeout: int, finish_on_key: str) -> str | None:
        """Wait for keys: `num_digits` of them, the finish key, or `timeout` s after the last."""
        limit = timeout * self.input_scale
        with self._typed:
            interrupts = self._interrupts
        self._show(
            "gather",
            num_digits=num_digits,
            timeout=timeout,
            finish_on_key=finish_on_key,
            wait=limit,
        )
        with self._typed:
            seen = len(self._keys)
            deadline = time.monotonic() + limit
            while not self._closed and self._interrupts == interrupts:
                digits = "".join(k for k in self._keys if k in "0123456789*#")
                if num_digits and len(digits) >= num_digits:
                    break
                if finish_on_key and finish_on_key in digits:
                    break
                if len(self._keys) != seen:  # a key restarts the inter-digit timeout
                    seen, deadline = len(self._keys), time.monotonic() + limit
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._typed.wait(left)
            typed, self._keys = self._keys, ""
        # The engine cuts at the finish key and at num_digits, as Twilio does.
        return "".join(k for k in typed if k in "0123456789*#") or None

    def record(
        self, max_length: int, timeout: int, finish_on_key: str, play_beep: bool
    ) -> RecordResult | None:
        """Record until a finish key, `timeout` s with nothing typed, max_length or hang-up."""
        with self._typed:
            interrupts = self._interrupts
        self._show("record", max_length=max_length, timeout=timeout, finish_on_key=finish_on_key)
        started = time.monotonic()
        end = started + max_length
        limit = timeout * self.input_scale
        heard = False
        pressed = ""
        with self._typed:
            self._keys = ""
            deadline = min(end, started + limit)
            while not self._closed and self._interrupts == interrupts:
                if self._keys:
                    heard = True
                    pressed = next((k for k in self._keys if k in finish_on_key), "")
                    self._keys = ""
                    if pressed:
                        break
                    deadline = min(end, time.monotonic() + limit)  # typing counts as speaking
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._typed.wait(left)
        if not heard and not self._closed:
            return None  # silence from the start: Twilio records nothing
        return RecordResult(max(1, round(time.monotonic() - started)), pressed)

    def dialled(self, kind: str, target: str) -> str | None:
        """Show the dialled party; it answers unless a failure was planned for it."""
        status = self.dial_outcome(target) if self.dial_outcome and kind == "number" else None
        self._show("dial", kind=kind, target=target, status=status or "answered")
        return status

    def connected(self, party: str) -> None:
        """Show that another sandbox call is now on the line."""
        self._show("connected", party=party)

    def sms(self, to: str, body: str) -> None:
        """Show that the call sent a text (it arrives separately if it is for the phone)."""
        self._show("call_sms", to=to, body=body)

    def ended(self, status: str, reason: str) -> None:
        """Show the end of the call and wake anything still waiting."""
        self._show("call_ended", status=status, reason=reason)
        self.close()

    def error(self, notice: Notice) -> None:
        """Show and log a notice Twilio would put in its debugger."""
        show_notice(self.events, notice, call_sid=self.call_sid)


def show_notice(events: EventLog, notice: Notice, **context: Any) -> None:
    """Log a notice and put it in front of the person on the phone."""
    level = logging.ERROR if notice.fatal else logging.WARNING
    log.log(level, "%s", notice)
    events.add(
        "error",
        code=notice.code,
        title=notice.title,
        message=notice.message,
        url=notice.url,
        fatal=notice.fatal,
        text=str(notice),
        **context,
    )
