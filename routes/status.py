"""POST /status: message and call status callbacks, logged as transitions."""

from __future__ import annotations

import logging

from bottle import Bottle, FormsDict

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


def install(app: Bottle, settings: Settings) -> None:
    """Add POST /status."""

    @app.post("/status", webhook=True)
    def status(form: FormsDict) -> None:
        log.info("status: %s", describe(form))
