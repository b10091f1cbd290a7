"""The carrier: what Twilio's network does between the sandbox account, the app and the phone.

It watches a `SandboxState` and, in background threads of its own (never a REST request thread):

- texts from the phone are recorded and POSTed to the number's SmsUrl (see `delivery`); carrier
  keywords (STOP, START, HELP, INFO and synonyms) get Twilio's own reply, shown as from Twilio;
- every outbound message moves through Twilio's documented statuses with status callbacks, or
  fails on demand (`failures`);
- calls from the phone POST to the number's VoiceUrl and run in the voice engine with the phone on
  the line; calls made through `Calls.json` ring the phone and, once answered, run their Url or
  Twiml; a REST update moves a live call to new TwiML or ends it; status callbacks follow each
  call's life;
- every problem Twilio would log (11200, 12100, 12200, ...) is logged and shown on the phone.

    carrier = Carrier(state, time_scale=0.1).start()
    carrier.send_sms("hours")                 # what the phone API calls
    ...
    carrier.stop()                            # hangs up, wakes the phone, joins every thread
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from dialtone.sandbox.carrier.calls import CallRunner
from dialtone.sandbox.carrier.delivery import Messenger
from dialtone.sandbox.carrier.failures import FailurePlan
from dialtone.sandbox.carrier.live import (
    Callback,
    InlineTwimlClient,
    LiveCall,
    LiveCalls,
)
from dialtone.sandbox.carrier.messaging import Media
from dialtone.sandbox.carrier.queues import QueueRegistry
from dialtone.sandbox.carrier.webhook_client import Hook, WebhookClient
from dialtone.sandbox.phone.line import EventLog
from dialtone.sandbox.resources import Call, Message
from dialtone.sandbox.state import (
    PHONE_USER_NUMBER,
    CallCreated,
    CallUpdated,
    Event,
    MessageCreated,
    MessageUpdated,
    SandboxState,
)

log = logging.getLogger("dialtone.sandbox.carrier.network")

FIRST_STATUSES = ("queued", "accepted")  # an outbound message's initial status: no callback


class PhoneError(ValueError):
    """The phone asked for something that cannot be done (no such call, nothing to answer)."""


class Carrier:
    """Drives the app as Twilio does, for one sandbox account and one phone."""

    def __init__(
        self,
        state: SandboxState,
        *,
        phone_number: str = PHONE_USER_NUMBER,
        client: WebhookClient | None = None,
        time_scale: float = 1.0,
        input_scale: float = 1.0,
    ) -> None:
        self.state = state
        self.phone_number = phone_number
        self.client = client or WebhookClient(state.auth_token)
        self.time_scale = time_scale  # delivery steps, pauses, rings elsewhere
        self.input_scale = input_scale  # Gather/Record timeouts, for people typing
        self.events = EventLog()
        self.queues = QueueRegistry()
        self.failures = FailurePlan()
        self.calls = LiveCalls(self.events, input_scale)
        self.runner = CallRunner(self)
        self._lock = threading.Lock()
        self._dialling = threading.Lock()  # held by place_call from its check to its tracking
        self._threads: set[threading.Thread] = set()
        self.stopping = threading.Event()
        self._unsubscribe: Callable[[], None] | None = None

    @property
    def messenger(self) -> Messenger:
        """The message half of the carrier (built on use: tests swap `client` after start)."""
        return Messenger(
            self.state, self.client, self.events, self.failures, self._pause, self.phone_number
        )

    # --- life -------------------------------------------------------------------------------

    def start(self) -> Carrier:
        """Start watching the state; returns self."""
        if self._unsubscribe is None:
            self._unsubscribe = self.state.subscribe(self._on_event)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop: hang up every call, wake the phone's readers, join every thread.

        Calls end `completed` in the state without any webhook (status callback or action):
        the app is usually gone already (Ctrl-C on `make dev` stops it first).
        """
        self.stopping.set()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        for live in self.calls.all():
            live.hang_up(quiet=True)
        self.events.close()
        if not self.wait_idle(timeout):
            with self._lock:
                left = len(self._threads)
            log.warning("carrier stopped with %d thread(s) still running", left)

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until no background work is in flight (webhooks, deliveries, calls); False if
        some is still running after `timeout` s. For tests and scripts that need a quiet moment."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                threads = list(self._threads)
            if not threads:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            threads[0].join(left)

    # --- the phone's actions ------------------------------------------------------------------

    def send_sms(self, body: str, media: Iterable[Media] = (), to: str | None = None) -> Message:
        """The phone texts a number (the sandbox number by default)."""
        media = tuple(media)
        if not body and not media:
            raise PhoneError("A text needs a body or media.")
        to = to or self.state.phone_number
        if not to or self.state.number_by_phone(to) is None:
            raise PhoneError(f"{to or 'The sandbox'} is not a number on the sandbox account.")
        message = self.state.record_inbound_message(
            from_=self.phone_number, to=to, body=body, media_urls=[m.url for m in media]
        )
        messenger = self.messenger
        answer = messenger.keyword_reply(message)
        if answer is not None:
            self._spawn("keyword-reply", messenger.show_keyword_reply, message, answer)
        self._spawn("sms-in", messenger.answer_text, message, media)  # keywords reach the app too
        return message

    def place_call(self, to: str | None = None) -> Call:
        """The phone calls a number (the sandbox number by default)."""
        to = to or self.state.phone_number
        number = self.state.number_by_phone(to) if to else None
        if not to or number is None:
            raise PhoneError(f"{to or 'The sandbox'} is not a number on the sandbox account.")
        callback = (
            Callback(number.status_callback, number.status_callback_method)
            if number.status_callback
            else None
        )
        # One dial at a time: the check and the tracking of the new call are one step.
        with self._dialling:
            if self.current_call() is not None:
                raise PhoneError("The phone is already on a call: hang up first.")
            call = self.state.record_inbound_call(from_=self.phone_number, to=to)
            live = self._track(call.sid, callback, with_phone=True)
        live.decide("answer")  # the phone placed it: hanging up ends it, never "declines"
        self._spawn("call-in", self.runner.run_inbound, call, live)
        return call

    def press(self, call_sid: str, keys: str) -> None:
        """Keys from the phone's keypad (or, while recording, anything typed)."""
        self._live(call_sid).line.press(keys)

    def answer(self, call_sid: str) -> None:
        """The phone answers a call that is ringing it."""
        if not self._live(call_sid).decide("answer"):
            raise PhoneError("That call is not ringing.")

    def decline(self, call_sid: str) -> None:
        """The phone declines a call that is ringing it (the caller gets busy)."""
        if not self._live(call_sid).decide("decline"):
            raise PhoneError("That call is not ringing.")

    def hangup(self, call_sid: str) -> None:
        """The phone hangs up (declines, if the call is still ringing)."""
        live = self._live(call_sid)
        if not live.decide("decline"):
            live.hang_up()

    def current_call(self) -> str | None:
        """The SID of the phone's newest call that has not ended, if any."""
        mine = self.calls.with_phone()
        return mine[-1] if mine else None

    def resolve(self, call_sid: str) -> str:
        """A call SID, with 'current' standing for the phone's current call."""
        if call_sid != "current":
            return call_sid
        current = self.current_call()
        if current is None:
            raise PhoneError("The phone is not on a call.")
        return current

    # --- events from the state ------------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        # Runs in whichever thread changed the state (often a REST request): be quick.
        if isinstance(event, MessageCreated):
            message = event.message
            if message.direction.startswith("outbound") and message.status in FIRST_STATUSES:
                self._spawn("delivery", self.messenger.deliver, message)
        elif isinstance(event, MessageUpdated) and "status" in event.changed:
            m = event.message
            self.events.add(
                "message_status",
                sid=m.sid,
                to=m.to,
                status=m.status,
                error_code=m.error_code,
                to_phone=self.is_phone(m.to),
            )
        elif isinstance(event, CallCreated):
            self._show_call(event.call)
            if event.call.direction == "outbound-api":
                self._call_created(event.call)
        elif isinstance(event, CallUpdated):
            self._call_updated(event)

    def _call_created(self, call: Call) -> None:
        callback = None
        if call.status_callback:
            events = frozenset(call.status_callback_events or ("completed",))
            callback = Callback(call.status_callback, call.status_callback_method, events)
        live = self._track(call.sid, callback, with_phone=self.is_phone(call.to))
        self._spawn("call-out", self.runner.run_outbound, call, live)

    def _call_updated(self, event: CallUpdated) -> None:
        if "status" in event.changed:
            self._show_call(event.call)
        live = self.calls.get(event.call.sid)
        if live is None:
            return
        if event.call.ended:
            live.hang_up()  # a REST update ended it; idempotent if the engine did
        elif event.changed & {"url", "twiml"}:
            self._redirect(live, event.call)

    def _redirect(self, live: LiveCall, call: Call) -> None:
        """A REST update with Url or Twiml: the call leaves its TwiML for the new one."""
        engine = live.engine
        if engine is None:  # not answered yet: it runs the new instructions once it is
            return
        if call.twiml is not None and isinstance(engine.client, InlineTwimlClient):
            engine.redirect(Hook(engine.client.add(call.twiml)))
        elif call.url:
            engine.redirect(Hook(call.url, call.method))

    def _show_call(self, call: Call) -> None:
        self.events.add(
            "call_status",
            call_sid=call.sid,
            status=call.status,
            direction=call.direction,
            from_=call.from_,
            to=call.to,
            duration=call.duration,
        )

    # --- helpers ----------------------------------------------------------------------------------

    def _track(self, sid: str, callback: Callback | None, *, with_phone: bool) -> LiveCall:
        live = self.calls.track(sid, callback, with_phone=with_phone)
        live.line.dial_outcome = self.runner.dial_outcome
        return live

    def _live(self, call_sid: str) -> LiveCall:
        sid = self.resolve(call_sid)
        live = self.calls.get(sid)
        if live is None or not live.with_phone:
            raise PhoneError(f"The phone is not on call {sid}.")
        return live

    def is_phone(self, number: str) -> bool:
        """True for the phone's own number (on any channel)."""
        return number.removeprefix("whatsapp:") == self.phone_number

    def _pause(self, seconds: float) -> bool:
        """Wait a scaled `seconds`; False when the carrier is stopping."""
        return not self.stopping.wait(seconds * self.time_scale)

    def _spawn(self, name: str, target: Callable[..., None], *args: Any) -> None:
        if self.stopping.is_set():
            return

        def run() -> None:
            try:
                target(*args)
            except Exception:
                log.exception("carrier %s thread failed", name)
            finally:
                with self._lock:
                    self._threads.discard(thread)

        thread = threading.Thread(target=run, name=f"carrier-{name}", daemon=True)
        with self._lock:
            self._threads.add(thread)
        thread.start()
