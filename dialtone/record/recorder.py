"""The record as the routes use it: no write can stop an answer, or hold it back for long.

A webhook must be answered within Twilio's budget whatever the disk does, so `Recorder` wraps
the `Store` and turns its failures into one ERROR log line naming what was lost (the kind and
the SID) instead of an exception: the route answers its TwiML anyway. Twilio does not retry a
webhook that was answered, so what failed to record is lost from the record (it is still in
Twilio's own logs, and in this process's log line). After one failure the Breaker stops the
writes being tried until a probe passes, so that an outage costs each webhook no wait.

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
from dialtone.record.breaker import PROBE_WAIT, Breaker
from dialtone.record.errors import BadRecord, StoreUnavailable
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
        self.breaker = Breaker(lambda: store.health(PROBE_WAIT), on_close=self._back)
        # time.monotonic() until which the last health() success stands. A failure needs no
        # reset: it opens the breaker, and only a probe that passes after it closes it.
        self._healthy_until = 0.0

    def _attempt(self, what: str, sid: str, write: Callable[[], T]) -> T | None:
        failure = self.breaker.failure()
        if failure is None:
            began = time.monotonic()
            try:
                result = write()
                self.kept.apply()
                return result
            except BadRecord as exc:
                log.warning("not recording %s: %s", what, exc)
                return None
            except StoreUnavailable as exc:
                self.breaker.trip(exc, began)
                failure = exc
        # One loud line per lost record, with the SID to find it in Twilio's logs.
        log.error("NOT RECORDED: %s %s (answering anyway): %s", what, sid or "?", failure)
        return None

    def _back(self) -> None:
        """The breaker's probe passed: what was kept goes now, waiting for the thread that
        retries it if it is at it (SETTLE counts on this instance applying it at once)."""
        self.kept.apply(wait=True)

    def close(self) -> None:
        """Stop probing the record and applying kept opt-out changes (they stay kept)."""
        self.breaker.stop()
        self.kept.close()

    def _apply_kept(self, change: OptOutChange) -> bool:
        if (failure := self.breaker.failure()) is not None:
            raise failure  # the probe applies them when it passes; no write waits meanwhile
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
        (21610) a message to a number that texted STOP. While the breaker is open it is read
        from SQLite still (a local file reads at once even when it cannot be written, as on a
        full disk), but not from PostgreSQL, where each read would wait for the server.
        """
        if not number:
            return False
        failure = self.breaker.failure()
        if failure is None or not self.store.shared:
            began = time.monotonic()
            try:  # while the breaker is open, no longer than its probe waits
                return self.store.is_opted_out(number, None if failure is None else PROBE_WAIT)
            except StoreUnavailable as exc:
                self.breaker.trip(exc, began)
                failure = exc
        if not quiet:
            shown = printable(number, 40)
            log.warning("Cannot read whether %s opted out (taken as not): %s", shown, failure)
        return False

    def health(self) -> StoreUnavailable | None:
        """None when the record takes writes now; else the failure (for GET /healthz). While
        the breaker is open, its failure at once: its probe finds out when the record is back."""
        if (failure := self.breaker.failure()) is not None:
            return failure
        began = time.monotonic()
        if began < max(self._healthy_until, self.breaker.passed_at() + HEALTHY_FOR):
            return None
        failure = self.store.health()
        if failure is not None:
            self.breaker.trip(failure, began)
            return failure
        self._healthy_until = time.monotonic() + HEALTHY_FOR
        self.kept.apply()
        return None

    def opted_out_before_sending(self, number: str) -> bool:
        """Whether `number` opted out, for a send that costs money: raises StoreUnavailable
        when the record cannot be written or read, or was not a moment ago (Settling), so the
        API fails closed (503) instead of texting a number whose STOP may have been lost."""
        began = time.monotonic()
        failure = self.breaker.failure()
        if failure is None and (failure := self.store.health()) is not None:
            self.breaker.trip(failure, began)
        if failure is not None:
            log.error("Refusing to send to %s: %s", number, failure)
            raise failure
        # After the health check: one that met a connection the server had cut counts too.
        if left := self.breaker.settling(self.store.disrupted_at):
            log.warning("Refusing a send for %.1f s more: the record was down a moment ago.", left)
            raise Settling(left)
        self.kept.require_applied()  # a STOP kept there may be this number's
        try:
            return self.store.is_opted_out(number)
        except StoreUnavailable as exc:
            self.breaker.trip(exc, began)
            raise


class Settling(StoreUnavailable):
    """The record is back from an outage, but other instances may not have applied the
    opt-out changes they kept meanwhile yet: a send waits `retry_after` s. (A StoreUnavailable,
    so that whatever refuses sends while the record is down refuses these too.)"""

    def __init__(self, left: float) -> None:
        super().__init__(
            "The record was unavailable a moment ago; sends wait until the opt-out changes "
            f"other instances kept meanwhile are applied ({left:.1f} s more).",
            path="",
            reason="was unavailable a moment ago",
        )
        self.retry_after = left


def health_answer(recorder: Recorder, version: str) -> tuple[int, dict[str, object]]:
    """GET /healthz's status and body: 200 while the record takes writes, else 503 naming
    the cause (without the file or host)."""
    failure = recorder.health()
    if failure is None:
        body: dict[str, object] = {"status": "ok", "version": version, "record": "ok"}
        if recorder.kept.stuck:  # webhooks are fine; sends are refused until someone acts
            body["opt_outs"] = "kept changes cannot be applied, so sends are refused (see the log)"
        return 200, body
    return 503, {"status": "unavailable", "version": version, "record": failure.reason}


def delivery_key() -> str | None:
    """This webhook delivery's I-Twilio-Idempotency-Token (Twilio's retries repeat it)."""
    return request.get_header(IDEMPOTENCY_HEADER) or None
