"""A real PostgreSQL server for the tests, started by the test run in a temporary directory.

Debian's `postgresql` package provides initdb and pg_ctl (under /usr/lib/postgresql/<version>/bin).
PostgreSQL refuses to run as root, so as root (CI) the server runs as the `postgres` user the
package creates, through runuser. Without the package the PostgreSQL tests skip with one line
saying how to install it. (pytest-postgresql starts its server as the current user, which
PostgreSQL refuses under root, so this small fixture does the same job here.)

One server per test session; every test gets a database of its own (`fresh_database`).
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from dialtone.record.base import RecordStore
from dialtone.record.store import Store

INSTALL_HINT = (
    "PostgreSQL is not installed: apt-get install -y postgresql (Debian) to run the "
    "PostgreSQL tests"
)


def postgres_bin() -> Path | None:
    """The directory holding initdb and pg_ctl (the newest installed version), or None."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4])
    )
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    return Path(on_path).resolve().parent if on_path else None


class PostgresServer:
    """One PostgreSQL cluster in a temporary directory, on a free loopback port."""

    def __init__(self, bindir: Path, *, durable: bool = False) -> None:
        """`durable`: PostgreSQL's own defaults (fsync, synchronous commit), as a real server
        runs; else the test suite's faster settings (nothing here must survive a power cut)."""
        self.bindir = bindir
        self.durable = durable
        self.root = Path(tempfile.mkdtemp(prefix="dialtone-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.user = "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
        self._names = itertools.count(1)
        if os.geteuid() == 0:
            os.chown(self.root, pwd.getpwnam("postgres").pw_uid, -1)

    def _run(self, *args: str, timeout: float = 60) -> None:
        command = [str(self.bindir / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, check=False, cwd=self.root
        )
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed: {result.stdout}{result.stderr}")

    def init(self) -> PostgresServer:
        """initdb with trust authentication on loopback only (a throwaway test cluster)."""
        self._run(
            "initdb", "-D", str(self.data), "-U", self.user, "-A", "trust", "-E", "UTF8",
            "--no-sync", "--no-instructions",
        )  # fmt: skip
        return self

    def start(self) -> None:
        """Start (or restart) the server; returns once it accepts connections."""
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        options += " -c max_connections=200"
        if not self.durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l",
                  str(self.root / "server.log"), "-w", "-t", "60", "start")  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """Stop the server at once (open connections are cut, as in an outage); "immediate":
        as a crash would, without writing out the WAL buffers or a shutdown checkpoint."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def url(self, dbname: str = "postgres") -> str:
        """A postgresql:// URL for a database of this server."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{dbname}"

    def fresh_database(self) -> str:
        """Create an empty database; its URL."""
        import psycopg

        name = f"test_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def destroy(self) -> None:
        """Stop the server and delete its directory."""
        with contextlib.suppress(RuntimeError):  # already stopped
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require_postgres() -> Path:
    """initdb's directory; the calling test skips (one reason, one line) when there is none."""
    bindir = postgres_bin()
    if bindir is None:
        pytest.skip(INSTALL_HINT)
    return bindir


@contextmanager
def own_server() -> Iterator[PostgresServer]:
    """A server of the test's own (to stop and start), destroyed afterwards."""
    server = PostgresServer(require_postgres()).init()
    server.start()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The session's PostgreSQL server; the tests that use it skip when it is not installed."""
    server = PostgresServer(require_postgres()).init()
    server.start()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """The URL of an empty database of its own for this test."""
    return postgres_server.fresh_database()


BACKENDS = ["sqlite", "postgresql"]


@contextmanager
def open_backend(
    request: pytest.FixtureRequest, kind: str, db_path: Path, **options: Any
) -> Iterator[RecordStore]:
    """A fresh record of `kind` ("sqlite" at db_path, or "postgresql": a database of its own)."""
    if kind == "sqlite":
        with Store(db_path, **options) as store:
            yield store
        return
    from dialtone.record.postgres import PostgresStore

    url = request.getfixturevalue("postgres_url")
    with PostgresStore(url, **options) as pg_store:
        yield pg_store


def count_rows(store: RecordStore, table: str) -> int:
    """How many rows `table` of the record holds, whichever backend keeps it."""
    assert table.isidentifier()
    sql = f"SELECT count(*) FROM {table}"  # noqa: S608 (an identifier, checked above)
    return int(store._read(lambda q: q.conn.execute(sql).fetchone()[0]))


def needs_postgres(item: pytest.Item) -> bool:
    """True for a test that runs PostgreSQL (its fixtures, its backend parameter, or marked)."""
    callspec = getattr(item, "callspec", None)
    return (
        bool({"postgres_url", "postgres_server"} & set(getattr(item, "fixturenames", ())))
        or (callspec is not None and "postgresql" in callspec.params.values())
        or item.get_closest_marker("postgres") is not None
    )


def deselect_without_postgres(config: pytest.Config, items: list[pytest.Item]) -> int:
    """Without PostgreSQL, take its tests out of the run (the summary says so in one line);
    how many were taken out."""
    if postgres_bin() is not None:
        return 0
    skipped = [item for item in items if needs_postgres(item)]
    if skipped:
        config.hook.pytest_deselected(items=skipped)
        items[:] = [item for item in items if not needs_postgres(item)]
    return len(skipped)
