"""The phone end of a sandbox call, as the voice engine (`voice.py`) sees it.

`CallPeer` is what the engine talks to while it carries out TwiML: the carrier's phone line
adapts the terminal phone to it, and tests use a scripted one. `CallInfo` names the call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from dialtone.sandbox.carrier.webhook_errors import Notice


@dataclass(frozen=True)
class RecordResult:
    """What the phone recorded: whole seconds of audio and the key that stopped it ("" if none)."""

    duration: int
    digits: str = ""


class CallPeer(Protocol):
    """The phone on the other end of a call, as the engine sees it."""

    def say(self, text: str, voice: str | None, language: str | None) -> None:
        """Speak `text` (a <Say>)."""

    def play(self, url: str) -> None:
        """Play the audio at `url` (a <Play>)."""

    def pause(self, seconds: int) -> None:
        """A <Pause> of `seconds` begins (the engine does the scaled waiting)."""

    def gather(self, num_digits: int | None, timeout: int, finish_on_key: str) -> str | None:
        """Ask for keypad digits; None or "" when the caller pressed nothing before `timeout`."""

    def record(
        self, max_length: int, timeout: int, finish_on_key: str, play_beep: bool
    ) -> RecordResult | None:
        """Record the caller; None when nothing was recorded."""

    def dialled(self, kind: str, target: str) -> str | None:
        """A <Dial> to `target` (kind: number, client, sip, conference, queue, ...).

        For anything but a queue, may return the DialCallStatus to simulate (default completed).
        """

    def connected(self, party: str) -> None:
        """Now talking to another sandbox call (`party` is its CallSid)."""

    def sms(self, to: str, body: str) -> None:
        """An <Sms>/<Message> in the call sent `body` to `to`."""

    def ended(self, status: str, reason: str) -> None:
        """The call is over, with its final CallStatus and a short reason."""

    def error(self, notice: Notice) -> None:
        """Twilio would log `notice` in its debugger (fatal or a warning)."""


@dataclass(frozen=True)
class CallInfo:
    """Who and what a call is: the fields every voice webhook carries."""

    call_sid: str
    account_sid: str
    from_: str
    to: str
    direction: str = "inbound"  # or "outbound-api" for calls made through the REST API
