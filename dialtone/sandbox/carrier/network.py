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
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from dialtone.sandbox.carrier.call_peer import CallInfo
from dialtone.sandbox.carrier.delivery import Messenger
from dialtone.sandbox.carrier.failures import FailurePlan
from dialtone.sandbox.carrier.live import (
    UNANSWERED,
    Callback,
    InlineTwimlClient,
    LiveCall,
    LiveCalls,
    ring_timeout,
)
from dialtone.sandbox.carrier.messaging import Media
from dialtone.sandbox.carrier.queues import QueueRegistry
from dialtone.sandbox.carrier.voice import Call as VoiceCall
from dialtone.sandbox.carrier.voice import voice_params
from dialtone.sandbox.carrier.webhook_client import Hook, WebhookClient
from dialtone.sandbox.carrier.webhook_errors import Notice, TwilioFailure
from dialtone.sandbox.phone.line import EventLog, show_notice
from dialtone.sandbox.resources import Call, Message, rfc2822, utcnow
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

RING_ELSEWHERE = 5.0  # seconds (times time_scale) a call to a number other than the phone rings
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
        self._lock = threading.Lock()
        self._dialling = threading.Lock()  # held by place_call from its check to its tracking
        self._threads: set[threading.Thread] = set()
        self._stopping = threading.Event()
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
        self._stopping.set()
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
        messenger.keyword_reply(message)
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
        self._spawn("call-in", self._run_inbound, call, live)
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
                to_phone=self._is_phone(m.to),
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
        live = self._track(call.sid, callback, with_phone=self._is_phone(call.to))
        self._spawn("call-out", self._run_outbound, call, live)

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

    # --- calls ------------------------------------------------------------------------------------

    def _run_inbound(self, call: Call, live: LiveCall) -> None:
        try:
            number = self.state.number_by_phone(call.to)
            if number is None or not number.voice_url:
                text = f"{call.to} has no VoiceUrl, so nothing answers calls: point it at the app."
                show_notice(self.events, Notice(None, text), call_sid=call.sid)
                self.state.set_call_status(call.sid, "failed")
                live.line.ended("failed", "no VoiceUrl")
                self._call_callback(live, call, "failed", {"CallDuration": "0"})
                return
            hook = Hook(
                number.voice_url,
                number.voice_method,
                number.voice_fallback_url or None,
                number.voice_fallback_method,
            )
            self._run_engine(call, live, hook, "inbound")
        finally:
            self.calls.untrack(call.sid)

    def _run_outbound(self, call: Call, live: LiveCall) -> None:
        try:
            self._call_callback(live, call, "initiated")
            if self._stopping.is_set() or self.state.call(call.sid).ended:
                return
            failure = self.failures.next_call(call.to)
            if failure is not None and failure.status == "failed":  # never rings
                self._unanswered(live, call, "failed", "failed on demand")
                return
            call = self.state.set_call_status(call.sid, "ringing")
            self._call_callback(live, call, "ringing")
            if failure is not None:
                live.decided.wait(RING_ELSEWHERE * self.time_scale)
                self._unanswered(live, call, failure.status, f"{failure.status} on demand")
                return
            if self._is_phone(call.to):
                self.events.add("ringing", call_sid=call.sid, from_=call.from_, to=call.to)
                live.decided.wait(ring_timeout(call.extra.get("Timeout")))
            else:
                live.decided.wait(RING_ELSEWHERE * self.time_scale)
            decision = live.decision
            if decision == "answer":
                self.state.set_call_status(call.sid, "in-progress")
                self._run_engine(self.state.call(call.sid), live, None, "outbound-api")
                return
            final, reason = UNANSWERED.get(decision or "", ("no-answer", "nobody answered"))
            self._unanswered(live, call, final, reason)
        finally:
            self.calls.untrack(call.sid)

    def _unanswered(self, live: LiveCall, call: Call, status: str, reason: str) -> None:
        call = self.state.set_call_status(call.sid, status)
        live.line.ended(call.status, reason)
        self._call_callback(live, call, call.status, {"CallDuration": "0"})

    def _run_engine(self, call: Call, live: LiveCall, hook: Hook | None, direction: str) -> None:
        """Carry out the call's TwiML: `hook`, or else the call's own Twiml or Url."""
        info = CallInfo(call.sid, call.account_sid, call.from_, call.to, direction)
        client = InlineTwimlClient(self.client)
        if hook is None:
            # Twilio's API description: with both Url and Twiml, the Twiml is ignored.
            if call.url:
                hook = Hook(call.url, call.method, call.fallback_url, call.fallback_method)
            else:
                hook = Hook(client.add(call.twiml or ""))

        def on_status(status: str, params: Mapping[str, str]) -> None:
            self.state.set_call_status(call.sid, status)
            self._call_callback(live, call, status, params)

        engine = VoiceCall(
            info,
            hook,
            client=client,
            peer=live.line,
            queues=self.queues,
            on_status=on_status,
            send_sms=lambda out: self.messenger.create(out, "outbound-call"),
            time_scale=self.time_scale,
        )
        live.attach(engine)
        if direction != "inbound":
            self._call_callback(live, call, "in-progress", engine.params())
        engine.run()

    def _call_callback(
        self, live: LiveCall, call: Call, status: str, params: Mapping[str, str] | None = None
    ) -> None:
        """POST a call status callback if the call asked for this event."""
        callback = live.callback
        if self._stopping.is_set():
            return  # stopping: the state still records the status, nobody is told
        event = {"initiated": "initiated", "ringing": "ringing", "in-progress": "answered"}.get(
            status, "completed"
        )
        if callback is None or event not in callback.events:
            return
        info = CallInfo(call.sid, call.account_sid, call.from_, call.to, call.direction)
        form: dict[str, Any] = voice_params(info, status, params)
        form.update(
            CallStatus=status,
            CallbackSource="call-progress-events",
            SequenceNumber=str(live.next_sequence()),
            Timestamp=rfc2822(utcnow()),
        )
        try:
            self.client.send(callback.url, form, callback.method)
        except TwilioFailure as exc:
            show_notice(self.events, exc.notice, call_sid=call.sid)

    # --- helpers ----------------------------------------------------------------------------------

    def _track(self, sid: str, callback: Callback | None, *, with_phone: bool) -> LiveCall:
        live = self.calls.track(sid, callback, with_phone=with_phone)
        live.line.dial_outcome = self._dial_outcome
        return live

    def _dial_outcome(self, number: str) -> str | None:
        failure = self.failures.next_call(number)
        return failure.status if failure else None

    def _live(self, call_sid: str) -> LiveCall:
        sid = self.resolve(call_sid)
        live = self.calls.get(sid)
        if live is None or not live.with_phone:
            raise PhoneError(f"The phone is not on call {sid}.")
        return live

    def _is_phone(self, number: str) -> bool:
        return number.removeprefix("whatsapp:") == self.phone_number

    def _pause(self, seconds: float) -> bool:
        """Wait a scaled `seconds`; False when the carrier is stopping."""
        return not self._stopping.wait(seconds * self.time_scale)

    def _spawn(self, name: str, target: Callable[..., None], *args: Any) -> None:
        if self._stopping.is_set():
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
