"""What the record hands back: one frozen dataclass per kind of row, and the timestamp format."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

# Fixed-width UTC text: sorts like the instants it names, and reads well in the sqlite3 shell.
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def format_timestamp(moment: datetime) -> str:
    """`moment` as the record stores it (a naive datetime is taken to be UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime(TIMESTAMP_FORMAT)


def parse_timestamp(text: str) -> datetime:
    """A stored timestamp back as an aware UTC datetime."""
    return datetime.strptime(text, TIMESTAMP_FORMAT).replace(tzinfo=UTC)


class Outcome(StrEnum):
    """What recording one webhook delivery or status did."""

    NEW = "new"  # the first time this SID was seen: a row was created
    UPDATED = "updated"  # the status moved forward
    STALE = "stale"  # kept as an event; the row already had a later (or final) status
    DUPLICATE = "duplicate"  # this delivery was recorded before: nothing was written


@dataclass(frozen=True)
class Media:
    """One attachment of an MMS: its URL at Twilio and its content type."""

    url: str
    content_type: str


@dataclass(frozen=True)
class Message:
    """An inbound or outbound message as last recorded."""

    id: int  # insertion order; the paging cursor
    sid: str
    direction: str  # "inbound" or "outbound"
    from_number: str
    to_number: str
    peer: str  # the other party: from_number for inbound, to_number for outbound
    body: str
    media: tuple[Media, ...]
    status: str
    error_code: int | None
    error_message: str | None
    created_at: datetime
    updated_at: datetime

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (timestamps as ISO 8601 UTC text)."""
        return {
            "id": self.id,
            "sid": self.sid,
            "direction": self.direction,
            "from": self.from_number,
            "to": self.to_number,
            "body": self.body,
            "media": [{"url": m.url, "content_type": m.content_type} for m in self.media],
            "status": self.status,
            "error_code": self.error_code,
            "error_message": self.error_message,
            "created_at": format_timestamp(self.created_at),
            "updated_at": format_timestamp(self.updated_at),
        }


@dataclass(frozen=True)
class Call:
    """An inbound or outbound call as last recorded."""

    id: int
    sid: str
    direction: str  # "inbound" or "outbound"
    from_number: str
    to_number: str
    peer: str
    status: str
    duration: int | None  # seconds, once Twilio reports CallDuration
    digits: tuple[str, ...]  # one entry per <Gather> answer, in order
    created_at: datetime
    updated_at: datetime

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (timestamps as ISO 8601 UTC text)."""
        return {
            "id": self.id,
            "sid": self.sid,
            "direction": self.direction,
            "from": self.from_number,
            "to": self.to_number,
            "status": self.status,
            "duration": self.duration,
            "digits": list(self.digits),
            "created_at": format_timestamp(self.created_at),
            "updated_at": format_timestamp(self.updated_at),
        }


@dataclass(frozen=True)
class Event:
    """One webhook delivery or status transition, whether or not it changed its row."""

    id: int
    idempotency_key: str
    kind: str  # "message", "message-status", "outbound-message", "call", "call-status", ...
    sid: str
    status: str | None
    applied: bool  # False: kept as history only (a late or repeated status)
    payload: dict[str, Any]
    received_at: datetime


@dataclass(frozen=True)
class OptOut:
    """A number's opt-out state, as set by STOP / START keywords."""

    number: str
    opted_out: bool
    keyword: str | None  # the word that set it, e.g. "STOP"
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Conversation:
    """Everything exchanged with one number: the latest messages and calls, oldest first."""

    number: str
    last_at: datetime
    message_count: int
    call_count: int
    opted_out: bool
    messages: tuple[Message, ...]
    calls: tuple[Call, ...]


MESSAGE_COLUMNS = (
    "id, sid, direction, from_number, to_number, peer, body, media, status, error_code, "
    "error_message, created_at, updated_at"
)
CALL_COLUMNS = (
    "id, sid, direction, from_number, to_number, peer, status, duration, digits, created_at, "
    "updated_at"
)
EVENT_COLUMNS = "id, idempotency_key, kind, sid, status, applied, payload, received_at"
OPT_OUT_COLUMNS = "number, opted_out, keyword, created_at, updated_at"


def message_from_row(row: sqlite3.Row | tuple[Any, ...]) -> Message:
    """A Message from a row selected with MESSAGE_COLUMNS."""
    media = tuple(Media(url, kind) for url, kind in json.loads(row[7]))
    return Message(
        id=row[0],
        sid=row[1],
        direction=row[2],
        from_number=row[3],
        to_number=row[4],
        peer=row[5],
        body=row[6],
        media=media,
        status=row[8],
        error_code=row[9],
        error_message=row[10],
        created_at=parse_timestamp(row[11]),
        updated_at=parse_timestamp(row[12]),
    )


def call_from_row(row: sqlite3.Row | tuple[Any, ...]) -> Call:
    """A Call from a row selected with CALL_COLUMNS."""
    return Call(
        id=row[0],
        sid=row[1],
        direction=row[2],
        from_number=row[3],
        to_number=row[4],
        peer=row[5],
        status=row[6],
        duration=row[7],
        digits=tuple(json.loads(row[8])),
        created_at=parse_timestamp(row[9]),
        updated_at=parse_timestamp(row[10]),
    )


def event_from_row(row: sqlite3.Row | tuple[Any, ...]) -> Event:
    """An Event from a row selected with EVENT_COLUMNS."""
    return Event(
        id=row[0],
        idempotency_key=row[1],
        kind=row[2],
        sid=row[3],
        status=row[4],
        applied=bool(row[5]),
        payload=json.loads(row[6]),
        received_at=parse_timestamp(row[7]),
    )


def opt_out_from_row(row: sqlite3.Row | tuple[Any, ...]) -> OptOut:
    """An OptOut from a row selected with OPT_OUT_COLUMNS."""
    return OptOut(
        number=row[0],
        opted_out=bool(row[1]),
        keyword=row[2],
        created_at=parse_timestamp(row[3]),
        updated_at=parse_timestamp(row[4]),
    )
