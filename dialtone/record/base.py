"""The record's interface and its behaviour, whichever database keeps it.

`RecordStore` holds what a delivery does to the record: claim its idempotency key, insert or
update its row with the status only moving forward, keep opt-outs. A backend (SQLite in
dialtone.record.store, PostgreSQL in dialtone.record.postgres) supplies transactions over its
connection, each yielding a `Queries` bound to it, and reports its own health.

Every public write is one transaction: a delivery is recorded whole or not at all, and one
whose idempotency key (or, for an inbound message, whose MessageSid) was seen before writes
nothing.
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, NamedTuple, TypeVar

from dialtone.record import forms as forms
from dialtone.record.errors import StoreUnavailable
from dialtone.record.queries import DEFAULT_PAGE, Filters, Queries
from dialtone.record.rows import (
    Call,
    Conversation,
    Event,
    Message,
    OptOut,
    Outcome,
    format_timestamp,
)
from dialtone.record.schema import call_status_rank, message_status_rank

# Twilio sends this header with every webhook; retries of one webhook carry the same token.
IDEMPOTENCY_HEADER = "I-Twilio-Idempotency-Token"

T = TypeVar("T")


class Received(NamedTuple):
    """What recording an inbound message did, and the sender's opt-out state before it."""

    outcome: Outcome
    sender_opted_out: bool


class Discard(Exception):
    """Raised by a write's work: roll its transaction back, and answer `result` instead."""

    def __init__(self, result: Any) -> None:
        super().__init__("rolled back")
        self.result = result


class RecordStore(ABC):
    """The record. Share one between threads; `close()` it on shutdown.

    Writes return an Outcome; a database that cannot be written raises StoreUnavailable, and a
    webhook without a SID or status raises BadRecord.
    """

    def __init__(self, clock: Callable[[], datetime] | None = None) -> None:
        self._clock = clock or (lambda: datetime.now(UTC))
        # time.monotonic() when the backend last failed, or met a connection that had died and
        # wrote on through a new one: an outage that may have failed more at another instance
        # (a STOP it kept), so sends settle after it as after one the breaker saw.
        self.disrupted_at = -float("inf")

    # --- what a backend provides ---------------------------------------------------------

    #: Where the record is, for messages: a file, or a database host (never a password).
    where: str
    #: True when the backend can count rate limits across instances (see dialtone.record.limits).
    shared: bool = False

    @abstractmethod
    def _write(self, work: Callable[[Queries], T], *, durable: bool = False) -> T:
        """Run `work` in one write transaction, committed whole or rolled back whole (on
        Discard too, answering its result). A backend may run `work` again after a failure
        that wrote nothing, so it must only touch the database. `durable`: on disk before it
        returns, even where the backend lets other commits skip the flush (SQLite's
        synchronous=NORMAL, PostgreSQL's synchronous_commit=off): an opt-out change lost to a
        power cut would be texted past."""

    def transaction(self, work: Callable[[Queries], T]) -> T:
        """Run `work(queries)` in one write transaction (the record's own helpers: limits)."""
        return self._write(work)

    @abstractmethod
    def _read(self, query: Callable[[Queries], T]) -> T:
        """Run `query` on one consistent snapshot."""

    @abstractmethod
    def health(self, wait: float | None = None) -> StoreUnavailable | None:
        """None when the record can be written now; else the failure (its message names the
        file or database, its `reason` does not). A real write (a probe row), so a full disk
        or a read-only file shows too. `wait`: the most to wait for a lock or a connection
        (the breaker's probe waits briefly); by default as long as a write would."""

    @property
    @abstractmethod
    def schema_version(self) -> int:
        """The schema version of the database (the number of migrations applied)."""

    @abstractmethod
    def close(self) -> None:
        """Release the database. Safe to call twice."""

    def __enter__(self: T) -> T:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _now(self) -> str:
        return format_timestamp(self._clock())

    # --- messages ------------------------------------------------------------------------

    def record_inbound_message(
        self,
        form: Mapping[str, str],
        idempotency_key: str | None = None,
        *,
        opted_out: bool | None = None,
        keyword: str | None = None,
    ) -> Outcome:
        """Record an inbound SMS/MMS webhook; with `opted_out`, set the sender's opt-out too."""
        return self.receive_message(form, idempotency_key, opted_out=opted_out, keyword=keyword)[0]

    def receive_message(
        self,
        form: Mapping[str, str],
        idempotency_key: str | None = None,
        *,
        opted_out: bool | None = None,
        keyword: str | None = None,
    ) -> Received:
        """`record_inbound_message`, also telling whether the sender had opted out before it.

        A message whose SID is already recorded changes nothing, opt-out included, whatever its
        idempotency token: a replayed START cannot re-subscribe a number that sent STOP since.
        The opt-out is set in the same transaction as the message.
        """
        values = forms.clean_form(form)
        new = forms.inbound_message(values)
        key = delivery_key_for(idempotency_key, "message", new.sid, new.status)
        sender = new.from_number

        def work(q: Queries) -> Received:
            status, was_opted_out = q.inbound_state(new.sid, sender)
            was_opted_out = was_opted_out and bool(sender)
            duplicate = Discard(Received(Outcome.DUPLICATE, was_opted_out))
            if status is not None:
                raise duplicate
            now = self._now()
            if not q.claim(key, "message", new.sid, new.status, values, now):
                raise duplicate
            if not q.insert(new, now):  # the same SID, recorded at this moment elsewhere
                raise duplicate
            if opted_out is not None and sender:
                q.set_opt_out(sender, opted_out, keyword, now)
            return Received(Outcome.NEW, was_opted_out)

        return self._write(work, durable=opted_out is not None)

    def record_outbound_message(
        self,
        sid: str | None,
        to: str,
        from_: str | None,
        body: str,
        media_urls: Iterable[str] = (),
        status: str = "queued",
        *,
        error_code: int | None = None,
        error_message: str | None = None,
    ) -> Outcome:
        """Record a message sent through the REST API (`sid` None: Twilio refused it)."""
        sid = forms.text(sid) if sid else f"local-{uuid.uuid4().hex}"
        urls = [forms.text(url) for url in media_urls][: forms.MAX_MEDIA]
        new = forms.NewMessage(
            sid=sid,
            direction="outbound",
            from_number=forms.text(from_ or ""),
            to_number=forms.text(to),
            body=forms.text(body),
            media=tuple((url, "") for url in urls),
            status=forms.text(status),
            error_code=error_code,
            error_message=forms.text(error_message) if error_message else None,
        )
        payload: dict[str, Any] = {"to": new.to_number, "from": new.from_number}
        payload |= {"body": new.body, "media_urls": urls, "error_code": error_code}
        return self._record(
            f"outbound-message:{sid}:{new.status}", "outbound-message", new, payload
        )

    def record_message_status(
        self, form: Mapping[str, str], idempotency_key: str | None = None
    ) -> Outcome:
        """Record a message status callback; a status never moves backwards."""
        values = forms.clean_form(form)
        new = forms.message_status(values)
        key = delivery_key_for(idempotency_key, "message-status", new.sid, new.status)
        return self._record(key, "message-status", new, values)

    def _record(
        self,
        key: str,
        kind: str,
        new: forms.NewMessage | forms.NewCall,
        payload: dict[str, Any],
    ) -> Outcome:
        """Claim `key`, then insert the row or update it (status only forward); one transaction."""

        def work(q: Queries) -> Outcome:
            now = self._now()
            if not q.claim(key, kind, new.sid, new.status, payload, now):
                raise Discard(Outcome.DUPLICATE)
            outcome = self._upsert(q, new, now)
            q.settle(key, outcome)
            return outcome

        return self._write(work)

    def _upsert(self, q: Queries, new: forms.NewMessage | forms.NewCall, now: str) -> Outcome:
        """Insert the row, or fill its blanks; its status only ever moves forward."""
        current = q.state(new)
        if current is None:
            if q.insert(new, now):
                return Outcome.NEW
            current = q.state(new)  # inserted at this moment by another instance
            assert current is not None
        rank = message_status_rank if isinstance(new, forms.NewMessage) else call_status_rank
        forward = rank(new.status) > rank(current.status)
        q.update(new, now, apply_status=forward)
        return Outcome.UPDATED if forward else Outcome.STALE

    # --- calls ---------------------------------------------------------------------------

    def record_call(self, form: Mapping[str, str], idempotency_key: str | None = None) -> Outcome:
        """Record the voice webhook that answers a call (Direction defaults to inbound)."""
        return self._record_call(forms.clean_form(form), idempotency_key, "call", "inbound")

    def record_call_status(
        self, form: Mapping[str, str], idempotency_key: str | None = None
    ) -> Outcome:
        """Record a call status callback; a status never moves backwards."""
        values = forms.clean_form(form)
        return self._record_call(values, idempotency_key, "call-status", "outbound")

    def record_outbound_call(
        self,
        sid: str | None,
        to: str,
        from_: str | None,
        status: str = "queued",
        *,
        error_code: int | None = None,
        error_message: str | None = None,
    ) -> Outcome:
        """Record a call placed through the REST API (`sid` None: Twilio refused it, and the
        row gets a local SID and status "failed"; the error is kept in its event)."""
        sid = forms.text(sid) if sid else f"local-{uuid.uuid4().hex}"
        values = forms.clean_form({"CallSid": sid, "To": to, "From": from_ or ""})
        values["CallStatus"] = status
        if error_code is not None:
            values["ErrorCode"] = str(error_code)
        if error_message:
            values["ErrorMessage"] = forms.text(error_message)
        return self._record_call(values, None, "outbound-call", "outbound")

    def _record_call(
        self, values: dict[str, str], idempotency_key: str | None, kind: str, direction: str
    ) -> Outcome:
        new = forms.call(values, direction)
        key = delivery_key_for(idempotency_key, kind, new.sid, new.status)
        return self._record(key, kind, new, values)

    def record_digits(
        self, call_sid: str, digits: str, idempotency_key: str | None = None
    ) -> Outcome:
        """Record the keys pressed for a <Gather>. Without a key, every delivery is recorded."""
        if not call_sid:
            raise forms.BadRecord("The webhook has no CallSid, so it cannot be recorded.")
        call_sid, digits = forms.text(call_sid), forms.text(digits)
        key = delivery_key_for(idempotency_key, "digits", call_sid, uuid.uuid4().hex)
        payload = {"CallSid": call_sid, "Digits": digits}
        stub = forms.NewCall(call_sid, "inbound", "", "", "in-progress")

        def work(q: Queries) -> Outcome:
            now = self._now()
            if not q.claim(key, "digits", call_sid, None, payload, now):
                raise Discard(Outcome.DUPLICATE)
            new_row = q.state(stub) is None and q.insert(stub, now)
            if digits:
                q.add_digits(call_sid, digits, now)
            return Outcome.NEW if new_row else Outcome.UPDATED

        return self._write(work)

    # --- opt-outs ------------------------------------------------------------------------

    def set_opt_out(
        self, number: str, opted_out: bool, *, keyword: str | None = None, at: str | None = None
    ) -> bool:
        """Mark `number` as opted out (STOP) or back in (START); `at`: as of that earlier
        moment (a change kept while the record was down), unless it changed since (False)."""
        number = forms.text(number)
        return self._write(
            lambda q: q.set_opt_out(
                number, opted_out, keyword, at or self._now(), if_newer=at is not None
            ),
            durable=True,
        )

    def now(self) -> str:
        """The record's clock, in its timestamp format."""
        return self._now()

    def is_opted_out(self, number: str, wait: float | None = None) -> bool:
        """True when `number` has opted out and not back in; `wait`: the most to wait for a
        lock or a connection (while the record fails: briefly), by default as a read would."""
        return self._read(lambda q: q.is_opted_out(number))

    # --- reading -------------------------------------------------------------------------

    def message(self, sid: str) -> Message | None:
        """The message with this SID, or None."""
        return self._read(lambda q: q.message(sid))

    def call(self, sid: str) -> Call | None:
        """The call with this SID, or None."""
        return self._read(lambda q: q.call(sid))

    def messages(
        self,
        *,
        number: str | None = None,
        since: datetime | None = None,
        status: str | None = None,
        direction: str | None = None,
        limit: int = DEFAULT_PAGE,
        before: int | None = None,
        after: int | None = None,
    ) -> list[Message]:
        """Messages newest first. `number` matches From or To; `since` keeps those created at
        or after it; `before`/`after` are Message.id cursors; `limit` is capped at 500."""
        filters = Filters(number, since, status, direction, limit, before, after)
        return self._read(lambda q: q.messages(filters))

    def calls(
        self,
        *,
        number: str | None = None,
        since: datetime | None = None,
        status: str | None = None,
        direction: str | None = None,
        limit: int = DEFAULT_PAGE,
        before: int | None = None,
        after: int | None = None,
    ) -> list[Call]:
        """Calls newest first, filtered and paged like `messages()`."""
        filters = Filters(number, since, status, direction, limit, before, after)
        return self._read(lambda q: q.calls(filters))

    def events(self, sid: str) -> list[Event]:
        """Every delivery and transition recorded for a message or call SID, oldest first."""
        return self._read(lambda q: q.events(sid))

    def opt_outs(self) -> list[OptOut]:
        """Every number that sent an opt-out or opt-in keyword, latest change first."""
        return self._read(lambda q: q.opt_outs())

    def conversations(
        self, limit: int = 20, *, per_number: int = 10, number: str | None = None
    ) -> list[Conversation]:
        """The most recently active numbers, each with its latest messages and calls."""
        return self._read(lambda q: q.conversations(limit, per_number, number))


def delivery_key_for(idempotency_key: str | None, kind: str, sid: str, status: str) -> str:
    """The key a delivery claims: Twilio's token, or without it the kind, SID and status."""
    if idempotency_key:
        return f"token:{forms.text(idempotency_key)}"
    return f"{kind}:{sid}:{status}"
