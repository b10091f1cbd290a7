"""Carry out a voice call's TwiML the way Twilio does, one blocking thread per call.

The phone side is a `CallPeer` (the carrier adapts the terminal phone, tests use a scripted one);
status changes go to `on_status` (the carrier POSTs StatusCallbacks). Pauses, Dial timeouts and
queue waits are multiplied by `time_scale` so demos and tests are quick; Gather and Record
timeouts are handed to the peer unscaled, since a person answers them.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from dialtone.sandbox.carrier import twiml
from dialtone.sandbox.carrier.call_peer import CallInfo, CallPeer
from dialtone.sandbox.carrier.messaging import API_VERSION, OutboundMessage, country_of
from dialtone.sandbox.carrier.queues import MAX_QUEUE_SIZE, QueueRegistry, Waiter, queue_sid
from dialtone.sandbox.carrier.webhook_client import Hook, WebhookClient
from dialtone.sandbox.carrier.webhook_errors import Notice, TwilioFailure

APPLICATION_ERROR = "We are sorry, an application error has occurred. Goodbye."
NOT_EMULATED = frozenset({"Connect", "Start", "Stop", "Pay", "Refer", "Echo", "Prompt"})
DEFAULT_RECORD_KEYS = "1234567890*#"
POLL = 0.02  # seconds between checks while waiting on another call


StatusCallback = Callable[[str, Mapping[str, str]], None]
SmsSender = Callable[[OutboundMessage], str]


@dataclass(frozen=True)
class _Next:
    hook: Hook
    extra: Mapping[str, str] = field(default_factory=dict)
    user_input: bool = False  # resets the redirect-loop counter


@dataclass(frozen=True)
class _End:
    status: str
    reason: str


Outcome = _Next | _End | None  # None: carry on with the next verb


def new_sid(prefix: str) -> str:
    """A Twilio-shaped SID: two letters and 32 hex digits."""
    return prefix + uuid.uuid4().hex


def voice_params(
    info: CallInfo, status: str, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Twilio's voice webhook parameters for a call in `status`, plus `extra`."""
    params = {
        "CallSid": info.call_sid,
        "AccountSid": info.account_sid,
        "From": info.from_,
        "To": info.to,
        "Caller": info.from_,
        "Called": info.to,
        "CallStatus": status,
        "Direction": info.direction,
        "ApiVersion": API_VERSION,
    }
    parties = (("From", info.from_), ("Caller", info.from_), ("To", info.to), ("Called", info.to))
    for prefix, number in parties:
        params.update({f"{prefix}City": "", f"{prefix}State": "", f"{prefix}Zip": ""})
        params[f"{prefix}Country"] = country_of(number)
    params.update(extra or {})
    return params


class Call:
    """One call: fetches the TwiML, carries it out against the peer, follows it to the end."""

    def __init__(
        self,
        info: CallInfo,
        hook: Hook,
        *,
        client: WebhookClient,
        peer: CallPeer,
        queues: QueueRegistry | None = None,
        on_status: StatusCallback | None = None,
        send_sms: SmsSender | None = None,
        time_scale: float = 1.0,
        max_redirects: int = 10,
        recording_base_url: str = "https://api.twilio.com",
    ) -> None:
        self.info = info
        self.hook = hook
        self.client = client
        self.peer = peer
        self.queues = queues or QueueRegistry()
        self.on_status = on_status
        self.send_sms = send_sms
        self.time_scale = time_scale
        self.max_redirects = max_redirects
        self.recording_base_url = recording_base_url.rstrip("/")
        self.status = "ringing" if info.direction == "inbound" else "in-progress"
        self._hung_up = threading.Event()
        self._quiet = False
        self._answered = info.direction != "inbound"
        self._started = time.monotonic()

    # --- public ---------------------------------------------------------------------------

    def hangup(self, *, quiet: bool = False) -> None:
        """The caller hangs up (thread-safe); the call ends at the next step.

        `quiet`: send no more requests, not even the actions Twilio requests after a hang-up
        (the sandbox is stopping and the app is likely gone).
        """
        if quiet:
            self._quiet = True
        self._hung_up.set()

    @property
    def hung_up(self) -> bool:
        """True once the caller has hung up."""
        return self._hung_up.is_set()

    def params(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """Twilio's voice webhook parameters for this call, plus `extra`."""
        return voice_params(self.info, self.status, extra)

    def run(self) -> str:
        """Carry the call out to its end; returns the final CallStatus."""
        step: _Next | _End = _Next(self.hook, user_input=True)
        without_input = 0
        while isinstance(step, _Next):
            if self.hung_up:
                step = _End("completed", "the caller hung up")
                break
            without_input = 0 if step.user_input else without_input + 1
            if without_input > self.max_redirects:
                message = (
                    f"{without_input} documents in a row without caller input: a <Redirect> loop?"
                )
                self.peer.error(Notice(None, message, step.hook.url))
                step = _End(self._failed_status(), "redirect loop")
                break
            step = self._fetch_and_run(step)
        self._finish(step)
        return self.status

    # --- the loop ---------------------------------------------------------------------------

    def _fetch_and_run(self, step: _Next) -> _Next | _End:
        try:
            fetched = self.client.fetch_twiml(step.hook, self.params(step.extra), "voice")
        except TwilioFailure as exc:
            for notice in (*exc.earlier, exc.notice):
                self.peer.error(notice)
            if self._answered:
                self.peer.say(APPLICATION_ERROR, None, None)
            return _End(self._failed_status(), f"error {exc.notice.code}")
        for notice in fetched.notices:
            self.peer.error(notice)
        document = fetched.document
        first = document.verbs[0].name if document.verbs else None
        if not self._answered and first != "Reject":
            self._set_status("in-progress")
        outcome = self._run_verbs(document.verbs, document)
        return outcome or _End("completed", "end of the TwiML document")

    def _run_verbs(self, verbs: tuple[twiml.Verb, ...], document: twiml.Document) -> Outcome:
        for verb in verbs:
            if self.hung_up:
                return _End("completed", "the caller hung up")
            outcome = self._execute(verb, document)
            if outcome is not None:
                return outcome
        return None

    def _execute(self, verb: twiml.Verb, doc: twiml.Document) -> Outcome:
        handler = getattr(self, f"_verb_{verb.name.lower()}", None)
        if handler is not None:
            return handler(verb, doc)
        if verb.name in NOT_EMULATED:
            self.peer.error(Notice(None, f"<{verb.name}> is not emulated; skipped", doc.url, False))
        return None

    def _finish(self, end: _End) -> None:
        duration = str(int(time.monotonic() - self._started)) if self._answered else "0"
        self._set_status(end.status, {"CallDuration": duration})
        self.peer.ended(end.status, end.reason)

    def _set_status(self, status: str, extra: Mapping[str, str] | None = None) -> None:
        self.status = status
        self._answered = self._answered or status == "in-progress"
        if self.on_status:
            self.on_status(status, self.params(extra))

    def _failed_status(self) -> str:
        return "completed" if self._answered else "failed"

    def _wait(self, seconds: float) -> None:
        """Wait a scaled `seconds`; returns early when the caller hangs up."""
        self._hung_up.wait(seconds * self.time_scale)

    def _hook(self, doc: twiml.Document, verb: twiml.Verb, attr: str = "action") -> Hook:
        target = verb.get(attr) or doc.url or self.hook.url
        return Hook(twiml.resolve(doc.url, target), twiml.method_of(verb))

    def _notify(self, hook: Hook, extra: Mapping[str, str]) -> None:
        """Request an action after the caller hung up: Twilio sends it and ignores the answer."""
        if self._quiet:
            return
        try:
            self.client.send(hook.url, self.params(extra), hook.method)
        except TwilioFailure as exc:
            self.peer.error(exc.notice)

    def _after(self, verb: twiml.Verb, doc: twiml.Document, extra: Mapping[str, str]) -> Outcome:
        """Where to go when a verb with an optional action finishes."""
        if not verb.get("action"):
            return None
        hook = self._hook(doc, verb)
        if self.hung_up:
            self._notify(hook, extra)
            return _End("completed", "the caller hung up")
        return _Next(hook, extra, user_input=True)

    # --- verbs ------------------------------------------------------------------------------

    def _verb_say(self, verb: twiml.Verb, doc: twiml.Document) -> Outcome:
        for _ in range(max(twiml.int_attr(verb, "loop", 1, minimum=0), 1)):
            self.peer.say(verb.text, verb.get("voice") or None, verb.get("language") or None)
        return None

    def _verb_play(self, verb: twiml.Verb, doc: twiml.Document) -> Outcome:
        if verb.text:
            for _ in range(max(twiml.int_attr(verb, "loop", 1, minimum=0), 1)):
                self.peer.play(twiml.resolve(doc.url, verb.text))
        return None

    def _verb_pause(self, verb: twiml.Verb, doc: twiml.Document) -> Outcome:
        seconds = twiml.int_attr(verb, "length", 1)
        self.peer.pause(seconds)
        self._wait(seconds)
        return None

    def _verb_gather(self, verb: twiml.Verb, doc: twiml.Document) -> Outcome:
        outcome = self._run_verbs(verb.children, doc)  # the prompts come first
        if outcome is not None:
            return outcome
        finish = verb.get("finishOnKey", "#")
        finish = finish if finish == "" or (len(finish) == 1 and finish in "0123456789#*") else "#"
        num_digits = twiml.int_attr(verb, "numDigits", 0) or None
        typed = self.peer.gather(num_digits, twiml.int_attr(verb, "timeout", 5), finish) or ""
        if self.hung_up:
            return _End("completed", "the caller hung up")
        digits, finished_on = typed, ""
        if finish and finish in typed:
            digits, finished_on = typed[: typed.index(finish)], finish
        if num_digits:
            digits = digits[:num_digits]
        if not digits and not twiml.bool_attr(verb, "actionOnEmptyResult", False):
            return None  # no input: Twilio carries on with the next verb
        extra = {"Digits": digits, "FinishedOnKey": finished_on}
        return _Next(self._hook(doc, verb), extra, user_input=True)

    def _verb_record(self, verb: twiml.Verb, doc: twiml.Document) -> Outcome:
        keys = verb.get("finishOnKey", DEFAULT_RECORD_KEYS)
        result = self.peer.record(
            twiml.int_attr(verb, "maxLength", 3600),
            twiml.int_attr(verb, "timeout", 5, minimum=0),
            keys if set(keys) <= set(DEFAULT_RECORD_KEYS) else DEFAULT_RECORD_KEYS,
            twiml.bool_attr(verb, "playBeep", True),
        )
        if result is None or result.duration <= 0:
            return _End("completed", "the caller hung up") if self.hung_up else None
        sid = new_sid("RE")
        extra = {
            "RecordingUrl": f"{self.recording_base_url}/{API_VERSION}/Accounts/"
            f"{self.info.account_sid}/Recordings/{sid}",
            "RecordingSid": sid,
            "RecordingDuration": str(result.duration),
            "Digits": "hangup" if self.hung_up else result.digits,
        }
        hook = self._hook(doc, verb)  # without an action, Record requests the document's URL
        if self.hung_up:
            self._notify(hook, extra)
            return _End("completed", "the caller hung up")
        return _Next(hook, extra, user_input=True)

    def _verb_dial(self, verb: twiml.Verb, doc: twiml.Document) -> Outcome:
        nouns = verb.children or (twiml.Verb("Number", text=verb.text),)
        noun = nouns[0]  # the sandbox rings the first noun only
        timeout = twiml.int_attr(verb, "timeout", 30)
        if noun.name == "Queue":
            extra = self._dial_queue(noun.text, timeout, twiml.int_attr(verb, "timeLimit", 14400))
        else:
            status = self.peer.dialled(noun.name.lower(), noun.text) or "completed"
            extra = {"DialCallStatus": status, "DialCallSid": new_sid("CA")}
            if status == "completed":
                extra["DialCallDuration"] = "0"
        return self._after(verb, doc, extra)

    def _dial_queue(self, name: str, timeout: int, time_limit: int) -> dict[str, str]:
        self.peer.dialled("queue", name)
        wait = timeout * self.time_scale
        bridge = self.queues.connect(name, self.info.call_sid, wait, self._hung_up)
        if bridge is None:
            return {"DialCallStatus": "no-answer", "QueueSid": queue_sid(name)}
        self.peer.connected(bridge.caller_sid)
        deadline = time.monotonic() + time_limit * self.time_scale
        while not bridge.ended.wait(POLL):
            if self.hung_up or time.monotonic() > deadline:
                bridge.ended.set()
        return {
            "DialCallStatus": "completed",
            "DialCallSid": bridge.caller_sid,
            "DialCallDuration": str(int(time.monotonic() - bridge.started)),
            "QueueSid": queue_sid(name),
        }

    def _verb_enqueue(self, verb: twiml.Verb, doc: twiml.Document) -> Outcome:
        name = verb.text
        waiter = self.queues.join(name, self.info.call_sid)
        wait_url = verb.get("waitUrl")
        next_wait: Hook | None = None
        result = ""
        while not result:
            if waiter.bridge is not None:
                result = "bridged"
            elif self.hung_up:
                result = "hangup"
            elif wait_url or next_wait:
                hook = next_wait or Hook(
                    twiml.resolve(doc.url, wait_url), twiml.method_of(verb, "waitUrlMethod")
                )
                result, next_wait = self._run_wait_document(hook, waiter)
            if not result:
                # Play is instant in the sandbox: wait a (scaled) second between hold rounds.
                self._hung_up.wait(max(self.time_scale, POLL))
        if result in ("leave", "hangup") and not self.queues.leave(waiter):
            result = "bridged" if not self.hung_up else result  # an agent took the call meanwhile
        if result == "bridged" and waiter.bridge is not None:
            self.peer.connected(waiter.bridge.agent_sid)
            while not waiter.bridge.ended.wait(POLL):
                if self.hung_up:
                    waiter.bridge.ended.set()
        extra = {
            "QueueResult": result,
            "QueueSid": queue_sid(name),
            "QueueTime": str(waiter.waited),
        }
        if result == "hangup" or self.hung_up:
            if verb.get("action"):
                self._notify(self._hook(doc, verb), extra)
            return _End("completed", "the caller hung up")
        return self._after(verb, doc, extra)

    def _run_wait_document(self, hook: Hook, waiter: Waiter) -> tuple[str, Hook | None]:
        """One round of an <Enqueue waitUrl>: ("", next) to go on, or a QueueResult to stop."""
        position, size = self.queues.position(waiter)
        extra = {
            "QueueSid": queue_sid(waiter.queue),
            "QueuePosition": str(position),
            "QueueTime": str(waiter.waited),
            "AvgQueueTime": str(waiter.waited),
            "CurrentQueueSize": str(size),
            "MaxQueueSize": str(MAX_QUEUE_SIZE),
        }
        try:
            fetched = self.client.fetch_twiml(hook, self.params(extra), "voice")
        except TwilioFailure as exc:
            self.peer.error(exc.notice)
            return "error", None
        for notice in fetched.notices:
            self.peer.error(notice)
        document = fetched.document
        for verb in document.verbs:
            if waiter.bridge is not None:
                return "bridged", None
            if self.hung_up:
                return "hangup", None
            if verb.name == "Leave":
                return "leave", None
            if verb.name == "Hangup":
                self._hung_up.set()
                return "hangup", None
            if verb.name == "Redirect":
                return "", Hook(twiml.resolve(document.url, verb.text), twiml.method_of(verb))
            if verb.name in ("Say", "Play", "Pause"):
                self._execute(verb, document)
            else:
                message = f"<{verb.name}> is not allowed in an <Enqueue> waitUrl document"
                self.peer.error(Notice(12200, message, document.url, fatal=False))
        return "", None

    def _verb_redirect(self, verb: twiml.Verb, doc: twiml.Document) -> Outcome:
        return _Next(Hook(twiml.resolve(doc.url, verb.text), twiml.method_of(verb)))

    def _verb_hangup(self, verb: twiml.Verb, doc: twiml.Document) -> Outcome:
        return _End("completed", "<Hangup>")

    def _verb_reject(self, verb: twiml.Verb, doc: twiml.Document) -> Outcome:
        if self._answered:
            return _End("completed", "<Reject> after the call was answered")
        status = "busy" if verb.get("reason") == "busy" else "no-answer"
        return _End(status, f"<Reject reason={verb.get('reason') or 'rejected'}>")

    def _verb_leave(self, verb: twiml.Verb, doc: twiml.Document) -> Outcome:
        return None  # only meaningful in a waitUrl document, handled there

    def _verb_sms(self, verb: twiml.Verb, doc: twiml.Document) -> Outcome:
        inbound = self.info.direction == "inbound"
        other, ours = (
            (self.info.from_, self.info.to) if inbound else (self.info.to, self.info.from_)
        )
        body = verb.text or " ".join(c.text for c in verb.children if c.name == "Body")
        callback = verb.get("statusCallback")
        message = OutboundMessage(
            to=verb.get("to") or other,
            from_=verb.get("from") or ours,
            body=body,
            status_callback=twiml.resolve(doc.url, callback) if callback else None,
        )
        sid = self.send_sms(message) if self.send_sms else new_sid("SM")
        self.peer.sms(message.to, message.body)
        return self._after(verb, doc, {"SmsSid": sid, "SmsStatus": "sending"})

    _verb_message = _verb_sms  # accepted in voice too: see the README's sandbox section
