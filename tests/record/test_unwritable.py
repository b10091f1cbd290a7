"""A record that cannot be written (issues 9.4 and 12.4): refused at start, reported by its
health check while it lasts, and recovered from without a restart.

The disk is made full or read-only for real: a small tmpfs mounted for the test (needs root,
as CI runs; skipped otherwise). PostgreSQL is stopped and started for real.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dialtone.record.postgres import PostgresStore
from dialtone.record.schema import BUSY_TIMEOUT_MS
from dialtone.record.store import Store, StoreUnavailable, open_store
from dialtone.settings import Settings
from tests.conftest import REPO
from tests.support.postgres import PostgresServer, own_server
from tests.support.stuck_write import stuck_write

BIG = "x" * 40_000


MOUNT = shutil.which("mount") or "/bin/mount"
UMOUNT = shutil.which("umount") or "/bin/umount"


def _mount(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MOUNT, *args], capture_output=True, text=True, check=False)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MB tmpfs of its own, unmounted afterwards."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    if (
        os.geteuid() != 0
        or _mount("-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)).returncode
    ):
        pytest.skip("needs root and mount (as CI runs) to make a small filesystem")
    try:
        yield mount_point
    finally:
        subprocess.run([UMOUNT, "-l", str(mount_point)], check=False)


def fill(disk: Path) -> Path:
    """Fill `disk` to the last byte; the filler file, to delete to make room again."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (65536, 4096, 1):  # big writes, then the last scraps
            with contextlib.suppress(OSError):
                while os.write(fd, b"\0" * size):
                    pass
    finally:
        os.close(fd)
    return filler


def fill_after_emptying_the_wal(disk: Path, store: Store) -> Path:
    """fill(disk), the store's WAL emptied first, so that every later write must grow it.

    Otherwise the background checkpoint may have copied the WAL into the database just before:
    SQLite then writes from the start of the WAL file again, and small writes still fit."""
    store._connection().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return fill(disk)


def text(n: int) -> dict[str, str]:
    return {"MessageSid": f"SM{n:032x}", "From": "+15550000000", "Body": BIG}


def test_start_up_refuses_a_read_only_record_naming_the_file(small_disk: Path) -> None:
    path = small_disk / "dialtone.db"
    Store(path).close()
    assert _mount("-o", "remount,ro", str(small_disk)).returncode == 0
    try:
        with pytest.raises(StoreUnavailable) as caught:
            open_store(Settings(database_path=path))
        assert str(path) in str(caught.value)
        assert "\n" not in str(caught.value)
    finally:
        _mount("-o", "remount,rw", str(small_disk))
    open_store(Settings(database_path=path)).close()  # writable again: starts


def test_start_up_refuses_a_record_on_a_full_disk(small_disk: Path) -> None:
    path = small_disk / "dialtone.db"
    Store(path).close()
    filler = fill(small_disk)
    with pytest.raises(StoreUnavailable, match="full") as caught:
        open_store(Settings(database_path=path))
    assert str(path) in str(caught.value)
    filler.unlink()
    open_store(Settings(database_path=path)).close()


def test_a_disk_that_fills_up_while_running_and_is_freed(small_disk: Path) -> None:
    path = small_disk / "dialtone.db"
    with open_store(Settings(database_path=path)) as store:
        store.record_inbound_message(text(0))
        assert isinstance(store, Store)
        filler = fill_after_emptying_the_wal(small_disk, store)
        failed: StoreUnavailable | None = None
        for n in range(1, 60):  # until the WAL must grow and cannot
            try:
                store.record_inbound_message(text(n))
            except StoreUnavailable as exc:
                failed = exc
                break
        assert failed is not None, "the record kept taking writes on a full disk"
        assert str(failed.code).startswith(("SQLITE_FULL", "SQLITE_IOERR"))
        failure = store.health()
        assert failure is not None
        assert str(path) not in failure.reason
        assert "SQLITE_FULL" in failure.reason or "SQLITE_IOERR" in failure.reason
        filler.unlink()
        assert store.health() is None  # recovered by itself
        assert store.record_inbound_message(text(99)).value == "new"
    with Store(path) as reopened:
        assert reopened.message(f"SM{99:032x}") is not None


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this test's own, to stop and start."""
    with own_server() as server:
        yield server


def test_postgresql_unreachable_at_start_is_one_paragraph_without_the_password() -> None:
    with socket_port() as port:
        url = f"postgresql://dialtone:s3cret-pw@127.0.0.1:{port}/dialtone"
        with pytest.raises(StoreUnavailable) as caught:
            open_store(Settings(database_url=url))
    message = str(caught.value)
    assert "s3cret-pw" not in message
    assert f"127.0.0.1:{port}" in message
    assert "\n" not in message
    assert "DATABASE_URL" in message


@pytest.mark.postgres
def test_postgresql_lost_while_running_and_back(own_postgres: PostgresServer) -> None:
    url = own_postgres.fresh_database()
    with PostgresStore(url) as store:
        store.record_inbound_message(text(0))
        own_postgres.stop()
        with pytest.raises(StoreUnavailable):
            store.record_inbound_message(text(1))
        failure = store.health()
        assert failure is not None
        assert failure.reason == "cannot be written: PostgreSQL unreachable"
        own_postgres.start()
        assert store.health() is None  # recovered by itself, same pool
        for n in range(2, 30):  # every pooled connection that died is replaced, none fails
            assert store.record_inbound_message(text(n)).value == "new"
        assert len(store.messages(limit=500)) == 29


@pytest.mark.postgres
def test_writes_that_start_while_one_finds_the_server_gone_wait_little(
    own_postgres: PostgresServer,
) -> None:
    """The first write to meet a dead connection drops the pool's and tries once more; a write
    that started meanwhile waited the full 5 s for a connection (the pool had none), so the
    first webhooks of an outage took 5.5 s. Now every write knows at once."""
    import threading
    import time

    url = own_postgres.fresh_database()
    with PostgresStore(url) as store:
        store.record_inbound_message(text(0))
        own_postgres.stop()
        took: dict[int, float] = {}

        def write(n: int) -> None:
            started = time.monotonic()
            with contextlib.suppress(StoreUnavailable):
                store.record_inbound_message(text(n))
            took[n] = time.monotonic() - started

        writers = [threading.Thread(target=write, args=(n,)) for n in (1, 2)]
        writers[0].start()
        time.sleep(0.1)  # while the first is dropping the dead connections and trying again
        writers[1].start()
        for writer in writers:
            writer.join(30)
        assert max(took.values()) < 3, took


@contextlib.contextmanager
def socket_port() -> Iterator[int]:
    """A loopback port nothing listens on (bound, not listening, for the test's length)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_the_server_refuses_to_start_on_a_read_only_record(
    small_disk: Path, tmp_path: Path
) -> None:
    from tests.support.instances import free_port, server_env

    path = small_disk / "dialtone.db"
    Store(path).close()
    assert _mount("-o", "remount,ro", str(small_disk)).returncode == 0
    try:
        env = server_env(tmp_path, free_port(), DATABASE_PATH=str(path))
        result = subprocess.run(
            [sys.executable, str(REPO / "server.py")],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        _mount("-o", "remount,rw", str(small_disk))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    paragraph = result.stderr.strip().split("\n\n")[-1]
    assert "\n" not in paragraph
    assert str(path) in paragraph


def test_a_sqlite_write_waits_for_its_locks_within_one_deadline(tmp_path: Path) -> None:
    """Found by a reliability attack: a write waited for the store's own lock, then for the
    lock between processes, then SQLite's busy timeout, each up to 5 s: up to 15 s in all,
    Twilio's whole budget. The three now share one deadline."""
    import sqlite3
    import time

    path = tmp_path / "dialtone.db"
    with Store(path, lock_timeout=2.0) as store:
        store.record_inbound_message(text(0))
        other = sqlite3.connect(path, isolation_level=None)  # a sqlite3 shell, say
        other.execute("BEGIN IMMEDIATE")  # holds SQLite's write lock
        with stuck_write(store, longest=1.5):  # another thread of this process, mid-write
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                store.record_inbound_message(text(1))
            took = time.monotonic() - started
        other.execute("ROLLBACK")
        other.close()
        assert took < 2.5, f"waited {took:.1f} s"
        busy = store._connection().execute("PRAGMA busy_timeout").fetchone()[0]
        assert busy == BUSY_TIMEOUT_MS  # put back after the failed write
        assert store.record_inbound_message(text(2)).value == "new"
