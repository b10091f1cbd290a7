"""The record's SQL, one method per statement. The caller (a RecordStore) holds the lock and the
transaction; the SQL strings are constants, so the driver's statement cache prepares each once.

The statements are written for SQLite (`?` and `:name` parameters); `PgQueries` in
dialtone.record.pg_queries runs the same ones in PostgreSQL's dialect. Both DB-API connections
answer `execute(sql, params)` with a cursor, so the methods are shared.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from dialtone.record.forms import NewCall, NewMessage
from dialtone.record.rows import (
    CALL_COLUMNS,
    EVENT_COLUMNS,
    MESSAGE_COLUMNS,
    OPT_OUT_COLUMNS,
    Call,
    Conversation,
    Event,
    Message,
    OptOut,
    Outcome,
    format_timestamp,
    from_row,
    parse_timestamp,
)

DEFAULT_PAGE = 50
MAX_PAGE = 500


@dataclass(frozen=True)
class State:
    """The part of a row a new status is compared with."""

    id: int
    status: str


@dataclass(frozen=True)
class Filters:
    """Filters and a cursor for listing messages or calls."""

    number: str | None = None
    since: datetime | None = None
    status: str | None = None
    direction: str | None = None
    limit: int = DEFAULT_PAGE
    before: int | None = None
    after: int | None = None

    def where(self, mark: str = "?") -> tuple[str, list[Any]]:
        """A WHERE clause built only from fixed fragments, and its parameters (`mark` is the
        driver's placeholder)."""
        clauses, params = ["1 = 1"], list[Any]()
        if self.number:
            clauses.append(f"(from_number = {mark} OR to_number = {mark})")
            params += [self.number, self.number]
        if self.since:
            clauses.append(f"created_at >= {mark}")
            params.append(format_timestamp(self.since))
        if self.status:
            clauses.append(f"status = {mark}")
            params.append(self.status)
        if self.direction:
            clauses.append(f"direction = {mark}")
            params.append(self.direction)
        if self.before is not None:
            clauses.append(f"id < {mark}")
            params.append(self.before)
        if self.after is not None:
            clauses.append(f"id > {mark}")
            params.append(self.after)
        params.append(max(1, min(self.limit, MAX_PAGE)))
        return " AND ".join(clauses), params


# The message's status and the sender's opt-out in one statement.
INBOUND_STATE = """
SELECT (SELECT status FROM messages WHERE sid = ?),
       (SELECT opted_out FROM opt_outs WHERE number = ?)
"""
STATE_MESSAGE = "SELECT id, status FROM messages WHERE sid = ?"
STATE_CALL = "SELECT id, status FROM calls WHERE sid = ?"
# A delivery claims its idempotency key first: the unique key makes a second delivery of the
# same one (a retry, or the same webhook at another instance at the same moment) write nothing.
CLAIM_EVENT = """
INSERT INTO events (idempotency_key, kind, sid, status, applied, payload, received_at)
VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (idempotency_key) DO NOTHING
"""
# Events are claimed as applied; a delivery that changed nothing says so once it knows.
SETTLE_EVENT = "UPDATE events SET applied = ? WHERE idempotency_key = ?"
INSERT_MESSAGE = """
INSERT INTO messages (sid, direction, from_number, to_number, peer, body, media, status,
                      error_code, error_message, created_at, updated_at)
VALUES (:sid, :direction, :from_number, :to_number, :peer, :body, :media, :status,
        :error_code, :error_message, :now, :now)
ON CONFLICT (sid) DO NOTHING
"""
# Blanks are filled from whichever delivery knows them (a status callback can arrive before the
# API call that sent the message is recorded); the status only moves when told to.
UPDATE_MESSAGE = """
UPDATE messages SET
    from_number = CASE WHEN from_number = '' THEN :from_number ELSE from_number END,
    to_number = CASE WHEN to_number = '' THEN :to_number ELSE to_number END,
    peer = CASE WHEN peer = '' THEN :peer ELSE peer END,
    body = CASE WHEN body = '' THEN :body ELSE body END,
    media = CASE WHEN media = '[]' THEN :media ELSE media END,
    status = CASE WHEN :apply THEN :status ELSE status END,
    error_code = CASE WHEN :apply THEN coalesce(:error_code, error_code) ELSE error_code END,
    error_message = CASE WHEN :apply THEN coalesce(:error_message, error_message)
                         ELSE error_message END,
    updated_at = :now
WHERE sid = :sid
"""
INSERT_CALL = """
INSERT INTO calls (sid, direction, from_number, to_number, peer, status, duration, digits,
                   created_at, updated_at)
VALUES (:sid, :direction, :from_number, :to_number, :peer, :status, :duration, '[]', :now, :now)
ON CONFLICT (sid) DO NOTHING
"""
UPDATE_CALL = """
UPDATE calls SET
    from_number = CASE WHEN from_number = '' THEN :from_number ELSE from_number END,
    to_number = CASE WHEN to_number = '' THEN :to_number ELSE to_number END,
    peer = CASE WHEN peer = '' THEN :peer ELSE peer END,
    status = CASE WHEN :apply THEN :status ELSE status END,
    duration = coalesce(:duration, duration),
    updated_at = :now
WHERE sid = :sid
"""
ADD_DIGITS = """
UPDATE calls SET digits = json_insert(digits, '$[#]', ?), updated_at = ? WHERE sid = ?
"""
SET_OPT_OUT = """
INSERT INTO opt_outs (number, opted_out, keyword, created_at, updated_at) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (number) DO UPDATE SET
    opted_out = excluded.opted_out, keyword = excluded.keyword, updated_at = excluded.updated_at
"""
# An opt-out change kept while the record was down (dialtone.record.spool): applied only over
# an older state, so a later START or STOP recorded meanwhile stands.
SET_OPT_OUT_IF_NEWER = SET_OPT_OUT.rstrip() + "\nWHERE opt_outs.updated_at < excluded.updated_at\n"
CONVERSATION_PEERS = """
SELECT peer, max(created_at), count(*) FILTER (WHERE kind = 'm'),
       count(*) FILTER (WHERE kind = 'c') FROM (
    SELECT peer, created_at, 'm' AS kind FROM messages WHERE :number IS NULL OR peer = :number
    UNION ALL
    SELECT peer, created_at, 'c' AS kind FROM calls WHERE :number IS NULL OR peer = :number
) AS activity GROUP BY peer ORDER BY 2 DESC, peer LIMIT :limit
"""


class Queries:
    """Statements over one connection; no locking or transactions of its own."""

    # The SQL each method runs; PgQueries replaces these with PostgreSQL's spelling.
    sql: ClassVar[dict[str, str]] = {
        "inbound_state": INBOUND_STATE,
        "state_message": STATE_MESSAGE,
        "state_call": STATE_CALL,
        "claim": CLAIM_EVENT,
        "settle": SETTLE_EVENT,
        "insert_message": INSERT_MESSAGE,
        "update_message": UPDATE_MESSAGE,
        "insert_call": INSERT_CALL,
        "update_call": UPDATE_CALL,
        "add_digits": ADD_DIGITS,
        "set_opt_out": SET_OPT_OUT,
        "set_opt_out_if_newer": SET_OPT_OUT_IF_NEWER,
        "is_opted_out": "SELECT opted_out FROM opt_outs WHERE number = ?",
        "conversation_peers": CONVERSATION_PEERS,
        "message": f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE sid = ?",  # noqa: S608
        "call": f"SELECT {CALL_COLUMNS} FROM calls WHERE sid = ?",  # noqa: S608
        "events": f"SELECT {EVENT_COLUMNS} FROM events WHERE sid = ? ORDER BY id",  # noqa: S608
        "opt_outs": f"SELECT {OPT_OUT_COLUMNS} FROM opt_outs ORDER BY updated_at DESC, number",  # noqa: S608
        "messages": f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE {{where}} ORDER BY id DESC LIMIT ?",  # noqa: S608
        "calls": f"SELECT {CALL_COLUMNS} FROM calls WHERE {{where}} ORDER BY id DESC LIMIT ?",  # noqa: S608
        "latest_messages": f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE peer = ? ORDER BY id DESC LIMIT ?",  # noqa: S608
        "latest_calls": f"SELECT {CALL_COLUMNS} FROM calls WHERE peer = ? ORDER BY id DESC LIMIT ?",  # noqa: S608
    }
    placeholder = "?"

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    # --- writes --------------------------------------------------------------------------

    def claim(
        self,
        key: str,
        kind: str,
        sid: str,
        status: str | None,
        payload: dict[str, Any],
        now: str,
    ) -> bool:
        """Record this delivery's event; False (nothing written) when its key is already there."""
        text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        cursor = self.conn.execute(self.sql["claim"], (key, kind, sid, status, True, text, now))
        return cursor.rowcount == 1

    def settle(self, key: str, outcome: Outcome) -> None:
        """Mark the claimed event as history only when the delivery changed nothing."""
        if outcome not in (Outcome.NEW, Outcome.UPDATED):
            self.conn.execute(self.sql["settle"], (False, key))

    def inbound_state(self, sid: str, sender: str) -> tuple[str | None, bool]:
        """(the message's status or None, the sender opted out)."""
        status, opted_out = self.conn.execute(self.sql["inbound_state"], (sid, sender)).fetchone()
        return status, bool(opted_out)

    def state(self, new: NewMessage | NewCall) -> State | None:
        """The id and status of the row `new` is for, or None when there is none yet."""
        sql = self.sql["state_message" if isinstance(new, NewMessage) else "state_call"]
        row = self.conn.execute(sql, (new.sid,)).fetchone()
        return State(*row) if row else None

    def insert(self, new: NewMessage | NewCall, now: str) -> bool:
        """Insert the row; False when one with its SID is already there (nothing written)."""
        if isinstance(new, NewMessage):
            cursor = self.conn.execute(self.sql["insert_message"], message_params(new, now))
        else:
            cursor = self.conn.execute(self.sql["insert_call"], call_params(new, now))
        return cursor.rowcount == 1

    def update(self, new: NewMessage | NewCall, now: str, *, apply_status: bool) -> None:
        """Fill the row's blanks from `new`; move its status too when `apply_status`."""
        if isinstance(new, NewMessage):
            params = message_params(new, now) | {"apply": apply_status}
            self.conn.execute(self.sql["update_message"], params)
        else:
            self.conn.execute(
                self.sql["update_call"], call_params(new, now) | {"apply": apply_status}
            )

    def add_digits(self, sid: str, digits: str, now: str) -> None:
        self.conn.execute(self.sql["add_digits"], (digits, now, sid))

    def set_opt_out(
        self, number: str, opted_out: bool, keyword: str | None, now: str, *, if_newer: bool = False
    ) -> bool:
        """True when written; False when `if_newer` and the row had changed since `now`."""
        statement = self.sql["set_opt_out_if_newer" if if_newer else "set_opt_out"]
        return self.conn.execute(statement, (number, opted_out, keyword, now, now)).rowcount > 0

    # --- reads ---------------------------------------------------------------------------

    def is_opted_out(self, number: str) -> bool:
        row = self.conn.execute(self.sql["is_opted_out"], (number,)).fetchone()
        return bool(row and row[0])

    def message(self, sid: str) -> Message | None:
        row = self.conn.execute(self.sql["message"], (sid,)).fetchone()
        return from_row(Message, row) if row else None

    def call(self, sid: str) -> Call | None:
        row = self.conn.execute(self.sql["call"], (sid,)).fetchone()
        return from_row(Call, row) if row else None

    def messages(self, filters: Filters) -> list[Message]:
        where, params = filters.where(self.placeholder)
        sql = self.sql["messages"].format(where=where)
        return [from_row(Message, row) for row in self.conn.execute(sql, params)]

    def calls(self, filters: Filters) -> list[Call]:
        where, params = filters.where(self.placeholder)
        sql = self.sql["calls"].format(where=where)
        return [from_row(Call, row) for row in self.conn.execute(sql, params)]

    def events(self, sid: str) -> list[Event]:
        return [from_row(Event, row) for row in self.conn.execute(self.sql["events"], (sid,))]

    def opt_outs(self) -> list[OptOut]:
        return [from_row(OptOut, row) for row in self.conn.execute(self.sql["opt_outs"])]

    def conversations(self, limit: int, per_number: int, number: str | None) -> list[Conversation]:
        params = {"number": number, "limit": max(1, min(limit, MAX_PAGE))}
        per = max(1, min(per_number, MAX_PAGE))
        result = []
        for peer, last_at, message_count, call_count in self.conn.execute(
            self.sql["conversation_peers"], params
        ).fetchall():
            messages = self._latest("latest_messages", peer, per)
            calls = self._latest("latest_calls", peer, per)
            result.append(
                Conversation(
                    number=peer,
                    last_at=parse_timestamp(last_at),
                    message_count=message_count,
                    call_count=call_count,
                    opted_out=self.is_opted_out(peer),
                    messages=tuple(from_row(Message, row) for row in messages),
                    calls=tuple(from_row(Call, row) for row in calls),
                )
            )
        return result

    def _latest(self, name: str, peer: str, limit: int) -> list[Any]:
        rows = self.conn.execute(self.sql[name], (peer, limit)).fetchall()
        return rows[::-1]


def message_params(new: NewMessage, now: str) -> dict[str, Any]:
    """The named parameters of INSERT_MESSAGE and UPDATE_MESSAGE."""
    return {
        "sid": new.sid,
        "direction": new.direction,
        "from_number": new.from_number,
        "to_number": new.to_number,
        "peer": new.peer,
        "body": new.body,
        "media": json.dumps(new.media, ensure_ascii=False) if new.media else "[]",
        "status": new.status,
        "error_code": new.error_code,
        "error_message": new.error_message,
        "now": now,
    }


def call_params(new: NewCall, now: str) -> dict[str, Any]:
    """The named parameters of INSERT_CALL and UPDATE_CALL."""
    return {
        "sid": new.sid,
        "direction": new.direction,
        "from_number": new.from_number,
        "to_number": new.to_number,
        "peer": new.peer,
        "status": new.status,
        "duration": new.duration,
        "now": now,
    }
