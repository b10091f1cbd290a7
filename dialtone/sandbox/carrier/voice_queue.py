"""<Enqueue> and <Dial><Queue> for the voice engine: callers wait in a queue, agents connect.

Functions that `voice.Call` uses as its methods (they take the call as `self`). A caller without
a waitUrl hears Twilio's default hold music (its classical playlist, shown as played once).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from dialtone.sandbox.carrier import twiml
from dialtone.sandbox.carrier.queues import MAX_QUEUE_SIZE, Waiter, queue_sid
from dialtone.sandbox.carrier.voice_steps import End, Outcome
from dialtone.sandbox.carrier.webhook_client import Hook
from dialtone.sandbox.carrier.webhook_errors import Notice, TwilioFailure

if TYPE_CHECKING:
    from dialtone.sandbox.carrier.voice import Call

POLL = 0.02  # seconds between checks while waiting on another call
# Twilio's default waitUrl for <Enqueue>: its classical hold-music playlist (the <Enqueue> page).
DEFAULT_HOLD_MUSIC = "http://twimlets.com/holdmusic?Bucket=com.twilio.music.classical"


def dial_queue(self: Call, name: str, timeout: int, time_limit: int) -> dict[str, str]:
    """<Dial><Queue>: connect the longest-waiting caller of `name`, until one side leaves."""
    self.peer.dialled("queue", name)
    wait = timeout * self.time_scale
    bridge = self.queues.connect(name, self.info.call_sid, wait, self._interrupt)
    if bridge is None:
        return {"DialCallStatus": "no-answer", "QueueSid": queue_sid(name)}
    self.peer.connected(bridge.caller_sid)
    deadline = time.monotonic() + time_limit * self.time_scale
    while not bridge.ended.wait(POLL):
        if self._interrupt.is_set() or time.monotonic() > deadline:
            bridge.ended.set()
    return {
        "DialCallStatus": "completed",
        "DialCallSid": bridge.caller_sid,
        "DialCallDuration": str(int(time.monotonic() - bridge.started)),
        "QueueSid": queue_sid(name),
    }


def enqueue(self: Call, verb: twiml.Verb, doc: twiml.Document) -> Outcome:
    """<Enqueue>: wait in a queue until an agent connects, <Leave>, a hang-up or a redirect."""
    name = verb.text
    waiter = self.queues.join(name, self.info.call_sid)
    wait_url = verb.get("waitUrl")
    next_wait: Hook | None = None
    result = ""
    if not wait_url:
        self.peer.play(DEFAULT_HOLD_MUSIC)  # Twilio's playlist loops until the call leaves
    while not result:
        if waiter.bridge is not None:
            result = "bridged"
        elif self.hung_up:
            result = "hangup"
        elif self._interrupt.is_set():
            result = "redirected"  # a REST update moved the call elsewhere
        elif wait_url or next_wait:
            hook = next_wait or Hook(
                twiml.resolve(doc.url, wait_url), twiml.method_of(verb, "waitUrlMethod")
            )
            result, next_wait = run_wait_document(self, hook, waiter)
        if not result:
            # Play is instant in the sandbox: wait a (scaled) second between hold rounds.
            self._interrupt.wait(max(self.time_scale, POLL))
    if result in ("leave", "hangup", "redirected") and not self.queues.leave(waiter):
        result = "bridged" if not self.hung_up else result  # an agent took the call meanwhile
    if result == "bridged" and waiter.bridge is not None:
        self.peer.connected(waiter.bridge.agent_sid)
        while not waiter.bridge.ended.wait(POLL):
            if self._interrupt.is_set():
                waiter.bridge.ended.set()
    extra = {
        "QueueResult": result,
        "QueueSid": queue_sid(name),
        "QueueTime": str(waiter.waited),
    }
    if result == "hangup" or self.hung_up:
        if verb.get("action"):
            self._notify(self._hook(doc, verb), extra)
        return End("completed", "the caller hung up")
    if result == "redirected":
        return self._stopped()
    return self._after(verb, doc, extra)


def run_wait_document(self: Call, hook: Hook, waiter: Waiter) -> tuple[str, Hook | None]:
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
        if self._interrupt.is_set():
            return "redirected", None
        if verb.name == "Leave":
            return "leave", None
        if verb.name == "Hangup":
            self.hangup()
            return "hangup", None
        if verb.name == "Redirect":
            return "", Hook(twiml.resolve(document.url, verb.text), twiml.method_of(verb))
        if verb.name in ("Say", "Play", "Pause"):
            self._execute(verb, document)
        else:
            message = f"<{verb.name}> is not allowed in an <Enqueue> waitUrl document"
            self.peer.error(Notice(12200, message, document.url, fatal=False))
    return "", None
