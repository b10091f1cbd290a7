"""Opt-out changes reach the disk before they are acknowledged, whatever the backend lets other
commits skip: SQLite's synchronous=NORMAL and PostgreSQL's synchronous_commit=off lose the last
commits to a power cut or a crash of the database server, and a STOP lost that way is texted
past. Other writes keep the cheaper commit (the hot path's fsync is what those settings save).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from dialtone.record.errors import StoreUnavailable
from dialtone.record.postgres import COMMIT_DURABLY, PostgresStore
from dialtone.record.store import Store
from tests.conftest import CALLER, PHONE_NUMBER
from tests.support.forms import numbered_sms
from tests.support.postgres import PostgresServer, own_server

OTHER = "+15550002222"
THIRD = "+15550003333"


def test_sqlite_opt_out_changes_commit_with_an_fsync(tmp_path: Path) -> None:
    with Store(tmp_path / "record.db") as store:
        conn = store._connection()
        statements: list[str] = []
        conn.set_trace_callback(statements.append)

        store.receive_message(numbered_sms(1, "hello"))
        assert not [s for s in statements if "synchronous" in s]  # the hot path: no fsync

        statements.clear()
        store.receive_message(numbered_sms(2, "STOP"), opted_out=True, keyword="STOP")
        full = statements.index("PRAGMA synchronous = FULL")
        assert full < statements.index("BEGIN IMMEDIATE") < statements.index("COMMIT")
        assert statements[-1] == "PRAGMA synchronous = NORMAL"

        statements.clear()
        store.set_opt_out(OTHER, True, keyword="STOP")
        assert "PRAGMA synchronous = FULL" in statements
        assert statements[-1] == "PRAGMA synchronous = NORMAL"

        with pytest.raises(ZeroDivisionError):  # a durable write that fails
            store._write(lambda q: 1 / 0, durable=True)
        conn.set_trace_callback(None)
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL again
        assert store.is_opted_out(CALLER)
        assert store.is_opted_out(OTHER)


class FailingRollback:
    """The store's connection, except that ROLLBACK fails (a disk that stopped answering)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __getattr__(self, name: str) -> object:
        return getattr(self.conn, name)

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql == "ROLLBACK":
            raise sqlite3.OperationalError("disk I/O error")
        return self.conn.execute(sql, *args)


def test_sqlite_a_durable_write_that_cannot_roll_back_reports_its_own_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite refuses to change `synchronous` inside a transaction: restoring it must not
    replace the write's StoreUnavailable (which keeps the STOP in the spool) with that."""

    def failing(q: object) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    with Store(tmp_path / "record.db") as store:
        real = store._connection()
        monkeypatch.setattr(store, "_conn", FailingRollback(real))
        with pytest.raises(StoreUnavailable, match="disk I/O error"):
            store._write(failing, durable=True)
        monkeypatch.setattr(store, "_conn", real)
        store.receive_message(numbered_sms(1, "hello"))  # ends what was left open, FULL too
        assert real.execute("PRAGMA synchronous").fetchone()[0] == 1


def test_sqlite_a_transaction_a_failed_rollback_left_open_is_ended_by_the_next_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without this, every later write (the breaker's probe too) failed with "cannot start a
    transaction within a transaction" until a restart."""

    def failing(q: object) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    with Store(tmp_path / "record.db") as store:
        real = store._connection()
        monkeypatch.setattr(store, "_conn", FailingRollback(real))
        with pytest.raises(StoreUnavailable):
            store._write(failing)
        monkeypatch.setattr(store, "_conn", real)  # the disk answers again
        assert real.in_transaction
        assert store.health() is None
        store.set_opt_out(OTHER, True, keyword="STOP")
        assert store.is_opted_out(OTHER)


def tiny_sms(n: int, body: str, sender: str = CALLER) -> dict[str, str]:
    """A webhook form with only the fields the record needs. Its WAL must not fill a page:
    the WAL writer writes out full pages at once, and would take the commits with it, so the
    test could no longer tell a flushed commit from one left in the WAL buffers."""
    return {"MessageSid": f"SM{n:032x}", "From": sender, "To": PHONE_NUMBER, "Body": body}


def crash(server: PostgresServer) -> None:
    """Stop the server as a crash would (no shutdown checkpoint, WAL buffers not written)."""
    server.stop(mode="immediate")
    server.start()


def test_postgresql_opt_out_changes_survive_a_crash_with_synchronous_commit_off() -> None:
    with own_server() as server:
        with psycopg.connect(server.url(), autocommit=True) as conn:
            # The WAL writer writes async commits out only every 10 s: a crash loses them.
            conn.execute("ALTER SYSTEM SET wal_writer_delay = '10s'")
            conn.execute("SELECT pg_reload_conf()")
        url = server.fresh_database()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"ALTER DATABASE {url.rsplit('/', 1)[1]} SET synchronous_commit = off")
        changes: list[tuple[str, Callable[[PostgresStore], object]]] = [
            (CALLER, lambda store: store.receive_message(tiny_sms(1, "STOP"), opted_out=True)),
            (OTHER, lambda store: store.set_opt_out(OTHER, True, keyword="STOP")),
        ]
        for n, (number, change) in enumerate(changes, start=2):
            with PostgresStore(url) as store:
                change(store)
                store.receive_message(tiny_sms(n, "hello", THIRD))  # after it: not flushed
            crash(server)
            with psycopg.connect(url, autocommit=True) as conn:
                kept = conn.execute("SELECT opted_out FROM opt_outs WHERE number = %s", (number,))
                assert kept.fetchall() == [(True,)]
                # The test can tell: the ordinary message, committed without a flush, was lost.
                lost = conn.execute("SELECT 1 FROM messages WHERE from_number = %s", (THIRD,))
                assert lost.fetchall() == []


def test_postgresql_durable_commits_only_raise_synchronous_commit(postgres_url: str) -> None:
    """off becomes on for the transaction; what the operator set otherwise stays."""
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        for setting, during in [
            ("off", "on"),
            ("local", "local"),
            ("remote_apply", "remote_apply"),
        ]:
            conn.execute(f"SET synchronous_commit = {setting}")
            with conn.transaction():
                conn.execute(COMMIT_DURABLY)
                now = conn.execute("SELECT current_setting('synchronous_commit')").fetchone()
                assert now == (during,)
            after = conn.execute("SELECT current_setting('synchronous_commit')").fetchone()
            assert after == (setting,)  # SET LOCAL: the transaction's only
