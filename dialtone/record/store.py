"""The record: every message, call, status transition and opt-out, in SQLite.

One connection, guarded by a lock, serves waitress's whole thread pool. SQLite allows one writer
at a time anyway, and every write here is a few indexed statements that commit in microseconds,
so the lock costs little and rules out SQLITE_BUSY between our own threads. Worker processes
sharing the file (WORKERS > 1) also take a writer lock (store_lock) around each write, which
hands over far faster than SQLite's sleeping busy handler; the busy timeout covers the rest.

WAL with synchronous=NORMAL: a commit appends to the WAL without an fsync; the WAL is synced at
checkpoints. The file cannot be corrupted this way, and a crash of the process loses nothing
committed (the data is already in the OS's cache); only a power cut or kernel crash can lose the
last few commits. FULL would add an fsync to every webhook, by far the slowest step of one.

Every public write is one transaction (BEGIN IMMEDIATE ... COMMIT): a delivery is recorded whole
or not at all, and one whose idempotency key was seen before writes nothing.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from dialtone.record import forms as forms
from dialtone.record.checkpoint import FALLBACK_PAGES, Checkpointer
from dialtone.record.errors import (
    BadRecord,
    SchemaMismatch,
    StoreError,
    StoreUnavailable,
    is_environmental,
    unavailable,
)
from dialtone.record.lock import WriterLock
from dialtone.record.queries import DEFAULT_PAGE, Filters, Queries
from dialtone.record.rows import (
    Call,
    Conversation,
    Event,
    Media,
    Message,
    OptOut,
    Outcome,
    format_timestamp,
)
from dialtone.record.schema import (
    MIGRATIONS,
    call_status_rank,
    message_status_rank,
    open_connection,
    open_readonly,
    schema_version,
)
from dialtone.settings import Settings

__all__ = [
    "IDEMPOTENCY_HEADER",
    "BadRecord",
    "Call",
    "Conversation",
    "Event",
    "Media",
    "Message",
    "OptOut",
    "Outcome",
    "Received",
    "SchemaMismatch",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "open_store",
]

log = logging.getLogger("dialtone.record.store")

# Twilio sends this header with every webhook; retries of one webhook carry the same token.
IDEMPOTENCY_HEADER = "I-Twilio-Idempotency-Token"

T = TypeVar("T")

# How long a write or read waits for another thread's transaction before giving up: with SQLite's
# own busy timeout for other processes (5 s) a webhook still answers within Twilio's 15 s.
LOCK_TIMEOUT = 5.0


class Received(NamedTuple):
    """What recording an inbound message did, and the sender's opt-out state before it."""

    outcome: Outcome
    sender_opted_out: bool


def open_store(settings: Settings) -> Store:
    """Open the record at settings.database_path, creating and migrating it as needed."""
    return Store(settings.database_path)


class Store:
    """The record. Share one between threads; `close()` it on shutdown.

    Writes return an Outcome; a database that cannot be written raises StoreUnavailable, and a
    webhook without a SID or status raises BadRecord.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        readonly: bool = False,
        clock: Callable[[], datetime] | None = None,
        migrations: Sequence[str] = MIGRATIONS,
        lock_timeout: float = LOCK_TIMEOUT,
    ) -> None:
        """Open `path` (":memory:" for a throwaway record); `readonly` neither creates nor migrates."""
        self.path: Path | str = ":memory:" if str(path) == ":memory:" else Path(path)
        self.readonly = readonly
        self.lock_timeout = lock_timeout
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.Lock()
        if readonly:
            conn = open_readonly(Path(self.path), migrations)
        else:
            conn = open_connection(self.path, migrations)
        self._conn: sqlite3.Connection | None = conn
        self._queries = Queries(conn)
        # Other Dialtone processes writing the same file (WORKERS > 1): see store_lock.
        self._writer = None if readonly else WriterLock.beside(self.path)
        # The WAL is checkpointed on a thread of its own, not by the commit of a webhook.
        self._checkpointer: Checkpointer | None = None
        if not readonly and isinstance(self.path, Path):
            conn.execute(f"PRAGMA wal_autocheckpoint = {FALLBACK_PAGES}")
            self._checkpointer = Checkpointer(self.path)
            self._checkpointer.start()

    @property
    def schema_version(self) -> int:
        """The schema version of the open database."""
        return self._read(schema_version)

    def close(self) -> None:
        """Checkpoint the WAL into the database file and close. Safe to call twice."""
        if self._checkpointer is not None:
            self._checkpointer.stop()
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is None:
                return
            try:
                if not self.readonly:
                    conn.execute("PRAGMA optimize")
                    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.DatabaseError as exc:
                log.warning("Closing the record at %s without a checkpoint: %s", self.path, exc)
            finally:
                conn.close()
                if self._writer is not None:
                    self._writer.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- transactions --------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreUnavailable(f"The record at {self.path} is closed.", path=self.path)
        return self._conn

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the lock, waiting at most lock_timeout for another thread's transaction."""
        if not self._lock.acquire(timeout=self.lock_timeout):
            raise StoreUnavailable(
                f"The record at {self.path} is busy: another thread has held it for over "
                f"{self.lock_timeout:g} s (a slow or stuck disk?).",
                path=self.path,
                code="DIALTONE_LOCK_TIMEOUT",
            )
        try:
            yield
        finally:
            self._lock.release()

    @contextmanager
    def _other_processes_out(self) -> Iterator[None]:
        """Hold the writer lock shared with other processes, waiting at most lock_timeout."""
        self._connection()  # a closed record says so, as StoreUnavailable, before any lock
        writer = self._writer
        if writer is None:
            yield
            return
        if not writer.acquire(self.lock_timeout):
            raise StoreUnavailable(
                f"The record at {self.path} is busy: another process has held it for over "
                f"{self.lock_timeout:g} s (a slow or stuck disk?).",
                path=self.path,
                code="DIALTONE_LOCK_TIMEOUT",
            )
        try:
            yield
        finally:
            writer.release()

    @contextmanager
    def _write(self) -> Iterator[None]:
        """One transaction, committed whole or rolled back whole."""
        if self.readonly:
            raise StoreUnavailable(f"The record at {self.path} is read-only.", path=self.path)
        with self._locked(), self._other_processes_out():
            conn = self._connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
                yield
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    try:
                        conn.execute("ROLLBACK")
                    except sqlite3.DatabaseError as again:
                        log.error("Rolling back in %s failed: %s", self.path, again)
                if isinstance(exc, sqlite3.DatabaseError) and is_environmental(exc):
                    raise unavailable(exc, self.path, "written") from exc
                raise

    def _read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        """Run `query` on one consistent snapshot."""
        with self._locked():
            conn = self._connection()
            try:
                conn.execute("BEGIN")
                try:
                    return query(conn)
                finally:
                    conn.execute("COMMIT")
            except sqlite3.DatabaseError as exc:
                if is_environmental(exc):
                    raise unavailable(exc, self.path, "read") from exc
                raise

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
        """Record an inbound SMS/MMS webhook; with `opted_out`, set the sender's opt-out too.

        The opt-out is set in the same transaction, and not at all for a duplicate delivery (so
        a late retry of STOP cannot undo a later START).
        """
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

        The webhook's hot path: the opt-out read, the duplicate check and the message's current
        status are one SELECT inside the write transaction, so a webhook costs five statements
        (BEGIN, SELECT, two INSERTs, COMMIT) instead of a read transaction and a write one.
        """
        values = forms.clean_form(form)
        new = forms.inbound_message(values)
        key = _key(idempotency_key, "message", new.sid, new.status)
        sender = new.from_number
        with self._write():
            seen, status, was_opted_out = self._queries.inbound_state(key, new.sid, sender)
            was_opted_out = was_opted_out and bool(sender)
            if seen:
                return Received(Outcome.DUPLICATE, was_opted_out)
            now = self._now()
            if status is None:
                self._queries.insert(new, now)
                outcome = Outcome.NEW
            else:
                outcome = self._apply(new, status, now)
            if opted_out is not None and sender:
                self._queries.set_opt_out(sender, opted_out, keyword, now)
            self._queries.add_event(key, "message", new.sid, new.status, outcome, values, now)
        return Received(outcome, was_opted_out)

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
        key = f"outbound-message:{sid}:{new.status}"
        with self._write():
            if self._queries.seen(key):
                return Outcome.DUPLICATE
            outcome = self._upsert(new)
            self._record_event(key, "outbound-message", new, outcome, payload)
        return outcome

    def record_message_status(
        self, form: Mapping[str, str], idempotency_key: str | None = None
    ) -> Outcome:
        """Record a message status callback; a status never moves backwards."""
        values = forms.clean_form(form)
        new = forms.message_status(values)
        key = _key(idempotency_key, "message-status", new.sid, new.status)
        with self._write():
            if self._queries.seen(key):
                return Outcome.DUPLICATE
            outcome = self._upsert(new)
            self._record_event(key, "message-status", new, outcome, values)
        return outcome

    def _upsert(self, new: forms.NewMessage | forms.NewCall) -> Outcome:
        """Insert the row, or fill its blanks; its status only ever moves forward."""
        current = self._queries.state(new)
        if current is None:
            self._queries.insert(new, self._now())
            return Outcome.NEW
        return self._apply(new, current.status, self._now())

    def _apply(self, new: forms.NewMessage | forms.NewCall, status: str, now: str) -> Outcome:
        """Update an existing row (current `status`) from `new`, moving the status only forward."""
        rank = message_status_rank if isinstance(new, forms.NewMessage) else call_status_rank
        forward = rank(new.status) > rank(status)
        self._queries.update(new, now, apply_status=forward)
        return Outcome.UPDATED if forward else Outcome.STALE

    def _record_event(
        self,
        key: str,
        kind: str,
        new: forms.NewMessage | forms.NewCall,
        outcome: Outcome,
        payload: dict[str, Any],
    ) -> None:
        self._queries.add_event(key, kind, new.sid, new.status, outcome, payload, self._now())

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
        key = _key(idempotency_key, kind, new.sid, new.status)
        with self._write():
            if self._queries.seen(key):
                return Outcome.DUPLICATE
            outcome = self._upsert(new)
            self._record_event(key, kind, new, outcome, values)
        return outcome

    def record_digits(
        self, call_sid: str, digits: str, idempotency_key: str | None = None
    ) -> Outcome:
        """Record the keys pressed for a <Gather>. Without a key, every delivery is recorded."""
        if not call_sid:
            raise BadRecord("The webhook has no CallSid, so it cannot be recorded.")
        call_sid, digits = forms.text(call_sid), forms.text(digits)
        key = _key(idempotency_key, "digits", call_sid, uuid.uuid4().hex)
        with self._write():
            if self._queries.seen(key):
                return Outcome.DUPLICATE
            outcome = Outcome.UPDATED
            stub = forms.NewCall(call_sid, "inbound", "", "", "in-progress")
            if self._queries.state(stub) is None:
                self._queries.insert(stub, self._now())
                outcome = Outcome.NEW
            if digits:
                self._queries.add_digits(call_sid, digits, self._now())
            payload = {"CallSid": call_sid, "Digits": digits}
            self._queries.add_event(key, "digits", call_sid, None, outcome, payload, self._now())
        return outcome

    # --- opt-outs ------------------------------------------------------------------------

    def set_opt_out(self, number: str, opted_out: bool, *, keyword: str | None = None) -> None:
        """Mark `number` as opted out (STOP) or back in (START)."""
        with self._write():
            self._queries.set_opt_out(forms.text(number), opted_out, keyword, self._now())

    def is_opted_out(self, number: str) -> bool:
        """True when `number` has opted out and not back in."""
        return self._read(lambda conn: self._queries.is_opted_out(number))

    # --- reading -------------------------------------------------------------------------

    def message(self, sid: str) -> Message | None:
        """The message with this SID, or None."""
        return self._read(lambda conn: self._queries.message(sid))

    def call(self, sid: str) -> Call | None:
        """The call with this SID, or None."""
        return self._read(lambda conn: self._queries.call(sid))

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
        return self._read(lambda conn: self._queries.messages(filters))

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
        return self._read(lambda conn: self._queries.calls(filters))

    def events(self, sid: str) -> list[Event]:
        """Every delivery and transition recorded for a message or call SID, oldest first."""
        return self._read(lambda conn: self._queries.events(sid))

    def opt_outs(self) -> list[OptOut]:
        """Every number that sent an opt-out or opt-in keyword, latest change first."""
        return self._read(lambda conn: self._queries.opt_outs())

    def conversations(
        self, limit: int = 20, *, per_number: int = 10, number: str | None = None
    ) -> list[Conversation]:
        """The most recently active numbers, each with its latest messages and calls."""
        return self._read(lambda conn: self._queries.conversations(limit, per_number, number))


def _key(idempotency_key: str | None, kind: str, sid: str, status: str) -> str:
    # Twilio's token names one delivery; without it, the SID and status stand in for it.
    if idempotency_key:
        return f"token:{forms.text(idempotency_key)}"
    return f"{kind}:{sid}:{status}"
