"""What the record hands back: one frozen dataclass per kind of row, and the timestamp format."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar

# Fixed-width UTC text: sorts like the instants it names, and reads well in the sqlite3 shell.
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def format_timestamp(moment: datetime) -> str:
    """`moment` as the record stores it (a naive datetime is taken to be UTC), in
    TIMESTAMP_FORMAT with the year always of four digits: strftime's %Y writes year 999 as
    "999", which sorts after "2026"."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


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


# How a stored column becomes a field; a column not named here is the field's value as it is.
_DECODE: dict[str, Callable[[Any], Any]] = {
    "media": lambda text: tuple(Media(url, kind) for url, kind in json.loads(text)),
    "digits": lambda text: tuple(json.loads(text)),
    "payload": json.loads,
    "applied": bool,
    "opted_out": bool,
    "created_at": parse_timestamp,
    "updated_at": parse_timestamp,
    "received_at": parse_timestamp,
}

Row = TypeVar("Row", Message, Call, Event, OptOut)


def columns(kind: type[Row]) -> str:
    """The SELECT list for `kind`: each of its fields is a column of the same name, in order."""
    return ", ".join(field.name for field in fields(kind))


def from_row(kind: type[Row], row: sqlite3.Row | tuple[Any, ...]) -> Row:
    """A `kind` from a row selected with columns(kind)."""
    names = [field.name for field in fields(kind)]
    values = {name: _DECODE.get(name, _same)(value) for name, value in zip(names, row, strict=True)}
    return kind(**values)


def _same(value: Any) -> Any:
    return value


MESSAGE_COLUMNS = columns(Message)
CALL_COLUMNS = columns(Call)
EVENT_COLUMNS = columns(Event)
OPT_OUT_COLUMNS = columns(OptOut)
