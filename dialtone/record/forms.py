"""Reading Twilio's webhook forms into what the record stores: plain functions, no database."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from dialtone.facts import MAX_MEDIA
from dialtone.record.errors import BadRecord


@dataclass(frozen=True)
class NewMessage:
    """What one webhook or API call says about a message."""

    sid: str
    direction: str  # "inbound" or "outbound"
    from_number: str
    to_number: str
    body: str
    media: tuple[tuple[str, str], ...]  # (url, content type)
    status: str
    error_code: int | None = None
    error_message: str | None = None

    @property
    def peer(self) -> str:
        """The other party: the sender of an inbound message, the recipient of an outbound one."""
        return self.from_number if self.direction == "inbound" else self.to_number


@dataclass(frozen=True)
class NewCall:
    """What one webhook or API call says about a call."""

    sid: str
    direction: str  # "inbound" or "outbound"
    from_number: str
    to_number: str
    status: str
    duration: int | None = None

    @property
    def peer(self) -> str:
        """The other party: the caller of an inbound call, the callee of an outbound one."""
        return self.from_number if self.direction == "inbound" else self.to_number


def clean_form(form: Mapping[str, str]) -> dict[str, str]:
    """A webhook form as a plain dict of text every backend can store (lone surrogates and NUL
    replaced: PostgreSQL's text holds neither)."""
    values = dict(form.items())
    try:
        # One encode of everything instead of one per field: the usual case, all valid text.
        joined = "".join([*values, *values.values()])
        joined.encode("utf-8")
    except (UnicodeEncodeError, TypeError):  # a lone surrogate, or a value that is not a str
        return {text(key): text(value) for key, value in values.items()}
    if "\x00" in joined:
        return {text(key): text(value) for key, value in values.items()}
    return values


def text(value: object) -> str:
    """`value` as a str that encodes as UTF-8 and holds no NUL (replaced by U+FFFD)."""
    result = value if isinstance(value, str) else str(value)
    try:
        result.encode("utf-8")
    except UnicodeEncodeError:
        result = result.encode("utf-8", "replace").decode("utf-8")
    return result.replace("\x00", "\ufffd")


def required(values: Mapping[str, str], *names: str) -> str:
    """The first of `names` present and non-empty; BadRecord naming the first otherwise."""
    for name in names:
        if values.get(name):
            return values[name]
    raise BadRecord(f"The webhook has no {names[0]}, so it cannot be recorded.")


# The record's integer columns hold what PostgreSQL's `integer` holds; SQLite's hold 64 bits.
LARGEST_INT = 2**31 - 1


def int_or_none(value: str | None) -> int | None:
    """A whole number from a form field, or None when it is absent, not a number, or more than
    the record's columns hold (no ErrorCode or CallDuration of Twilio's comes near)."""
    try:
        number = int(value) if value else None
    except ValueError:
        return None
    return number if number is not None and abs(number) <= LARGEST_INT else None


def media_from_form(values: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The (URL, content type) pairs of an MMS webhook (MediaUrlN, MediaContentTypeN)."""
    return tuple(
        (values[url], values.get(content_type, ""))
        for url, content_type in _MEDIA_FIELDS
        if values.get(url)
    )


# The field names, made once: formatting them for every webhook cost more than the lookups.
_MEDIA_FIELDS = tuple((f"MediaUrl{n}", f"MediaContentType{n}") for n in range(MAX_MEDIA))


def inbound_message(values: Mapping[str, str]) -> NewMessage:
    """An inbound SMS/MMS webhook (MessageSid, From, To, Body, MediaUrlN, ...)."""
    return NewMessage(
        sid=required(values, "MessageSid", "SmsMessageSid", "SmsSid"),
        direction="inbound",
        from_number=values.get("From", ""),
        to_number=values.get("To", ""),
        body=values.get("Body", ""),
        media=media_from_form(values),
        status=values.get("SmsStatus") or values.get("MessageStatus") or "received",
    )


def message_status(values: Mapping[str, str]) -> NewMessage:
    """A message status callback (MessageSid, MessageStatus, ErrorCode, From, To)."""
    return NewMessage(
        sid=required(values, "MessageSid", "SmsSid"),
        direction="outbound",  # Twilio sends status callbacks for messages sent from here
        from_number=values.get("From", ""),
        to_number=values.get("To", ""),
        body="",
        media=(),
        status=required(values, "MessageStatus", "SmsStatus"),
        error_code=int_or_none(values.get("ErrorCode")),
        error_message=values.get("ErrorMessage") or None,
    )


def call(values: Mapping[str, str], default_direction: str) -> NewCall:
    """A voice webhook or call status callback (CallSid, CallStatus, Direction, CallDuration)."""
    given = values.get("Direction", "")  # inbound, outbound-api or outbound-dial
    direction = ("inbound" if given == "inbound" else "outbound") if given else default_direction
    return NewCall(
        sid=required(values, "CallSid"),
        direction=direction,
        from_number=values.get("From", ""),
        to_number=values.get("To", ""),
        status=required(values, "CallStatus"),
        duration=int_or_none(values.get("CallDuration")),
    )
