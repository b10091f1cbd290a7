"""POST /status: message and call status callbacks, recorded (never backwards) and logged."""

from __future__ import annotations

import logging

from bottle import Bottle, FormsDict

from dialtone.record.recorder import Recorder, delivery_key
from dialtone.settings import Settings

log = logging.getLogger("dialtone.status")


def describe(form: FormsDict) -> str:
    """One line for a status callback: `message SM... is delivered`, with any error code."""
    sid = form.get("MessageSid") or form.get("CallSid") or "?"
    status = form.get("MessageStatus") or form.get("CallStatus") or "?"
    kind = "message" if "MessageSid" in form else "call"
    parts = [f"{kind} {sid} is {status}"]
    if form.get("ErrorCode"):
        parts.append(f"error {form['ErrorCode']}")
    if form.get("CallDuration"):
        parts.append(f"after {form['CallDuration']}s")
    return ", ".join(parts)


def install(app: Bottle, settings: Settings, recorder: Recorder) -> None:
    """Add POST /status."""

    @app.post("/status", webhook=True)
    def status(form: FormsDict) -> None:
        outcome = recorder.status(form, delivery_key())
        log.info("status: %s (%s)", describe(form), outcome or "not recorded")
