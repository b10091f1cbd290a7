"""The record's SQL, one method per statement. The caller (Store) holds the lock and the
transaction; the SQL strings are constants, so sqlite3's statement cache prepares each once.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from typing import Any

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

    def where(self) -> tuple[str, list[Any]]:
        """A WHERE clause built only from fixed fragments, and its parameters."""
        clauses, params = ["1 = 1"], list[Any]()
        if self.number:
            clauses.append("(from_number = ? OR to_number = ?)")
            params += [self.number, self.number]
        if self.since:
            clauses.append("created_at >= ?")
            params.append(format_timestamp(self.since))
        if self.status:
            clauses.append("status = ?")
            params.append(self.status)
        if self.direction:
            clauses.append("direction = ?")
            params.append(self.direction)
        if self.before is not None:
            clauses.append("id < ?")
            params.append(self.before)
        if self.after is not None:
            clauses.append("id > ?")
            params.append(self.after)
        params.append(max(1, min(self.limit, MAX_PAGE)))
        return " AND ".join(clauses), params


# The duplicate check, the message's status and the sender's opt-out in one statement.
INBOUND_STATE = """
SELECT EXISTS (SELECT 1 FROM events WHERE idempotency_key = ?),
       (SELECT status FROM messages WHERE sid = ?),
       coalesce((SELECT opted_out FROM opt_outs WHERE number = ?), 0)
"""
STATE_MESSAGE = "SELECT id, status FROM messages WHERE sid = ?"
STATE_CALL = "SELECT id, status FROM calls WHERE sid = ?"
INSERT_MESSAGE = """
INSERT INTO messages (sid, direction, from_number, to_number, peer, body, media, status,
                      error_code, error_message, created_at, updated_at)
VALUES (:sid, :direction, :from_number, :to_number, :peer, :body, :media, :status,
        :error_code, :error_message, :now, :now)
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
INSERT_EVENT = """
INSERT INTO events (idempotency_key, kind, sid, status, applied, payload, received_at)
VALUES (?, ?, ?, ?, ?, ?, ?)
"""
SET_OPT_OUT = """
INSERT INTO opt_outs (number, opted_out, keyword, created_at, updated_at) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (number) DO UPDATE SET
    opted_out = excluded.opted_out, keyword = excluded.keyword, updated_at = excluded.updated_at
"""
CONVERSATION_PEERS = """
SELECT peer, max(created_at), sum(kind = 'm'), sum(kind = 'c') FROM (
    SELECT peer, created_at, 'm' AS kind FROM messages WHERE :number IS NULL OR peer = :number
    UNION ALL
    SELECT peer, created_at, 'c' AS kind FROM calls WHERE :number IS NULL OR peer = :number
) GROUP BY peer ORDER BY 2 DESC, peer LIMIT :limit
"""


class Queries:
    """Statements over one connection; no locking or transactions of its own."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    # --- writes --------------------------------------------------------------------------

    def seen(self, key: str) -> bool:
        """True when a delivery with this idempotency key is already recorded."""
        row = self.conn.execute("SELECT 1 FROM events WHERE idempotency_key = ?", (key,))
        return row.fetchone() is not None

    def inbound_state(self, key: str, sid: str, sender: str) -> tuple[bool, str | None, bool]:
        """(delivery seen before, the message's status or None, the sender opted out)."""
        seen, status, opted_out = self.conn.execute(INBOUND_STATE, (key, sid, sender)).fetchone()
        return bool(seen), status, bool(opted_out)

    def add_event(
        self,
        key: str,
        kind: str,
        sid: str,
        status: str | None,
        outcome: Outcome,
        payload: dict[str, Any],
        now: str,
    ) -> None:
        applied = outcome in (Outcome.NEW, Outcome.UPDATED)
        text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        self.conn.execute(INSERT_EVENT, (key, kind, sid, status, applied, text, now))

    def state(self, new: NewMessage | NewCall) -> State | None:
        """The id and status of the row `new` is for, or None when there is none yet."""
        sql = STATE_MESSAGE if isinstance(new, NewMessage) else STATE_CALL
        row = self.conn.execute(sql, (new.sid,)).fetchone()
        return State(*row) if row else None

    def insert(self, new: NewMessage | NewCall, now: str) -> None:
        if isinstance(new, NewMessage):
            self.conn.execute(INSERT_MESSAGE, _message_params(new, now))
        else:
            self.conn.execute(INSERT_CALL, _call_params(new, now))

    def update(self, new: NewMessage | NewCall, now: str, *, apply_status: bool) -> None:
        """Fill the row's blanks from `new`; move its status too when `apply_status`."""
        if isinstance(new, NewMessage):
            self.conn.execute(UPDATE_MESSAGE, _message_params(new, now) | {"apply": apply_status})
        else:
            self.conn.execute(UPDATE_CALL, _call_params(new, now) | {"apply": apply_status})

    def add_digits(self, sid: str, digits: str, now: str) -> None:
        self.conn.execute(ADD_DIGITS, (digits, now, sid))

    def set_opt_out(self, number: str, opted_out: bool, keyword: str | None, now: str) -> None:
        self.conn.execute(SET_OPT_OUT, (number, opted_out, keyword, now, now))

    # --- reads ---------------------------------------------------------------------------

    def is_opted_out(self, number: str) -> bool:
        row = self.conn.execute(
            "SELECT opted_out FROM opt_outs WHERE number = ?", (number,)
        ).fetchone()
        return bool(row and row[0])

    def message(self, sid: str) -> Message | None:
        sql = f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE sid = ?"  # noqa: S608 (constants)
        row = self.conn.execute(sql, (sid,)).fetchone()
        return from_row(Message, row) if row else None

    def call(self, sid: str) -> Call | None:
        sql = f"SELECT {CALL_COLUMNS} FROM calls WHERE sid = ?"  # noqa: S608 (constants)
        row = self.conn.execute(sql, (sid,)).fetchone()
        return from_row(Call, row) if row else None

    def messages(self, filters: Filters) -> list[Message]:
        where, params = filters.where()
        sql = f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE {where} ORDER BY id DESC LIMIT ?"  # noqa: S608 (fixed fragments)
        return [from_row(Message, row) for row in self.conn.execute(sql, params)]

    def calls(self, filters: Filters) -> list[Call]:
        where, params = filters.where()
        sql = f"SELECT {CALL_COLUMNS} FROM calls WHERE {where} ORDER BY id DESC LIMIT ?"  # noqa: S608 (fixed fragments)
        return [from_row(Call, row) for row in self.conn.execute(sql, params)]

    def events(self, sid: str) -> list[Event]:
        sql = f"SELECT {EVENT_COLUMNS} FROM events WHERE sid = ? ORDER BY id"  # noqa: S608 (constants)
        return [from_row(Event, row) for row in self.conn.execute(sql, (sid,))]

    def opt_outs(self) -> list[OptOut]:
        sql = f"SELECT {OPT_OUT_COLUMNS} FROM opt_outs ORDER BY updated_at DESC, number"  # noqa: S608 (constants)
        return [from_row(OptOut, row) for row in self.conn.execute(sql)]

    def conversations(self, limit: int, per_number: int, number: str | None) -> list[Conversation]:
        params = {"number": number, "limit": max(1, min(limit, MAX_PAGE))}
        per = max(1, min(per_number, MAX_PAGE))
        result = []
        for peer, last_at, message_count, call_count in self.conn.execute(
            CONVERSATION_PEERS, params
        ).fetchall():
            messages = self._latest(f"SELECT {MESSAGE_COLUMNS} FROM messages", peer, per)  # noqa: S608
            calls = self._latest(f"SELECT {CALL_COLUMNS} FROM calls", peer, per)  # noqa: S608
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

    def _latest(self, select: str, peer: str, limit: int) -> list[Any]:
        rows = self.conn.execute(
            f"{select} WHERE peer = ? ORDER BY id DESC LIMIT ?", (peer, limit)
        ).fetchall()
        return rows[::-1]


def _message_params(new: NewMessage, now: str) -> dict[str, Any]:
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


def _call_params(new: NewCall, now: str) -> dict[str, Any]:
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
