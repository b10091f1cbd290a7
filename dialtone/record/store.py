"""The record in SQLite (the default): one file at DATABASE_PATH, nothing to install.

One connection, guarded by a lock, serves waitress's whole thread pool. SQLite allows one writer
at a time anyway, and every write here is a few indexed statements that commit in microseconds,
so the lock costs little and rules out SQLITE_BUSY between our own threads. Processes sharing
the file also take a writer lock (dialtone.record.lock) around each write, which hands over far
faster than SQLite's sleeping busy handler; the busy timeout covers the rest.

WAL with synchronous=NORMAL: a commit appends to the WAL without an fsync; the WAL is synced at
checkpoints. The file cannot be corrupted this way, and a crash of the process loses nothing
committed (the data is already in the OS's cache); only a power cut or kernel crash can lose the
last few commits. FULL would add an fsync to every webhook, by far the slowest step of one, so
only opt-out changes (STOP, START) commit with FULL: the one loss a text would be sent past.

The file, its WAL and SHM are made 0600 (and a directory Dialtone creates for them 0700): they
hold phone numbers and message bodies.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from dialtone.record.base import (
    IDEMPOTENCY_HEADER,
    Discard,
    Received,
    RecordStore,
)
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
from dialtone.record.queries import Queries
from dialtone.record.rows import Call, Conversation, Event, Media, Message, OptOut, Outcome
from dialtone.record.schema import (
    BUSY_TIMEOUT_MS,
    MIGRATIONS,
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
    "RecordStore",
    "SchemaMismatch",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "open_store",
]

log = logging.getLogger("dialtone.record.store")


T = TypeVar("T")

# How long a write or read waits for another thread's transaction before giving up: with SQLite's
# own busy timeout for other processes (5 s) a webhook still answers within Twilio's 15 s.
LOCK_TIMEOUT = 5.0


def open_store(settings: Settings) -> RecordStore:
    """Open the record: PostgreSQL at DATABASE_URL when it is set, else SQLite at
    DATABASE_PATH; created and migrated as needed, and refused (StoreUnavailable) when it
    cannot be written."""
    if settings.database_url:
        from dialtone.record.postgres import PostgresStore  # psycopg only when it is used

        # One connection per waitress thread, and two for the limits and the health check.
        store: RecordStore = PostgresStore(settings.database_url, pool_size=settings.threads + 2)
    else:
        store = Store(settings.database_path)
    failure = store.health()
    if failure is not None:
        store.close()
        raise failure
    kind = "" if store.shared else "SQLite file "
    log.info("The record: %s%s, at schema version %d.", kind, store.where, store.schema_version)
    return store


class Store(RecordStore):
    """The record in one SQLite file (see the module docstring)."""

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
        super().__init__(clock)
        self.path: Path | str = ":memory:" if str(path) == ":memory:" else Path(path)
        # The full path: instances sharing a port from different directories would otherwise
        # each say "var/dialtone.db" at start (and `make history`) while keeping different records.
        self.where = str(self.path if isinstance(self.path, str) else self.path.resolve())
        self.readonly = readonly
        self.lock_timeout = lock_timeout
        self._lock = threading.Lock()
        if readonly:
            conn = open_readonly(Path(self.path), migrations)
        else:
            conn = open_connection(self.path, migrations)
        self._conn: sqlite3.Connection | None = conn
        self._queries = Queries(conn)
        self._identity = _identity(self.path)  # the file opened, to notice it deleted or replaced
        # Other Dialtone processes writing the same file: see dialtone.record.lock.
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
        return self._read(lambda q: schema_version(q.conn))

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

    def health(self, wait: float | None = None) -> StoreUnavailable | None:
        """None when a write commits now; else why not (the file, SQLite's words, what to do).
        `wait`: the most to wait for each lock (default: lock_timeout, and the busy timeout)."""
        try:
            self._write(
                lambda q: q.conn.execute(
                    "INSERT INTO health (id, checked_at) VALUES (1, ?) "
                    "ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at",
                    (self._now(),),
                ),
                wait,
            )
        except StoreUnavailable as exc:
            return exc
        return None

    # --- transactions --------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreUnavailable(f"The record at {self.path} is closed.", path=self.path)
        return self._conn

    def _busy(self, holder: str) -> StoreUnavailable:
        """Why a lock held by another thread or process was not had in lock_timeout."""
        return StoreUnavailable(
            f"The record at {self.path} is busy: another {holder} has held it for over "
            f"{self.lock_timeout:g} s (a slow or stuck disk?).",
            path=self.path,
            code="DIALTONE_LOCK_TIMEOUT",
        )

    @contextmanager
    def _locked(self, wait: float | None = None) -> Iterator[None]:
        """Hold the lock, waiting at most `wait` (lock_timeout) for another thread's
        transaction."""
        if not self._lock.acquire(timeout=self.lock_timeout if wait is None else wait):
            raise self._busy("thread")
        try:
            yield
        finally:
            self._lock.release()

    @contextmanager
    def _other_processes_out(self, deadline: float) -> Iterator[None]:
        """Hold the writer lock shared with other processes, waiting until `deadline` at most
        (time.monotonic())."""
        self._connection()  # a closed record says so, as StoreUnavailable, before any lock
        writer = self._writer
        if writer is None:
            yield
            return
        if not writer.acquire(max(0.0, deadline - time.monotonic())):
            raise self._busy("process")
        try:
            yield
        finally:
            writer.release()

    def _write(
        self, work: Callable[[Queries], T], wait: float | None = None, *, durable: bool = False
    ) -> T:
        """Run `work` in one transaction, committed whole or rolled back whole; `wait`: the
        most to wait for each lock, SQLite's own included (default: lock_timeout, and the busy
        timeout); `durable`: the commit waits for the WAL's fsync (RecordStore._write)."""
        if self.readonly:
            raise StoreUnavailable(f"The record at {self.path} is read-only.", path=self.path)
        # One deadline for all three waits: one after another they could add up to 15 s.
        wait = self.lock_timeout if wait is None else wait
        deadline = time.monotonic() + wait
        with self._locked(wait), self._other_processes_out(deadline), self._busy_until(deadline):
            conn = self._connection()
            self._still_there()
            try:
                if conn.in_transaction:  # left open by a ROLLBACK that failed: end it first,
                    conn.execute("ROLLBACK")  # and the synchronous=FULL it may have kept
                    self._unsynchronized(conn)
                if durable:
                    conn.execute("PRAGMA synchronous = FULL")
                conn.execute("BEGIN IMMEDIATE")
                result = work(self._queries)
                conn.execute("COMMIT")
                return result
            except BaseException as exc:
                if conn.in_transaction:
                    try:
                        conn.execute("ROLLBACK")
                    except sqlite3.DatabaseError as again:
                        log.error("Rolling back in %s failed: %s", self.path, again)
                if isinstance(exc, Discard):
                    return exc.result
                if isinstance(exc, sqlite3.DatabaseError) and is_environmental(exc):
                    raise unavailable(exc, self.path, "written") from exc
                raise
            finally:
                if durable:
                    self._unsynchronized(conn)

    def _unsynchronized(self, conn: sqlite3.Connection) -> None:
        """Back to synchronous=NORMAL after a durable write. SQLite refuses it while a
        transaction is open (a ROLLBACK that failed): the connection then stays FULL, slower
        and never less safe, and the write's own error is what the caller sees."""
        if conn.in_transaction:
            return
        try:
            conn.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.Error as exc:
            log.warning("%s stays at synchronous=FULL: %s", self.path, exc)

    @contextmanager
    def _busy_until(self, deadline: float) -> Iterator[None]:
        """SQLite's busy timeout ends at `deadline` meanwhile, when that is sooner than its own
        (under the lock: the connection is ours; the usual write leaves it alone)."""
        left_ms = int((deadline - time.monotonic()) * 1000)
        if left_ms >= BUSY_TIMEOUT_MS - 50:
            yield
            return
        conn = self._connection()
        conn.execute(f"PRAGMA busy_timeout = {max(1, left_ms)}")
        try:
            yield
        finally:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")

    def _still_there(self) -> None:
        """StoreUnavailable when the file opened is no longer at the path: what it took now
        would be lost (deleted), or not be where the next start looks (replaced)."""
        if self._identity is not None and _identity(self.path) != self._identity:
            raise StoreUnavailable(
                f"The record at {self.path} was deleted or replaced while Dialtone ran, so what "
                "it writes now would be lost: stop Dialtone (a clean stop, which takes its WAL "
                "with it) and start it again to open the file there now.",
                path=self.path,
                code="DIALTONE_FILE_GONE",
                reason="cannot be written: the file was deleted or replaced while Dialtone ran "
                "(restart it)",
            )

    def is_opted_out(self, number: str, wait: float | None = None) -> bool:
        """RecordStore.is_opted_out, waiting at most `wait` (lock_timeout) for the lock: a write
        stuck on a slow disk holds it."""
        return self._read(lambda q: q.is_opted_out(number), wait)

    def _read(self, query: Callable[[Queries], T], wait: float | None = None) -> T:
        """Run `query` on one consistent snapshot (`wait`: for the lock, as in _locked)."""
        with self._locked(wait):
            conn = self._connection()
            try:
                conn.execute("BEGIN")
                try:
                    return query(self._queries)
                finally:
                    conn.execute("COMMIT")
            except sqlite3.DatabaseError as exc:
                if is_environmental(exc):
                    raise unavailable(exc, self.path, "read") from exc
                raise


def _identity(path: Path | str) -> tuple[int, int] | None:
    """The file at `path` (device and inode; None for ":memory:" or no file)."""
    if not isinstance(path, Path):
        return None
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_dev, stat.st_ino
