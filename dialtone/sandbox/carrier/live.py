"""The carrier's bookkeeping for live calls: who is on the line, where callbacks go, and what
ends a call that rings.

A `LiveCall` is one call the carrier is carrying: the phone's line, the voice engine once it runs,
and the phone's decision while it rings. `LiveCalls` is the thread-safe table of them.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

from dialtone.sandbox.carrier import twiml
from dialtone.sandbox.carrier.voice import Call as VoiceCall
from dialtone.sandbox.carrier.webhook_client import Fetched, Hook, WebhookClient
from dialtone.sandbox.phone.line import EventLog, PhoneLine

MAX_RING_TIMEOUT = 600  # Twilio's upper bound for a call's Timeout
INLINE_URL = "inline:twiml"  # the Hook URL of a call (or redirect) with inline Twiml

# How a call that was never answered ends: the phone's decision -> (CallStatus, reason shown).
UNANSWERED = {"decline": ("busy", "declined"), "cancel": ("canceled", "canceled")}


@dataclass
class Callback:
    """Where a call's status callbacks go, and for which events."""

    url: str
    method: str = "POST"
    events: frozenset[str] = frozenset({"completed"})


@dataclass
class LiveCall:
    """A call the carrier is carrying, with the phone's line and the engine once it runs."""

    sid: str
    line: PhoneLine
    callback: Callback | None
    with_phone: bool = True
    engine: VoiceCall | None = None
    decision: str | None = None  # for a call ringing the phone: answer, decline, cancel
    decided: threading.Event = field(default_factory=threading.Event)
    sequence: int = 0
    hung: bool = False
    quiet: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def decide(self, decision: str) -> bool:
        """Answer, decline or cancel a ringing call; False if it was already decided."""
        with self.lock:
            if self.decision is not None:
                return False
            self.decision = decision
        self.decided.set()
        return True

    def hang_up(self, *, quiet: bool = False) -> None:
        """End the call from any state: ringing, running, or about to run.

        `quiet`: the engine sends no more requests (the carrier is stopping).
        """
        self.decide("cancel")
        with self.lock:
            self.hung = True
            self.quiet = self.quiet or quiet
            engine = self.engine
        if engine is not None:
            engine.hangup(quiet=quiet)
        self.line.close()

    def attach(self, engine: VoiceCall) -> None:
        """Hand the call to the engine (hanging it up at once if the phone already did)."""
        with self.lock:
            self.engine = engine
            hung, quiet = self.hung, self.quiet
        if hung:
            engine.hangup(quiet=quiet)

    def next_sequence(self) -> int:
        """The SequenceNumber of the next status callback (0, 1, 2, ...)."""
        with self.lock:
            self.sequence += 1
            return self.sequence - 1


class LiveCalls:
    """The calls the carrier is carrying, by SID (thread-safe)."""

    def __init__(self, events: EventLog, input_scale: float) -> None:
        self.events = events
        self.input_scale = input_scale
        self._lock = threading.Lock()
        self._calls: dict[str, LiveCall] = {}

    def track(self, sid: str, callback: Callback | None, *, with_phone: bool) -> LiveCall:
        """Start carrying a call: give it a line to the phone."""
        line = PhoneLine(sid, self.events, input_scale=self.input_scale)
        live = LiveCall(sid, line, callback, with_phone)
        with self._lock:
            self._calls[sid] = live
        return live

    def untrack(self, sid: str) -> None:
        """The call is over: forget it and close its line."""
        with self._lock:
            live = self._calls.pop(sid, None)
        if live is not None:
            live.line.close()

    def get(self, sid: str) -> LiveCall | None:
        """The live call with this SID, if any."""
        with self._lock:
            return self._calls.get(sid)

    def all(self) -> list[LiveCall]:
        """Every live call, oldest first."""
        with self._lock:
            return list(self._calls.values())

    def with_phone(self) -> list[str]:
        """SIDs of the live calls the phone is on, oldest first."""
        with self._lock:
            return [sid for sid, live in self._calls.items() if live.with_phone]


class InlineTwimlClient(WebhookClient):
    """A WebhookClient that also answers `inline:` URLs with Twiml given to `add`, not a request."""

    def __init__(self, base: WebhookClient) -> None:
        super().__init__(base.auth_token, base.connect_timeout, base.total_timeout, base.user_agent)
        self._documents: dict[str, str] = {}
        self._lock = threading.Lock()

    def add(self, document: str) -> str:
        """Keep an inline document; the URL that stands for it."""
        with self._lock:
            url = f"{INLINE_URL}/{len(self._documents) + 1}"
            self._documents[url] = document
        return url

    def fetch_twiml(self, hook: Hook, params: Mapping[str, str], kind: twiml.Kind) -> Fetched:
        """An inline document for its `inline:` URL; any other URL as usual."""
        with self._lock:
            document = self._documents.get(hook.url)
        if document is None:
            return super().fetch_twiml(hook, params, kind)
        parsed = twiml.parse(document, kind, None)
        return Fetched(parsed, parsed.warnings)


def ring_timeout(raw: str | None) -> float:
    """A call's Timeout parameter (seconds it rings), Twilio's default 60, at most 600."""
    try:
        value = int(raw) if raw else 60
    except ValueError:
        value = 60
    return float(min(max(value, 1), MAX_RING_TIMEOUT))
