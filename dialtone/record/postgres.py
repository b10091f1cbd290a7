"""The record in PostgreSQL (DATABASE_URL): shared by every instance, through psycopg's pool.

Each write is one transaction on a pooled connection. What SQLite gets from having one writer,
PostgreSQL gets from its constraints: a delivery claims its idempotency key with INSERT ... ON
CONFLICT DO NOTHING (the same webhook at two instances at once: the second waits on the unique
key, then writes nothing), rows are inserted the same way, and a status update locks its row
before comparing ranks.

When the database goes away, a connection that broke is dropped from the pool and the write is
tried once more on a fresh one (every write is idempotent); what still fails raises
StoreUnavailable naming the database (never the password), and the pool reconnects by itself
once the server is back.

No statement waits for ever: each pooled connection has a statement_timeout (a lock held by a
migration or by hand, an overloaded server) and TCP keepalives with a user timeout (a network
that drops packets, a failover), so a webhook is answered within Twilio's 15 s whatever the
database does. A server that stops but whose machine still acknowledges packets is not caught.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

from dialtone.record import forms
from dialtone.record.base import Discard, Received, RecordStore, delivery_key_for
from dialtone.record.errors import SchemaMismatch, StoreUnavailable
from dialtone.record.pg_schema import (
    PG_MIGRATIONS,
    RECEIVE_MESSAGE,
    PgQueries,
    migrate,
    newer_schema,
    schema_version,
)
from dialtone.record.queries import message_params
from dialtone.record.rows import Outcome

log = logging.getLogger("dialtone.record.store")

T = TypeVar("T")

CONNECT_TIMEOUT = 5  # seconds for one connection attempt (libpq's connect_timeout)
WAIT = 5.0  # seconds a request waits for a pooled connection while the database is up
WAIT_WHILE_DOWN = 0.5  # ... and once a write has failed: answer webhooks fast meanwhile
RECOVERY_INTERVAL = 1.0  # seconds between attempts to reconnect while writes fail
POOL_SIZE = 10
STATEMENT_TIMEOUT = 3.0  # seconds a write may take (a webhook waits for it)
READ_TIMEOUT = 30.0  # seconds a read may take (history, GET /messages)
# libpq's TCP settings for pooled connections (unless DATABASE_URL sets them): a silent peer is
# dropped after about 5 s of unacknowledged data or 5 s of unanswered keepalives when idle.
TCP_SETTINGS = {
    "keepalives": 1,
    "keepalives_idle": 1,
    "keepalives_interval": 2,
    "keepalives_count": 2,
    "tcp_user_timeout": 5000,
}


# The transaction's commit waits for its WAL flush even where the role or database says
# synchronous_commit = off; the other settings flush (and may wait for standbys): left alone.
COMMIT_DURABLY = (
    "SELECT set_config('synchronous_commit', 'on', true) "
    "WHERE current_setting('synchronous_commit') = 'off'"
)


def describe(url: str) -> str:
    """'PostgreSQL database NAME on HOST:PORT as USER': what a message may say, no password."""
    try:
        info = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "the PostgreSQL database at DATABASE_URL"
    host = info.get("host") or "localhost"
    port = info.get("port") or "5432"
    where = f"PostgreSQL database {info.get('dbname') or '(default)'} on {host}:{port}"
    return where + (f" as {info['user']}" if info.get("user") else "")


def version_words(version: int) -> str:
    """'has schema version N', or what version 0 means: nothing there yet."""
    if version == 0:
        return "has no Dialtone tables yet (no instance or `dialtone migrate` has run on it)"
    return f"has schema version {version}"


# A server that answered a connection with FATAL refused it for good (a password, a role, a
# database that does not exist, pg_hba.conf), except while it starts, stops or is full.
PASSING_FATALS = ("starting up", "shutting down", "too many", "recovery")


def is_transient(exc: BaseException) -> bool:
    """True when the server did not answer (yet): refused, timed out, unknown host, or busy
    starting; False when it answered no (libpq gives connection failures no SQLSTATE, so its
    words tell)."""
    if isinstance(exc, PoolTimeout):
        return True
    if not isinstance(exc, psycopg.OperationalError) or getattr(exc, "sqlstate", None):
        return False
    words = str(exc)
    return "FATAL:" not in words or any(passing in words for passing in PASSING_FATALS)


def is_timeout(exc: BaseException) -> bool:
    """True for a statement cancelled by statement_timeout (the server is up; retrying on a
    fresh connection would only wait as long again)."""
    return isinstance(exc, pg_errors.QueryCanceled)


def is_environmental(exc: BaseException) -> bool:
    """True for failures of the server or the network, not of Dialtone's own SQL."""
    return isinstance(
        exc,
        psycopg.OperationalError
        | PoolTimeout
        | pg_errors.ReadOnlySqlTransaction
        | pg_errors.InsufficientPrivilege
        | pg_errors.InsufficientResources
        | pg_errors.OperatorIntervention
        | pg_errors.SystemError
        | pg_errors.InternalError_,
    )


def _diagnosis(exc: BaseException, code: str) -> tuple[str, str]:
    """What a failure says of PostgreSQL, for GET /healthz (no host), and what to do."""
    if isinstance(exc, pg_errors.ReadOnlySqlTransaction):
        return (
            "is read-only",
            "the server is read-only (a standby?): point DATABASE_URL at the primary",
        )
    if isinstance(exc, pg_errors.InsufficientPrivilege):
        return "refuses the role a privilege", (
            "the role in DATABASE_URL lacks a privilege the record needs: make it the owner of "
            "the database (CREATE DATABASE dialtone OWNER dialtone), or of the tables a role "
            "that migrated them first created"
        )
    if is_timeout(exc):
        return "statement timeout (a lock, or an overloaded server)", (
            "a statement took longer than its time limit: a lock held by another session (a "
            "migration, a long transaction) or an overloaded server"
        )
    unreachable = isinstance(exc, psycopg.OperationalError | PoolTimeout)
    return "unreachable" if unreachable else f"error {code}", (
        "check DATABASE_URL, that the server is up and that it accepts connections from this "
        "machine"
    )


class PostgresStore(RecordStore):
    """The record in PostgreSQL (see the module docstring)."""

    shared = True

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = POOL_SIZE,
        clock: Callable[[], datetime] | None = None,
        migrations: Sequence[str] = PG_MIGRATIONS,
        readonly: bool = False,
    ) -> None:
        """Connect, migrate (one instance at a time; `readonly`: only check the version), and
        open the pool; StoreUnavailable naming the database when it cannot be reached."""
        super().__init__(clock)
        self.where = describe(url)
        self._failing = threading.Event()  # set while writes fail: wait less for a connection
        self._disconnected = threading.Event()  # set while the failure is the connection's
        self._connect_error: psycopg.Error | None = None  # the last reconnection's, meanwhile
        try:
            with psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT) as conn:
                if not readonly:
                    migrate(conn, self.where, migrations)
                elif (version := schema_version(conn)) > len(migrations):
                    raise newer_schema(self.where, version, len(migrations))
                elif version < len(migrations):
                    raise SchemaMismatch(
                        f"The record in {self.where} {version_words(version)}, and this "
                        f"Dialtone reads version {len(migrations)}. Run `make migrate` (or "
                        "`dialtone migrate`) to migrate it.",
                        path=self.where,
                    )
        except psycopg.Error as exc:
            raise self._unavailable(exc, "reached") from exc
        self._url = url
        self._pool_size = pool_size
        self._recovering = threading.Lock()
        self._last_recovery = 0.0
        try:
            self._pool: ConnectionPool[Any] | None = self._new_pool()
        except PoolTimeout as exc:
            raise self._unavailable(exc, "reached") from exc

    def _new_pool(self) -> ConnectionPool[Any]:
        pool: ConnectionPool[Any] = ConnectionPool(
            self._url,
            min_size=min(2, self._pool_size),
            max_size=self._pool_size,
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT} | self._tcp_settings(),
            configure=self._configure,
            timeout=WAIT,
            name="dialtone-record",
            open=False,
        )
        try:
            pool.open(wait=True, timeout=CONNECT_TIMEOUT * 2)
        except PoolTimeout:
            pool.close()
            raise
        return pool

    def _tcp_settings(self) -> dict[str, int]:
        """TCP_SETTINGS, except those DATABASE_URL sets itself."""
        given = conninfo_to_dict(self._url)
        return {key: value for key, value in TCP_SETTINGS.items() if key not in given}

    @staticmethod
    def _configure(conn: psycopg.Connection[Any]) -> None:
        """Each new pooled connection: no write waits longer than STATEMENT_TIMEOUT."""
        conn.execute(f"SET statement_timeout = {int(STATEMENT_TIMEOUT * 1000)}")

    def _recover(self) -> None:
        """While writes fail, at most once a RECOVERY_INTERVAL: when the server answers a
        direct connection, replace the pool (whose own reconnection backs off exponentially,
        for minutes after a long outage) with a fresh one."""
        now = time.monotonic()
        if now - self._last_recovery < RECOVERY_INTERVAL or not self._recovering.acquire(False):
            return
        try:
            self._last_recovery = now
            try:
                psycopg.connect(self._url, connect_timeout=2).close()
            except psycopg.Error as exc:
                self._connect_error = exc  # why, for the messages of the writes meanwhile
                return  # still down
            self._connect_error = None
            try:
                fresh = self._new_pool()
            except PoolTimeout:
                return
            old, self._pool = self._pool, fresh
            if old is None:  # closed meanwhile
                self._pool = None
                fresh.close()
                return
            # Connections in use finish their work; the old pool closes them when returned.
            threading.Thread(target=old.close, name="close old pool", daemon=True).start()
            log.warning("Reconnected to %s.", self.where)
        finally:
            self._recovering.release()

    @property
    def schema_version(self) -> int:
        """The schema version of the database."""
        return self._read(lambda q: schema_version(q.conn))

    def close(self) -> None:
        """Close the pool's connections. Safe to call twice."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    def health(self, wait: float | None = None) -> StoreUnavailable | None:
        """None when a write commits now; else why not (the database, the server's words).
        `wait`: for a pooled connection (by default less while writes fail)."""
        if wait is None:
            wait = WAIT_WHILE_DOWN if self._failing.is_set() else 2.0
        try:
            self._write(self._probe, wait=wait)
        except StoreUnavailable as exc:
            return exc
        return None

    def _probe(self, q: PgQueries) -> None:
        """GET /healthz's write. It first takes the lock a webhook's INSERT takes on each table
        a webhook writes, so that a lock held on one of them (a migration, a CREATE INDEX, a
        LOCK TABLE by hand) holds the probe as it holds the webhooks."""
        q.conn.execute("LOCK TABLE messages, calls, events, opt_outs IN ROW EXCLUSIVE MODE")
        q.conn.execute(
            "INSERT INTO health (id, checked_at) VALUES (1, %s) "
            "ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at",
            (self._now(),),
        )

    # --- transactions --------------------------------------------------------------------

    @contextmanager
    def _connection(self, wait: float | None = None) -> Iterator[Any]:
        pool = self._pool
        if pool is None:
            raise StoreUnavailable(f"The record in {self.where} is closed.", path=self.where)
        if wait is None:
            wait = WAIT_WHILE_DOWN if self._failing.is_set() else WAIT
        with pool.connection(timeout=wait) as conn:
            yield conn

    def receive_message(
        self,
        form: Mapping[str, str],
        idempotency_key: str | None = None,
        *,
        opted_out: bool | None = None,
        keyword: str | None = None,
    ) -> Received:
        """RecordStore.receive_message in one statement (the webhook's hot path: one round
        trip instead of five); the same outcomes."""
        values = forms.clean_form(form)
        new = forms.inbound_message(values)
        sender = new.from_number
        params = message_params(new, self._now()) | {
            "key": delivery_key_for(idempotency_key, "message", new.sid, new.status),
            "payload": json.dumps(values, ensure_ascii=False, separators=(",", ":")),
            "set_opt_out": opted_out is not None and bool(sender),
            "opted_out": bool(opted_out),
            "keyword": keyword,
        }

        def work(q: PgQueries) -> Received:
            row_id, claimed, was_opted_out = q.conn.execute(RECEIVE_MESSAGE, params).fetchone()
            was_opted_out = bool(was_opted_out) and bool(sender)
            if row_id is not None and not claimed:
                # A new SID under a token already recorded for another SID: not Twilio's
                # doing; keep the record as it was.
                q.conn.execute("DELETE FROM messages WHERE id = %s", (row_id,))
            if row_id is None or not claimed:
                return Received(Outcome.DUPLICATE, was_opted_out)
            return Received(Outcome.NEW, was_opted_out)

        return self._write(work, single=True, durable=opted_out is not None)

    def _write(
        self,
        work: Callable[[PgQueries], T],
        wait: float | None = None,
        *,
        single: bool = False,
        durable: bool = False,
    ) -> T:
        """Run `work` in one transaction, committed whole or rolled back whole; run once more
        on a fresh connection when the pooled one had died (every write is idempotent: a
        commit that did land is then found by its claimed key). `single`: `work` is one
        statement; `durable`: see RecordStore._write."""
        if self._disconnected.is_set():
            self._recover()
        for attempt in (1, 2):
            try:
                result = self._transaction(work, wait, single, durable)
                self._failing.clear()
                self._disconnected.clear()
                return result
            except psycopg.OperationalError as exc:
                if is_timeout(exc):  # the server is up and answered: no fresh connection
                    self._failing.set()
                    raise self._unavailable(exc, "written") from exc
                if attempt == 1 and self._pool is not None:
                    # Writes that start meanwhile wait less for a connection too: the pool has
                    # none while it reconnects, and a server that died answers at once or not soon.
                    self._failing.set()
                    self.disrupted_at = time.monotonic()
                    self._pool.check()  # drop every idle connection that died with the server
                    wait = WAIT_WHILE_DOWN if wait is None else min(wait, WAIT_WHILE_DOWN)
                    continue
                self._failing.set()
                self._disconnected.set()
                raise self._unavailable(exc, "written") from exc
            except (psycopg.Error, PoolTimeout) as exc:
                if not is_environmental(exc):
                    raise
                self._failing.set()
                if isinstance(exc, PoolTimeout):
                    self._disconnected.set()
                raise self._unavailable(exc, "written") from exc
        raise AssertionError("unreachable")

    def _transaction(
        self, work: Callable[[PgQueries], T], wait: float | None, single: bool, durable: bool
    ) -> T:
        with self._connection(wait) as conn:
            if single and not durable:  # one statement, atomic by itself: no BEGIN/COMMIT
                return work(PgQueries(conn))
            try:
                with conn.transaction():
                    if durable:
                        conn.execute(COMMIT_DURABLY)
                    return work(PgQueries(conn))
            except Discard as discarded:
                return discarded.result

    def is_opted_out(self, number: str, wait: float | None = None) -> bool:
        """RecordStore.is_opted_out, within a write's time: a webhook or a send waits for it.
        `wait`: for a pooled connection."""
        return self._read(lambda q: q.is_opted_out(number), STATEMENT_TIMEOUT, wait)

    def _read(
        self,
        query: Callable[[PgQueries], T],
        timeout: float = READ_TIMEOUT,
        wait: float | None = None,
    ) -> T:
        """Run `query` in one REPEATABLE READ transaction, cancelled after `timeout` s."""
        try:
            with self._connection(wait) as conn, conn.transaction():
                conn.execute(
                    "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY; "
                    f"SET LOCAL statement_timeout = {int(timeout * 1000)}"
                )
                return query(PgQueries(conn))
        except (psycopg.Error, PoolTimeout) as exc:
            if not is_environmental(exc):
                raise
            raise self._unavailable(exc, "read") from exc

    def _unavailable(self, exc: BaseException, action: str) -> StoreUnavailable:
        self.disrupted_at = time.monotonic()  # sends settle after it (RecordStore)
        # libpq's messages span lines and never hold the password; one paragraph of them. The
        # server's own first line when there is one (not the SQL it quotes after LINE 2:).
        diag = getattr(exc, "diag", None)
        primary = getattr(diag, "message_primary", None) if diag is not None else None
        words = " ".join((primary or str(exc)).split()) or type(exc).__name__
        if isinstance(exc, PoolTimeout):  # the pool's words say nothing of the server
            cause = self._connect_error
            words = (
                " ".join(str(cause).split())
                if cause is not None
                else "no connection to the server came in time"
            )
        code = getattr(exc, "sqlstate", None) or type(exc).__name__
        state, hint = _diagnosis(exc, code)
        if isinstance(exc, pg_errors.InsufficientPrivilege):
            action = "used"
        reason = f"cannot be {action}: PostgreSQL {state}"
        return StoreUnavailable(
            f"The record in {self.where} cannot be {action}: {words} ({hint}).",
            path=self.where,
            code=code,
            reason=reason,
            transient=is_transient(exc),
        )
