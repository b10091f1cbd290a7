"""Calls as the carrier carries them: ringing, the voice engine, status callbacks.

`CallRunner` is the call half of the carrier. A call from the phone POSTs to the number's VoiceUrl
and runs in the voice engine; a call made through `Calls.json` rings its callee (the phone, or a
number elsewhere that never answers), and once answered runs its Url (or, without one, its
Twiml). Status callbacks follow each call's life, for the events it asked for. Failures planned
with `FailurePlan` end a call busy or no-answer after ringing, or failed without ringing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from dialtone.sandbox.carrier.call_peer import CallInfo
from dialtone.sandbox.carrier.live import UNANSWERED, InlineTwimlClient, LiveCall, ring_timeout
from dialtone.sandbox.carrier.voice import Call as VoiceCall
from dialtone.sandbox.carrier.voice import voice_params
from dialtone.sandbox.carrier.webhook_client import Hook
from dialtone.sandbox.carrier.webhook_errors import Notice, TwilioFailure
from dialtone.sandbox.phone.line import show_notice
from dialtone.sandbox.resources import Call, rfc2822, utcnow

if TYPE_CHECKING:
    from dialtone.sandbox.carrier.network import Carrier

RING_ELSEWHERE = 5.0  # seconds (times time_scale) a call to a number other than the phone rings


class CallRunner:
    """Runs the carrier's calls, each in a thread of the carrier's."""

    def __init__(self, carrier: Carrier) -> None:
        self.carrier = carrier

    def dial_outcome(self, number: str) -> str | None:
        """The DialCallStatus planned for a <Dial> to `number`, or None: it answers."""
        failure = self.carrier.failures.next_call(number)
        return failure.status if failure else None

    def run_inbound(self, call: Call, live: LiveCall) -> None:
        """A call from the phone: the number's VoiceUrl runs it, with the phone on the line."""
        try:
            number = self.carrier.state.number_by_phone(call.to)
            if number is None or not number.voice_url:
                text = f"{call.to} has no VoiceUrl, so nothing answers calls: point it at the app."
                show_notice(self.carrier.events, Notice(None, text), call_sid=call.sid)
                self.carrier.state.set_call_status(call.sid, "failed")
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
            self.carrier.calls.untrack(call.sid)

    def run_outbound(self, call: Call, live: LiveCall) -> None:
        """A `Calls.json` call: it rings, then runs its TwiML once answered (or ends unanswered)."""
        try:
            self._call_callback(live, call, "initiated")
            if self.carrier.stopping.is_set() or self.carrier.state.call(call.sid).ended:
                return
            failure = self.carrier.failures.next_call(call.to)
            if failure is not None and failure.status == "failed":  # never rings
                self._unanswered(live, call, "failed", "failed on demand")
                return
            call = self.carrier.state.set_call_status(call.sid, "ringing")
            self._call_callback(live, call, "ringing")
            if failure is not None:
                live.decided.wait(RING_ELSEWHERE * self.carrier.time_scale)
                self._unanswered(live, call, failure.status, f"{failure.status} on demand")
                return
            if self.carrier.is_phone(call.to):
                self.carrier.events.add("ringing", call_sid=call.sid, from_=call.from_, to=call.to)
                live.decided.wait(ring_timeout(call.extra.get("Timeout")))
            else:
                live.decided.wait(RING_ELSEWHERE * self.carrier.time_scale)
            decision = live.decision
            if decision == "answer":
                self.carrier.state.set_call_status(call.sid, "in-progress")
                self._run_engine(self.carrier.state.call(call.sid), live, None, "outbound-api")
                return
            final, reason = UNANSWERED.get(decision or "", ("no-answer", "nobody answered"))
            self._unanswered(live, call, final, reason)
        finally:
            self.carrier.calls.untrack(call.sid)

    def _unanswered(self, live: LiveCall, call: Call, status: str, reason: str) -> None:
        call = self.carrier.state.set_call_status(call.sid, status)
        live.line.ended(call.status, reason)
        self._call_callback(live, call, call.status, {"CallDuration": "0"})

    def _run_engine(self, call: Call, live: LiveCall, hook: Hook | None, direction: str) -> None:
        """Carry out the call's TwiML: `hook`, or else the call's own Twiml or Url."""
        info = CallInfo(call.sid, call.account_sid, call.from_, call.to, direction)
        client = InlineTwimlClient(self.carrier.client)
        if hook is None:
            # Twilio's API description: with both Url and Twiml, the Twiml is ignored.
            if call.url:
                hook = Hook(call.url, call.method, call.fallback_url, call.fallback_method)
            else:
                hook = Hook(client.add(call.twiml or ""))

        def on_status(status: str, params: Mapping[str, str]) -> None:
            self.carrier.state.set_call_status(call.sid, status)
            self._call_callback(live, call, status, params)

        engine = VoiceCall(
            info,
            hook,
            client=client,
            peer=live.line,
            queues=self.carrier.queues,
            on_status=on_status,
            send_sms=lambda out: self.carrier.messenger.create(out, "outbound-call"),
            time_scale=self.carrier.time_scale,
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
        if self.carrier.stopping.is_set():
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
            self.carrier.client.send(callback.url, form, callback.method)
        except TwilioFailure as exc:
            show_notice(self.carrier.events, exc.notice, call_sid=call.sid)
