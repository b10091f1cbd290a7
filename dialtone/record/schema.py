"""The record's SQLite schema, its ordered migrations, and the order of Twilio's statuses.

The schema version lives in `PRAGMA user_version`: version N means MIGRATIONS[:N] have been
applied. A migration is appended, never edited, once it has shipped.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from dialtone.record.errors import SchemaMismatch, StoreUnavailable, unavailable

BUSY_TIMEOUT_MS = 5000  # how long to wait for another process's write lock
WAL_SIZE_LIMIT = 64 * 1024 * 1024  # the WAL is truncated back to this after a checkpoint

# Version 1: the first schema. Timestamps are UTC ISO 8601 text of fixed width, so they sort.
# `peer` is the other party (From for inbound, To for outbound): conversations group by it.
SCHEMA_V1 = """
CREATE TABLE messages (
    id            INTEGER PRIMARY KEY,
    sid           TEXT NOT NULL UNIQUE,
    direction     TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    from_number   TEXT NOT NULL,
    to_number     TEXT NOT NULL,
    peer          TEXT NOT NULL,
    body          TEXT NOT NULL,
    media         TEXT NOT NULL,  -- JSON list of [url, content_type]
    status        TEXT NOT NULL,
    error_code    INTEGER,
    error_message TEXT,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
CREATE INDEX messages_peer ON messages (peer, id);
CREATE INDEX messages_from ON messages (from_number, id);
CREATE INDEX messages_to ON messages (to_number, id);
CREATE INDEX messages_created ON messages (created_at);

CREATE TABLE calls (
    id          INTEGER PRIMARY KEY,
    sid         TEXT NOT NULL UNIQUE,
    direction   TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    from_number TEXT NOT NULL,
    to_number   TEXT NOT NULL,
    peer        TEXT NOT NULL,
    status      TEXT NOT NULL,
    duration    INTEGER,          -- seconds, from CallDuration
    digits      TEXT NOT NULL,    -- JSON list, one entry per <Gather> answer
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE INDEX calls_peer ON calls (peer, id);
CREATE INDEX calls_from ON calls (from_number, id);
CREATE INDEX calls_to ON calls (to_number, id);
CREATE INDEX calls_created ON calls (created_at);

-- Every webhook delivery and status transition, applied or not. The idempotency key is
-- Twilio's I-Twilio-Idempotency-Token, or one made from the SID and status without it.
CREATE TABLE events (
    id              INTEGER PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    kind            TEXT NOT NULL,
    sid             TEXT NOT NULL,
    status          TEXT,
    applied         INTEGER NOT NULL,  -- 0: kept as history, did not change the row
    payload         TEXT NOT NULL,     -- JSON object: the form or the values recorded
    received_at     TEXT NOT NULL
);
CREATE INDEX events_sid ON events (sid, id);

CREATE TABLE opt_outs (
    number     TEXT PRIMARY KEY,
    opted_out  INTEGER NOT NULL,
    keyword    TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
"""

# Version 2: one row that GET /healthz and start-up write to prove the record takes writes (a
# full disk or a read-only file shows only when something is written).
SCHEMA_V2 = """
CREATE TABLE health (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    checked_at TEXT NOT NULL
);
"""

MIGRATIONS: tuple[str, ...] = (SCHEMA_V1, SCHEMA_V2)

# The record's files hold phone numbers and message bodies: owner only.
FILE_MODE = 0o600
DIRECTORY_MODE = 0o700


def open_connection(path: Path | str, migrations: Sequence[str] = MIGRATIONS) -> sqlite3.Connection:
    """Open (creating the file and its directory) and migrate the database at `path`.

    Autocommit mode (transactions are explicit), WAL, synchronous=NORMAL, and a busy timeout
    for other processes. Failures raise StoreUnavailable naming the file.
    """
    try:
        if isinstance(path, Path):
            make_private(path)
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    except OSError as exc:
        raise StoreUnavailable(
            f"The record at {path} cannot be created: {exc.strerror} ({exc.filename}). "
            "Set DATABASE_PATH to a file in a directory Dialtone can write.",
            path=path,
        ) from exc
    except sqlite3.DatabaseError as exc:
        raise unavailable(exc, path, "opened") from exc
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
        migrate(conn, migrations)
    except BaseException as exc:
        conn.close()
        if isinstance(exc, sqlite3.DatabaseError):
            raise unavailable(exc, path, "opened") from exc
        raise
    return conn


def make_private(path: Path) -> None:
    """Create the directory (0700) and the database file (0600) if missing, and make the
    file, its WAL and SHM 0600 (SQLite gives the WAL and SHM the database file's mode)."""
    if not path.parent.is_dir():
        path.parent.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
        path.parent.chmod(DIRECTORY_MODE)  # mkdir's mode is masked by the umask
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE))
    for name in (path.name, path.name + "-wal", path.name + "-shm"):
        try:
            path.with_name(name).chmod(FILE_MODE)
        except OSError:  # missing, not ours, or a read-only disk: SQLite says what it can do next
            continue


def open_readonly(path: Path, migrations: Sequence[str] = MIGRATIONS) -> sqlite3.Connection:
    """Open an existing database for reading only: no file made, no migration run."""
    if not path.is_file():
        raise StoreUnavailable(f"There is no record at {path} yet.", path=path)
    try:
        conn = sqlite3.connect(
            path.resolve().as_uri() + "?mode=ro",
            uri=True,
            isolation_level=None,
            check_same_thread=False,
        )
    except sqlite3.DatabaseError as exc:
        raise unavailable(exc, path, "opened") from exc
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        version = schema_version(conn)
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise unavailable(exc, path, "read") from exc
    if version != len(migrations):
        conn.close()
        newer = version > len(migrations)
        raise SchemaMismatch(
            f"The record at {path} has schema version {version}, and this Dialtone reads "
            f"version {len(migrations)}. "
            + ("Upgrade Dialtone." if newer else "Run `make migrate` (or `dialtone migrate`)."),
            path=path,
        )
    return conn


def schema_version(conn: sqlite3.Connection) -> int:
    """The database's schema version (0 for a new, empty file)."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, migrations: Sequence[str] = MIGRATIONS) -> int:
    """Apply the pending migrations, each in its own transaction; return the final version.

    `conn` must be in autocommit mode (isolation_level=None). The version is read again inside
    BEGIN IMMEDIATE, so two processes starting together do not both migrate.
    """
    while True:
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = schema_version(conn)
            if version > len(migrations):
                raise SchemaMismatch(
                    f"The database has schema version {version}, but this Dialtone knows only "
                    f"up to {len(migrations)}: it was written by a newer Dialtone. Upgrade "
                    "Dialtone, or point DATABASE_PATH at another file.",
                    path=_database_file(conn),
                )
            if version == len(migrations):
                conn.execute("COMMIT")
                return version
            for statement in _statements(migrations[version]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise


def _database_file(conn: sqlite3.Connection) -> str:
    row = conn.execute("PRAGMA database_list").fetchone()
    return str(row[2]) if row and row[2] else ":memory:"


def _statements(script: str) -> list[str]:
    """Split a migration into statements (executescript would commit the open transaction)."""
    lines = [line.split("--", 1)[0] for line in script.splitlines()]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


# Twilio's statuses in the order they can happen. A status only replaces one of a lower rank,
# so a late `sent` after `delivered` (callbacks can arrive out of order) is kept as an event
# but does not move the message backwards. Equal ranks do not replace each other either: the
# first final status wins. Unknown statuses rank lowest.
MESSAGE_STATUS_RANK: dict[str, int] = {
    "accepted": 1,
    "scheduled": 1,
    "receiving": 1,
    "queued": 2,
    "sending": 3,
    "sent": 4,
    "delivered": 5,
    "undelivered": 5,
    "failed": 5,
    "received": 5,
    "canceled": 5,
    "partially_delivered": 5,
    "read": 6,
}

CALL_STATUS_RANK: dict[str, int] = {
    "queued": 1,
    "initiated": 2,
    "ringing": 3,
    "in-progress": 4,
    "completed": 5,
    "busy": 5,
    "failed": 5,
    "no-answer": 5,
    "canceled": 5,
}


def message_status_rank(status: str) -> int:
    """Where a MessageStatus sits in a message's life (0 for a status Dialtone does not know)."""
    return MESSAGE_STATUS_RANK.get(status, 0)


def call_status_rank(status: str) -> int:
    """Where a CallStatus sits in a call's life (0 for a status Dialtone does not know)."""
    return CALL_STATUS_RANK.get(status, 0)
