"""The carrier: what Twilio's network does between the sandbox account, the app and the phone.

It watches a `SandboxState` and, in background threads of its own (never a REST request thread):

- texts from the phone are recorded and POSTed to the number's SmsUrl (fallback SmsFallbackUrl);
  `<Message>` replies become outbound-reply messages;
- STOP and START (and synonyms) from the phone are handled as Twilio does on long codes: the
  opt-out is recorded in the state and confirmed to the phone by "Twilio", the message still
  goes to the app, and texts to an opted-out phone are refused with 21610 until START;
- every outbound message moves queued -> sent -> delivered, with a status callback for each step;
  messages to the phone appear on it (Twilio's magic test To numbers are refused by the REST API
  before any message exists, as Twilio refuses them);
- calls from the phone POST to the number's VoiceUrl and run in the voice engine with the phone on
  the line; calls made through `Calls.json` ring the phone and, once answered, run their Url or
  Twiml; a REST update that ends a call hangs it up; status callbacks follow each call's life;
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
from dataclasses import dataclass, field
from typing import Any

from dialtone.sandbox.api.errors import UNSUBSCRIBED
from dialtone.sandbox.carrier import messaging, stop_filter, twiml
from dialtone.sandbox.carrier.call_peer import CallInfo
from dialtone.sandbox.carrier.messaging import Media, OutboundMessage
from dialtone.sandbox.carrier.queues import QueueRegistry
from dialtone.sandbox.carrier.voice import Call as VoiceCall
from dialtone.sandbox.carrier.voice import voice_params
from dialtone.sandbox.carrier.webhook_client import Fetched, Hook, WebhookClient
from dialtone.sandbox.carrier.webhook_errors import Notice, TwilioFailure
from dialtone.sandbox.phone.line import EventLog, PhoneLine, show_notice
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

DELIVERY_STEP = 1.0  # seconds (times time_scale) from queued to sent, and from sent to delivered
RING_ELSEWHERE = 5.0  # seconds (times time_scale) a call to a number other than the phone rings
MAX_RING_TIMEOUT = 600  # Twilio's upper bound for a call's Timeout
INLINE_URL = "inline:twiml"  # the Hook URL of a call created with inline Twiml


# How a call that was never answered ends: the phone's decision -> (CallStatus, reason shown).
_UNANSWERED = {"decline": ("busy", "declined"), "cancel": ("canceled", "canceled")}


class PhoneError(ValueError):
    """The phone asked for something that cannot be done (no such call, nothing to answer)."""


@dataclass
class _Callback:
    """Where a call's status callbacks go, and for which events."""

    url: str
    method: str = "POST"
    events: frozenset[str] = frozenset({"completed"})


@dataclass
class _LiveCall:
    """A call the carrier is carrying, with the phone's line and the engine once it runs."""

    sid: str
    line: PhoneLine
    callback: _Callback | None
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


class InlineTwimlClient(WebhookClient):
    """A WebhookClient that answers INLINE_URL with a call's inline Twiml instead of a request."""

    def __init__(self, base: WebhookClient, document: str) -> None:
        super().__init__(base.auth_token, base.connect_timeout, base.total_timeout, base.user_agent)
        self.document = document

    def fetch_twiml(self, hook: Hook, params: Mapping[str, str], kind: twiml.Kind) -> Fetched:
        """The inline document for INLINE_URL; any other URL as usual."""
        if hook.url != INLINE_URL:
            return super().fetch_twiml(hook, params, kind)
        parsed = twiml.parse(self.document, kind, None)
        return Fetched(parsed, parsed.warnings)


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
        self._lock = threading.Lock()
        self._dialling = threading.Lock()  # held by place_call from its check to its tracking
        self._threads: set[threading.Thread] = set()
        self._calls: dict[str, _LiveCall] = {}
        self._stopping = threading.Event()
        self._unsubscribe: Callable[[], None] | None = None

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
        with self._lock:
            calls = list(self._calls.values())
        for live in calls:
            live.hang_up(quiet=True)
        self.events.close()
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                threads = list(self._threads)
            if not threads or time.monotonic() >= deadline:
                break
            threads[0].join(max(0.0, deadline - time.monotonic()))
        if threads:
            log.warning("carrier stopped with %d thread(s) still running", len(threads))

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
        confirmation = stop_filter.handle_keyword(self.state, message)
        if (
            confirmation is not None
        ):  # Twilio's own reply: to the phone, not a message on the account
            self.events.add(
                "message",
                sid=None,
                from_=message.to,
                to=message.from_,
                body=confirmation,
                media_urls=[],
                direction="outbound-reply",
                auto_reply=True,
            )
        self._spawn("sms-in", self._answer_text, message, media)  # keywords reach the app too
        return message

    def place_call(self, to: str | None = None) -> Call:
        """The phone calls a number (the sandbox number by default)."""
        to = to or self.state.phone_number
        number = self.state.number_by_phone(to) if to else None
        if not to or number is None:
            raise PhoneError(f"{to or 'The sandbox'} is not a number on the sandbox account.")
        callback = (
            _Callback(number.status_callback, number.status_callback_method)
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
        with self._lock:
            mine = [sid for sid, live in self._calls.items() if live.with_phone]
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
            if message.direction.startswith("outbound") and message.status == "queued":
                self._spawn("delivery", self._deliver, message)
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
            callback = _Callback(call.status_callback, call.status_callback_method, events)
        live = self._track(call.sid, callback, with_phone=self._is_phone(call.to))
        self._spawn("call-out", self._run_outbound, call, live)

    def _call_updated(self, event: CallUpdated) -> None:
        if "status" in event.changed:
            self._show_call(event.call)
        if event.call.ended:
            with self._lock:
                live = self._calls.get(event.call.sid)
            if live is not None:
                live.hang_up()  # a REST update ended it; idempotent if the engine did
        elif event.changed & {"url", "twiml"}:
            text = "redirecting a live call through the REST API is not emulated"
            show_notice(self.events, Notice(None, text, fatal=False), call_sid=event.call.sid)

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

    # --- messages ---------------------------------------------------------------------------------

    def _answer_text(self, message: Message, media: tuple[Media, ...]) -> None:
        number = self.state.number_by_phone(message.to)
        if number is None or not number.sms_url:
            text = f"{message.to} has no SmsUrl, so nothing answers texts: point it at the app."
            show_notice(self.events, Notice(None, text, fatal=False), message_sid=message.sid)
            return
        hook = Hook(
            number.sms_url,
            number.sms_method,
            number.sms_fallback_url or None,
            number.sms_fallback_method,
        )
        params = messaging.inbound_params(
            message_sid=message.sid,
            account_sid=self.state.account_sid,
            from_=message.from_,
            to=message.to,
            body=message.body,
            media=media,
        )
        result = messaging.reply(self.client, hook, params)
        for notice in result.notices:
            show_notice(self.events, notice, message_sid=message.sid)
        for out in result.messages:
            self._create_message(out, "outbound-reply")

    def _create_message(self, out: OutboundMessage, direction: str) -> str:
        if self.state.is_opted_out(out.from_, out.to):
            return self._refuse_unsubscribed(out, direction)
        return self.state.create_message(
            to=out.to,
            from_=out.from_,
            body=out.body,
            media_urls=out.media_urls,
            direction=direction,
            status_callback=out.status_callback,
        ).sid

    def _refuse_unsubscribed(self, out: OutboundMessage, direction: str) -> str:
        """A TwiML <Message> to a number that texted STOP: failed with 21610, as Twilio does."""
        message = self.state.create_message(
            to=out.to,
            from_=out.from_,
            body=out.body,
            media_urls=out.media_urls,
            direction=direction,
            status="failed",
            status_callback=out.status_callback,
        )
        message = self.state.set_message_status(
            message.sid,
            "failed",
            error_code=UNSUBSCRIBED,
            error_message=stop_filter.UNSUBSCRIBED_TEXT,
        )
        notice = Notice(None, stop_filter.refusal(out.to, out.from_), fatal=False)
        show_notice(self.events, notice, message_sid=message.sid)
        self._message_callback(message)
        return message.sid

    def _deliver(self, message: Message) -> None:
        """queued -> sent -> delivered, a status callback at each step."""
        self._message_callback(message)
        if not self._pause(DELIVERY_STEP):
            return
        message = self.state.set_message_status(message.sid, "sent")
        self._message_callback(message)
        if not self._pause(DELIVERY_STEP):
            return
        message = self.state.set_message_status(message.sid, "delivered")
        if self._is_phone(message.to):
            self.events.add(
                "message",
                sid=message.sid,
                from_=message.from_,
                to=message.to,
                body=message.body,
                media_urls=list(message.media_urls),
                direction=message.direction,
            )
        self._message_callback(message)

    def _message_callback(self, message: Message) -> None:
        if not message.status_callback:
            return
        params = messaging.status_params(
            message_sid=message.sid,
            account_sid=message.account_sid,
            from_=message.from_,
            to=message.to,
            status=message.status,
            error_code=message.error_code,
            messaging_service_sid=message.messaging_service_sid,
        )
        try:
            self.client.send(message.status_callback, params, "POST")
        except TwilioFailure as exc:
            show_notice(self.events, exc.notice, message_sid=message.sid)

    # --- calls ------------------------------------------------------------------------------------

    def _run_inbound(self, call: Call, live: _LiveCall) -> None:
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
            self._run_engine(call, live, hook, self.client, "inbound")
        finally:
            self._untrack(call.sid)

    def _run_outbound(self, call: Call, live: _LiveCall) -> None:
        try:
            self._call_callback(live, call, "initiated")
            if self._stopping.is_set() or self.state.call(call.sid).ended:
                return
            call = self.state.set_call_status(call.sid, "ringing")
            self._call_callback(live, call, "ringing")
            if self._is_phone(call.to):
                self.events.add("ringing", call_sid=call.sid, from_=call.from_, to=call.to)
                ring = _ring_timeout(call.extra.get("Timeout"))
                live.decided.wait(ring)
            else:
                live.decided.wait(RING_ELSEWHERE * self.time_scale)
            decision = live.decision
            if decision == "answer":
                self.state.set_call_status(call.sid, "in-progress")
                if call.twiml:
                    client: WebhookClient = InlineTwimlClient(self.client, call.twiml)
                    hook = Hook(INLINE_URL)
                else:
                    client = self.client
                    hook = Hook(
                        call.url or "", call.method, call.fallback_url, call.fallback_method
                    )
                self._run_engine(call, live, hook, client, "outbound-api")
                return
            final, reason = _UNANSWERED.get(decision or "", ("no-answer", "nobody answered"))
            call = self.state.set_call_status(call.sid, final)
            live.line.ended(call.status, reason)
            self._call_callback(live, call, call.status, {"CallDuration": "0"})
        finally:
            self._untrack(call.sid)

    def _run_engine(
        self, call: Call, live: _LiveCall, hook: Hook, client: WebhookClient, direction: str
    ) -> None:
        info = CallInfo(call.sid, call.account_sid, call.from_, call.to, direction)

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
            send_sms=lambda out: self._create_message(out, "outbound-call"),
            time_scale=self.time_scale,
        )
        live.attach(engine)
        if direction != "inbound":
            self._call_callback(live, call, "in-progress", engine.params())
        engine.run()

    def _call_callback(
        self, live: _LiveCall, call: Call, status: str, params: Mapping[str, str] | None = None
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
        with live.lock:
            live.sequence += 1
            sequence = live.sequence
        info = CallInfo(call.sid, call.account_sid, call.from_, call.to, call.direction)
        form: dict[str, Any] = voice_params(info, status, params)
        form.update(
            CallStatus=status,
            CallbackSource="call-progress-events",
            SequenceNumber=str(sequence - 1),
            Timestamp=rfc2822(utcnow()),
        )
        try:
            self.client.send(callback.url, form, callback.method)
        except TwilioFailure as exc:
            show_notice(self.events, exc.notice, call_sid=call.sid)

    # --- helpers ----------------------------------------------------------------------------------

    def _track(self, sid: str, callback: _Callback | None, *, with_phone: bool) -> _LiveCall:
        line = PhoneLine(sid, self.events, input_scale=self.input_scale)
        live = _LiveCall(sid, line, callback, with_phone)
        with self._lock:
            self._calls[sid] = live
        return live

    def _untrack(self, sid: str) -> None:
        with self._lock:
            live = self._calls.pop(sid, None)
        if live is not None:
            live.line.close()

    def _live(self, call_sid: str) -> _LiveCall:
        sid = self.resolve(call_sid)
        with self._lock:
            live = self._calls.get(sid)
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


def _ring_timeout(raw: str | None) -> float:
    """A call's Timeout parameter (seconds it rings), Twilio's default 60, at most 600."""
    try:
        value = int(raw) if raw else 60
    except ValueError:
        value = 60
    return float(min(max(value, 1), MAX_RING_TIMEOUT))
