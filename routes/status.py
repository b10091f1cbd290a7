"""POST /status: message and call status callbacks, recorded (never backwards) and logged."""

import logging

from bottle import FormsDict

from dialtone import webhook
from dialtone.record.recorder import Recorder, delivery_key

log = logging.getLogger("dialtone.status")


@webhook("/status")
def status(form: FormsDict, record: Recorder) -> None:
    """Record the callback; Twilio needs no TwiML back (204)."""
    outcome = record.status(form, delivery_key())
    log.info("status: %s (%s)", describe(form), outcome or "not recorded")


def describe(form: FormsDict) -> str:
    """One line for a status callback: `message SM... is delivered`, with any error code."""
    sid = form.get("MessageSid") or form.get("CallSid") or "?"
    state = form.get("MessageStatus") or form.get("CallStatus") or "?"
    kind = "message" if "MessageSid" in form else "call"
    parts = [f"{kind} {sid} is {state}"]
    if form.get("ErrorCode"):
        parts.append(f"error {form['ErrorCode']}")
    if form.get("CallDuration"):
        parts.append(f"after {form['CallDuration']}s")
    return ", ".join(parts)
