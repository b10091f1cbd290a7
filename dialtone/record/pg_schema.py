"""The record's PostgreSQL schema, its ordered migrations, and its dialect of the record's SQL.

The applied version lives in `dialtone_schema.version`: version N means PG_MIGRATIONS[:N] have
been applied. Every instance migrates at start, under a session advisory lock: the first to get
there applies what is pending while the others wait, then find nothing to do. A migration is
appended, never edited, once it has shipped.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, ClassVar

from dialtone.record.errors import SchemaMismatch
from dialtone.record.queries import Queries

# Any constant both sides agree on: pg_advisory_lock(MIGRATION_LOCK) serializes migrations.
MIGRATION_LOCK = 0x6469616C746F6E65  # "dialtone"

# Version 1: the SQLite schema's version 1, in PostgreSQL's types. Timestamps stay fixed-width
# UTC text, so both backends hand back the same rows and sort them the same way.
PG_V1 = """
CREATE TABLE messages (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sid           TEXT NOT NULL UNIQUE,
    direction     TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    from_number   TEXT NOT NULL,
    to_number     TEXT NOT NULL,
    peer          TEXT NOT NULL,
    body          TEXT NOT NULL,
    media         TEXT NOT NULL,
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
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sid         TEXT NOT NULL UNIQUE,
    direction   TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    from_number TEXT NOT NULL,
    to_number   TEXT NOT NULL,
    peer        TEXT NOT NULL,
    status      TEXT NOT NULL,
    duration    INTEGER,
    digits      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE INDEX calls_peer ON calls (peer, id);
CREATE INDEX calls_from ON calls (from_number, id);
CREATE INDEX calls_to ON calls (to_number, id);
CREATE INDEX calls_created ON calls (created_at);

CREATE TABLE events (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    kind            TEXT NOT NULL,
    sid             TEXT NOT NULL,
    status          TEXT,
    applied         BOOLEAN NOT NULL,
    payload         TEXT NOT NULL,
    received_at     TEXT NOT NULL
);
CREATE INDEX events_sid ON events (sid, id);

CREATE TABLE opt_outs (
    number     TEXT PRIMARY KEY,
    opted_out  BOOLEAN NOT NULL,
    keyword    TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
"""

# Version 2: the health probe's row (as in SQLite's version 2).
PG_V2 = """
CREATE TABLE health (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    checked_at TEXT NOT NULL
);
"""

# Version 3: rate-limit hits shared by every instance (dialtone.record.limits). `at` is the
# database's clock in seconds, so instances with skewed clocks still agree.
PG_V3 = """
CREATE TABLE rate_hits (
    scope TEXT NOT NULL,
    key   TEXT NOT NULL,
    at    DOUBLE PRECISION NOT NULL
);
CREATE INDEX rate_hits_key ON rate_hits (scope, key, at);
CREATE INDEX rate_hits_at ON rate_hits (at);
"""

PG_MIGRATIONS: tuple[str, ...] = (PG_V1, PG_V2, PG_V3)

VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS dialtone_schema (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
)
"""


def migrate(conn: Any, where: str, migrations: Sequence[str] = PG_MIGRATIONS) -> int:
    """Apply the pending migrations on `conn` (autocommit), each in its own transaction, under
    the migration advisory lock; return the final version."""
    current = schema_version(conn)
    if current == len(migrations):
        return current  # nothing to do: no lock, and no CREATE (a role without it may run)
    if current > len(migrations):
        raise newer_schema(where, current, len(migrations))
    conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
    try:
        conn.execute(VERSION_TABLE)
        while True:
            with conn.transaction():
                row = conn.execute("SELECT version FROM dialtone_schema FOR UPDATE").fetchone()
                version = row[0] if row else 0
                if version > len(migrations):
                    raise newer_schema(where, version, len(migrations))
                if version == len(migrations):
                    return version
                conn.execute(migrations[version])
                conn.execute(
                    "INSERT INTO dialtone_schema (id, version) VALUES (1, %s) "
                    "ON CONFLICT (id) DO UPDATE SET version = excluded.version",
                    (version + 1,),
                )
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))


def newer_schema(where: str, version: int, known: int) -> SchemaMismatch:
    """The record at `where` was migrated by a newer Dialtone than this one (knows `known`)."""
    return SchemaMismatch(
        f"The record in {where} has schema version {version}, but this Dialtone knows only up "
        f"to {known}: it was written by a newer Dialtone. Upgrade Dialtone, or point "
        "DATABASE_URL at another database.",
        path=where,
    )


def schema_version(conn: Any) -> int:
    """The database's schema version (0 before the first migration)."""
    exists = conn.execute("SELECT to_regclass('dialtone_schema') IS NOT NULL").fetchone()[0]
    if not exists:
        return 0
    row = conn.execute("SELECT version FROM dialtone_schema").fetchone()
    return int(row[0]) if row else 0


# An inbound message in one statement (one round trip, its own transaction): the row first, so
# a SID already recorded (whatever its token) writes nothing at all; the event (claiming the
# idempotency key) only for a new row; the opt-out only for a claimed delivery. The opt-out
# read sees the database as it was before the statement.
RECEIVE_MESSAGE = """
WITH ins AS (
    INSERT INTO messages (sid, direction, from_number, to_number, peer, body, media, status,
                          error_code, error_message, created_at, updated_at)
    VALUES (%(sid)s, %(direction)s, %(from_number)s, %(to_number)s, %(peer)s, %(body)s,
            %(media)s, %(status)s, %(error_code)s, %(error_message)s, %(now)s, %(now)s)
    ON CONFLICT (sid) DO NOTHING
    RETURNING id
), claim AS (
    INSERT INTO events (idempotency_key, kind, sid, status, applied, payload, received_at)
    SELECT %(key)s, 'message', %(sid)s, %(status)s, true, %(payload)s, %(now)s FROM ins
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING id
), opt AS (
    INSERT INTO opt_outs (number, opted_out, keyword, created_at, updated_at)
    SELECT %(from_number)s, %(opted_out)s, %(keyword)s, %(now)s, %(now)s FROM claim
    WHERE %(set_opt_out)s
    ON CONFLICT (number) DO UPDATE SET
        opted_out = excluded.opted_out, keyword = excluded.keyword,
        updated_at = excluded.updated_at
)
SELECT (SELECT id FROM ins), EXISTS (SELECT 1 FROM claim),
       coalesce((SELECT opted_out FROM opt_outs WHERE number = %(from_number)s), false)
"""


def to_pg(sql: str) -> str:
    """SQLite's `?` and `:name` parameters as psycopg's `%s` and `%(name)s`."""
    sql = re.sub(r"(?<![:\w]):(\w+)", r"%(\1)s", sql)
    return sql.replace("?", "%s")


class PgQueries(Queries):
    """The record's statements in PostgreSQL's dialect, over one psycopg connection."""

    sql: ClassVar[dict[str, str]] = {name: to_pg(text) for name, text in Queries.sql.items()} | {
        # The row is locked until the transaction ends, so the rank comparison and the
        # conditional UPDATE that follows cannot interleave with another instance's.
        "state_message": "SELECT id, status FROM messages WHERE sid = %s FOR UPDATE",
        "state_call": "SELECT id, status FROM calls WHERE sid = %s FOR UPDATE",
        "add_digits": "UPDATE calls SET digits = (digits::jsonb || jsonb_build_array(%s::text))"
        "::text, updated_at = %s WHERE sid = %s",
        "conversation_peers": to_pg(
            Queries.sql["conversation_peers"].replace(":number IS NULL", ":number::text IS NULL")
        ),
    }
    placeholder = "%s"
