"""Carry out a voice call's TwiML the way Twilio does, one blocking thread per call.

The phone side is a `CallPeer` (the carrier adapts the terminal phone, tests use a scripted one);
status changes go to `on_status` (the carrier POSTs StatusCallbacks). Pauses, Dial timeouts and
queue waits are multiplied by `time_scale` so demos and tests are quick; Gather and Record
timeouts are handed to the peer unscaled, since a person answers them.

A live call can be moved to new TwiML at any moment (`redirect`, what a REST update with Url or
Twiml does): the verb in progress stops and the new document runs, as on Twilio.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping

from dialtone.sandbox.carrier import twiml, voice_queue
from dialtone.sandbox.carrier.call_peer import CallInfo, CallPeer
from dialtone.sandbox.carrier.messaging import OutboundMessage
from dialtone.sandbox.carrier.queues import QueueRegistry
from dialtone.sandbox.carrier.voice_steps import End, Next, Outcome, new_sid, voice_params
from dialtone.sandbox.carrier.webhook_client import Hook, WebhookClient
from dialtone.sandbox.carrier.webhook_errors import Notice, TwilioFailure

__all__ = ["APPLICATION_ERROR", "Call", "new_sid", "voice_params"]

APPLICATION_ERROR = "We are sorry, an application error has occurred. Goodbye."
NOT_EMULATED = frozenset({"Connect", "Start", "Stop", "Pay", "Refer", "Echo", "Prompt"})
DEFAULT_RECORD_KEYS = "1234567890*#"
# The sandbox's own guard against a <Redirect> loop that never waits for the caller: Twilio
# documents no limit, and hold loops that poll are common, so it is far above any real one.
MAX_DOCUMENTS_WITHOUT_INPUT = 1000
LOOP_FOREVER = 1000  # loop="0": until the call ends or this many times (Twilio's <Play> page)
CONVERSATION = 5  # seconds (times time_scale) a dialled party stays on the line in the sandbox

StatusCallback = Callable[[str, Mapping[str, str]], None]
SmsSender = Callable[[OutboundMessage], str]


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
        max_redirects: int = MAX_DOCUMENTS_WITHOUT_INPUT,
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
        self._interrupt = threading.Event()  # set by a hang-up or a redirect: stop waiting
        self._lock = threading.Lock()
        self._redirect: Hook | None = None
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
        self._interrupt.set()

    def redirect(self, hook: Hook) -> None:
        """Move the call to the TwiML at `hook` now (thread-safe), as a REST update does."""
        with self._lock:
            self._redirect = hook
            self._interrupt.set()
        interrupt = getattr(self.peer, "interrupt", None)
        if interrupt is not None:
            interrupt()  # wake a Gather or Record waiting for the phone

    @property
    def hung_up(self) -> bool:
        """True once the caller has hung up."""
        return self._hung_up.is_set()

    def params(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """Twilio's voice webhook parameters for this call, plus `extra`."""
        return voice_params(self.info, self.status, extra)

    def run(self) -> str:
        """Carry the call out to its end; returns the final CallStatus."""
        step: Next | End = Next(self.hook, user_input=True)
        without_input = 0
        while isinstance(step, Next):
            stop = self._stopped()
            if isinstance(stop, End):
                step = stop
                break
            step = stop or step
            without_input = 0 if step.user_input else without_input + 1
            if without_input > self.max_redirects:
                message = (
                    f"{without_input} documents in a row without caller input: the sandbox "
                    "ends the call (its own guard against a <Redirect> loop)"
                )
                self.peer.error(Notice(None, message, step.hook.url))
                step = End(self._failed_status(), "redirect loop")
                break
            step = self._fetch_and_run(step)
        self._finish(step)
        return self.status

    # --- the loop ---------------------------------------------------------------------------

    def _stopped(self) -> Outcome:
        """End on a hang-up, Next on a pending redirect (taken), None to carry on."""
        if self.hung_up:
            return End("completed", "the caller hung up")
        with self._lock:
            hook, self._redirect = self._redirect, None
            if hook is not None and not self.hung_up:
                self._interrupt.clear()
        if hook is None:
            return None
        self._answer()  # a redirect of a ringing inbound call answers it
        return Next(hook, user_input=True)

    def _fetch_and_run(self, step: Next) -> Next | End:
        try:
            fetched = self.client.fetch_twiml(step.hook, self.params(step.extra), "voice")
        except TwilioFailure as exc:
            for notice in (*exc.earlier, exc.notice):
                self.peer.error(notice)
            # Twilio answers the call to say so, even when its very first webhook failed.
            self._answer()
            self.peer.say(APPLICATION_ERROR, None, None)
            return End("completed", f"error {exc.notice.code}")
        for notice in fetched.notices:
            self.peer.error(notice)
        document = fetched.document
        first = document.verbs[0].name if document.verbs else None
        if first != "Reject":
            self._answer()
        outcome = self._run_verbs(document.verbs, document)
        return outcome or End("completed", "end of the TwiML document")

    def _answer(self) -> None:
        if not self._answered:
            self._set_status("in-progress")

    def _run_verbs(self, verbs: tuple[twiml.Verb, ...], document: twiml.Document) -> Outcome:
        for verb in verbs:
            stop = self._stopped()
            if stop is not None:
                return stop
            outcome = self._execute(verb, document)
            if outcome is not None:
                return outcome
        return None

    def _execute(self, verb: twiml.Verb, doc: twiml.Document) -> Outcome:
        handler = getattr(self, f"_verb_{verb.name.lower()}", None)
        if handler is not None:
            outcome: Outcome = handler(verb, doc)
            return outcome
        if verb.name in NOT_EMULATED:
            self.peer.error(Notice(None, f"<{verb.name}> is not emulated; skipped", doc.url, False))
        return None

    def _finish(self, end: End) -> None:
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
        """Wait a scaled `seconds`; returns early on a hang-up or a redirect."""
        self._interrupt.wait(seconds * self.time_scale)

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
            return End("completed", "the caller hung up")
        return Next(hook, extra, user_input=True)

    def _repeat(self, verb: twiml.Verb, play: Callable[[], None]) -> None:
        """Carry out a Say or Play `loop` times; loop="0" until the call ends (or 1000 times)."""
        loop = twiml.int_attr(verb, "loop", 1, minimum=0)
        for _ in range(loop or LOOP_FOREVER):
            if self._interrupt.is_set():
                return
            play()
            if loop == 0:
                self._wait(1)  # speech and audio take time on a real call; instant here

    # --- verbs ------------------------------------------------------------------------------

    def _verb_say(self, verb: twiml.Verb, doc: twiml.Document) -> Outcome:
        voice, language = verb.get("voice") or None, verb.get("language") or None
        self._repeat(verb, lambda: self.peer.say(verb.text, voice, language))
        return None

    def _verb_play(self, verb: twiml.Verb, doc: twiml.Document) -> Outcome:
        digits = verb.get("digits")
        if digits:  # DTMF tones sent on the call (to an IVR the call reached), no audio file
            self.peer.play(f"dtmf:{digits}")
        if verb.text:
            url = twiml.resolve(doc.url, verb.text)
            self._repeat(verb, lambda: self.peer.play(url))
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
        stop = self._stopped()
        if stop is not None:
            return stop
        digits, finished_on = typed, ""
        if finish and finish in typed:
            digits, finished_on = typed[: typed.index(finish)], finish
        if num_digits:
            digits = digits[:num_digits]
        if not digits and not twiml.bool_attr(verb, "actionOnEmptyResult", False):
            return None  # no input: Twilio carries on with the next verb
        extra = {"Digits": digits, "FinishedOnKey": finished_on}
        return Next(self._hook(doc, verb), extra, user_input=True)

    def _verb_record(self, verb: twiml.Verb, doc: twiml.Document) -> Outcome:
        keys = verb.get("finishOnKey", DEFAULT_RECORD_KEYS)
        result = self.peer.record(
            twiml.int_attr(verb, "maxLength", 3600),
            twiml.int_attr(verb, "timeout", 5, minimum=0),
            keys if set(keys) <= set(DEFAULT_RECORD_KEYS) else DEFAULT_RECORD_KEYS,
            twiml.bool_attr(verb, "playBeep", True),
        )
        if not self.hung_up:
            stop = self._stopped()
            if stop is not None:
                return stop
        if result is None or result.duration <= 0:
            return End("completed", "the caller hung up") if self.hung_up else None
        sid = new_sid("RE")
        extra = {
            "RecordingUrl": f"{self.recording_base_url}/2010-04-01/Accounts/"
            f"{self.info.account_sid}/Recordings/{sid}",
            "RecordingSid": sid,
            "RecordingDuration": str(result.duration),
            "Digits": "hangup" if self.hung_up else result.digits,
        }
        hook = self._hook(doc, verb)  # without an action, Record requests the document's URL
        if self.hung_up:
            self._notify(hook, extra)
            return End("completed", "the caller hung up")
        return Next(hook, extra, user_input=True)

    def _verb_dial(self, verb: twiml.Verb, doc: twiml.Document) -> Outcome:
        nouns = verb.children or (twiml.Verb("Number", text=verb.text),)
        timeout = twiml.int_attr(verb, "timeout", 30)
        time_limit = twiml.int_attr(verb, "timeLimit", 14400)
        queue = next((noun for noun in nouns if noun.name == "Queue"), None)
        if queue is not None:
            extra = self._dial_queue(queue.text, timeout, time_limit)
        else:
            extra = self._dial_parties(nouns, time_limit)
        return self._after(verb, doc, extra)

    def _dial_parties(self, nouns: tuple[twiml.Verb, ...], time_limit: int) -> dict[str, str]:
        """Ring every noun at once; the first to answer is connected (Twilio's <Dial> page)."""
        statuses = [
            self.peer.dialled(noun.name.lower(), noun.text) or "completed" for noun in nouns
        ]
        if "completed" not in statuses:  # nobody answered: the first noun's outcome is reported
            return {"DialCallStatus": statuses[0], "DialCallSid": new_sid("CA")}
        # The party talks for a while (the sandbox's stand-in for a conversation), until the
        # caller hangs up or the Dial's timeLimit passes.
        started = time.monotonic()
        self._wait(min(CONVERSATION, time_limit))
        talked = (time.monotonic() - started) / self.time_scale if self.time_scale else 0
        return {
            "DialCallStatus": "completed",
            "DialCallSid": new_sid("CA"),
            "DialCallDuration": str(max(1, round(talked))),
        }

    _dial_queue = voice_queue.dial_queue
    _verb_enqueue = voice_queue.enqueue

    def _verb_redirect(self, verb: twiml.Verb, doc: twiml.Document) -> Outcome:
        return Next(Hook(twiml.resolve(doc.url, verb.text), twiml.method_of(verb)))

    def _verb_hangup(self, verb: twiml.Verb, doc: twiml.Document) -> Outcome:
        return End("completed", "<Hangup>")

    def _verb_reject(self, verb: twiml.Verb, doc: twiml.Document) -> Outcome:
        if self._answered:
            return End("completed", "<Reject> after the call was answered")
        status = "busy" if verb.get("reason") == "busy" else "no-answer"
        return End(status, f"<Reject reason={verb.get('reason') or 'rejected'}>")

    def _verb_leave(self, verb: twiml.Verb, doc: twiml.Document) -> Outcome:
        return None  # only meaningful in a waitUrl document, handled there

    def _verb_message(self, verb: twiml.Verb, doc: twiml.Document) -> Outcome:
        # Not a voice verb: Twilio sends nothing and logs a schema warning; the call carries on.
        text = "<Message> is not a voice verb: no text is sent (use <Sms>, or the REST API)"
        self.peer.error(Notice(12200, text, doc.url, fatal=False))
        return None

    def _verb_sms(self, verb: twiml.Verb, doc: twiml.Document) -> Outcome:
        text = "<Sms> is deprecated; Twilio still sends it, but use the REST API instead"
        self.peer.error(Notice(None, text, doc.url, fatal=False))
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
