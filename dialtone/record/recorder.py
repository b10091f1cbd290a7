"""The record as the routes use it: every write is attempted, none can stop an answer.

A webhook must be answered within Twilio's budget whatever the disk does, so `Recorder` wraps
the `Store` and turns its failures into one ERROR log line naming what was lost (the kind and
the SID) instead of an exception: the route answers its TwiML anyway. Twilio does not retry a
webhook that was answered, so what failed to record is lost from the record (it is still in
Twilio's own logs, and in this process's log line).

A webhook without the SID or status the record needs (BadRecord) is logged as a warning and
answered too: the reply matters more than the record, and a signed request came from Twilio.

An opt-out change (STOP, START) that cannot be recorded is kept in the OptOutSpool and applied
once the record takes a write again (the first webhook, health check or send after it is back),
before that send checks the opt-out list. The spool is this machine's: every process of it
sees a change another kept (a send checks the file first), but another machine does not
until this one has applied it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import TypeVar

from bottle import request

from dialtone.record.base import IDEMPOTENCY_HEADER, Received, RecordStore
from dialtone.record.errors import BadRecord, StoreError, StoreUnavailable
from dialtone.record.rows import Outcome
from dialtone.record.spool import KeptOptOuts, OptOutChange, OptOutSpool
from dialtone.untrusted import printable

log = logging.getLogger("dialtone.record")

# GET /healthz writes to the record to prove it can; a success stands for this long, so that a
# flood of /healthz from anyone costs the database one write a second per instance. A failed
# write anywhere in the meantime ends it at once.
HEALTHY_FOR = 1.0

T = TypeVar("T")


class Recorder:
    """Never-raising writes and reads over a RecordStore (see the module docstring)."""

    def __init__(self, store: RecordStore, spool: OptOutSpool | None = None) -> None:
        """`spool`: where the opt-out changes the record cannot take are kept (none: only in
        memory). What an earlier run kept there is applied from a thread at once."""
        self.store = store
        self.kept = KeptOptOuts(spool, self._apply_kept)
        self.kept.start()
        self._failing = False  # the last health check failed: log changes, not every check
        self._healthy_until = 0.0  # time.monotonic() until which the last success stands

    def _attempt(self, what: str, sid: str, write: Callable[[], T]) -> T | None:
        try:
            result = write()
            self.kept.apply()
            return result
        except BadRecord as exc:
            log.warning("not recording %s: %s", what, exc)
        except StoreError as exc:
            self._healthy_until = 0.0
            # One loud line per lost record, with the SID to find it in Twilio's logs.
            log.error("NOT RECORDED: %s %s (answering anyway): %s", what, sid or "?", exc)
        return None

    def close(self) -> None:
        """Stop applying kept opt-out changes from the thread (they stay kept)."""
        self.kept.close()

    def _apply_kept(self, change: OptOutChange) -> bool:
        return self.store.set_opt_out(
            change.number, change.opted_out, keyword=change.keyword, at=change.at
        )

    def receive_message(
        self,
        form: Mapping[str, str],
        key: str | None,
        *,
        opted_out: bool | None = None,
        keyword: str | None = None,
    ) -> bool:
        """Record an inbound message (and an opt-out change); True when its sender had opted
        out before it. One transaction; when it fails (logged), the opt-out is read on its own,
        as `is_opted_out` would (failing open)."""
        # An opt-out change counts from when it arrived, not from after a failed write's wait:
        # a STOP that arrives later but is recorded first must stay the newer one.
        arrived = self.store.now() if opted_out is not None else ""
        received = self._receive(form, key, opted_out, keyword)
        if received is not None:
            return received.sender_opted_out
        sender = form.get("From") or ""
        if opted_out is not None and sender:
            self.kept.keep(OptOutChange(sender, opted_out, keyword, arrived))
        # The NOT RECORDED line above already tells of the outage, with the SID.
        return self.is_opted_out(sender, quiet=True)

    def _receive(
        self, form: Mapping[str, str], key: str | None, opted_out: bool | None, keyword: str | None
    ) -> Received | None:
        sid = form.get("MessageSid") or form.get("SmsSid") or ""
        what = "inbound message"
        if opted_out is not None:  # the one record a lost line must let an operator redo
            change = "opt-out" if opted_out else "opt-in"
            what += f" and the {change} of {printable(form.get('From') or '?', 40)} ({keyword})"
        return self._attempt(
            what,
            sid,
            lambda: self.store.receive_message(form, key, opted_out=opted_out, keyword=keyword),
        )

    def status(self, form: Mapping[str, str], key: str | None) -> Outcome | None:
        """Record a message or call status callback (which one the form says)."""
        if form.get("MessageSid") or form.get("SmsSid") or "MessageStatus" in form:
            sid = form.get("MessageSid") or form.get("SmsSid") or ""
            return self._attempt(
                "message status", sid, lambda: self.store.record_message_status(form, key)
            )
        sid = form.get("CallSid", "")
        return self._attempt("call status", sid, lambda: self.store.record_call_status(form, key))

    def call(self, form: Mapping[str, str], key: str | None) -> Outcome | None:
        """Record a voice webhook for a call."""
        sid = form.get("CallSid", "")
        return self._attempt("call", sid, lambda: self.store.record_call(form, key))

    def digits(self, form: Mapping[str, str], key: str | None) -> Outcome | None:
        """Record the keys pressed at a <Gather>."""
        sid, digits = form.get("CallSid", ""), form.get("Digits", "")
        return self._attempt("digits", sid, lambda: self.store.record_digits(sid, digits, key))

    def outbound_message(
        self,
        sid: str | None,
        to: str,
        from_: str | None,
        body: str,
        media_urls: list[str],
        status: str,
        *,
        error_code: int | None = None,
        error_message: str | None = None,
    ) -> Outcome | None:
        """Record a message sent through the REST API (sid None: Twilio refused it)."""
        return self._attempt(
            "outbound message",
            sid or f"to {to}",
            lambda: self.store.record_outbound_message(
                sid,
                to,
                from_,
                body,
                media_urls,
                status,
                error_code=error_code,
                error_message=error_message,
            ),
        )

    def outbound_call(
        self,
        sid: str | None,
        to: str,
        from_: str | None,
        status: str,
        *,
        error_code: int | None = None,
        error_message: str | None = None,
    ) -> Outcome | None:
        """Record a call placed through the REST API (sid None: Twilio refused it)."""
        return self._attempt(
            "outbound call",
            sid or f"to {to}",
            lambda: self.store.record_outbound_call(
                sid, to, from_, status, error_code=error_code, error_message=error_message
            ),
        )

    def set_opt_out(self, number: str, opted_out: bool, keyword: str | None) -> None:
        """Mark `number` opted out (or back in) outside a webhook (Twilio's 21610)."""
        self._attempt(
            "opt-out", number, lambda: self.store.set_opt_out(number, opted_out, keyword=keyword)
        )

    def is_opted_out(self, number: str, *, quiet: bool = False) -> bool:
        """True when the record says `number` opted out; False when it cannot be read (logged
        unless `quiet`).

        Failing open is safe here: Twilio keeps its own opt-out list on long codes and refuses
        (21610) a message to a number that texted STOP.
        """
        if not number:
            return False
        try:
            return self.store.is_opted_out(number)
        except StoreError as exc:
            if not quiet:
                shown = printable(number, 40)
                log.warning("Cannot read whether %s opted out (taken as not): %s", shown, exc)
            return False

    def health(self) -> StoreUnavailable | None:
        """None when the record takes writes now; else the failure (for GET /healthz)."""
        if time.monotonic() < self._healthy_until:
            return None
        failure = self.store.health()
        if failure is not None and not self._failing:
            log.error("The record cannot be written: %s", failure)
        elif failure is None and self._failing:
            log.warning("The record takes writes again.")
        self._failing = failure is not None
        if failure is None:
            self._healthy_until = time.monotonic() + HEALTHY_FOR
            self.kept.apply()
        return failure

    def opted_out_before_sending(self, number: str) -> bool:
        """Whether `number` opted out, for a send that costs money: raises StoreUnavailable
        when the record cannot be written or read, so the API fails closed (503) instead of
        texting a number whose STOP may have been lost."""
        failure = self.store.health()
        if failure is not None:
            self._healthy_until = 0.0
            log.error("Refusing to send to %s: %s", number, failure)
            raise failure
        self.kept.require_applied()  # a STOP kept there may be this number's
        return self.store.is_opted_out(number)


def health_answer(recorder: Recorder, version: str) -> tuple[int, dict[str, object]]:
    """GET /healthz's status and body: 200 while the record takes writes, else 503 naming
    the cause (without the file or host)."""
    failure = recorder.health()
    if failure is None:
        return 200, {"status": "ok", "version": version, "record": "ok"}
    return 503, {"status": "unavailable", "version": version, "record": failure.reason}


def delivery_key() -> str | None:
    """This webhook delivery's I-Twilio-Idempotency-Token (Twilio's retries repeat it)."""
    return request.get_header(IDEMPOTENCY_HEADER) or None
