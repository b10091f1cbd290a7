"""The sandbox's resources (numbers, messages, calls) and how they render as Twilio's JSON.

Records are plain dataclasses. `SandboxState` owns the live ones and hands out copies, so a record
you hold never changes under you. `to_json()` gives the snake_case shape Twilio's OpenAPI schemas
describe (`api.v2010.account.incoming_phone_number`, `.message`, `.call`).
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

API_VERSION = "2010-04-01"
API_ROOT = f"/{API_VERSION}/Accounts"

MESSAGE_STATUSES = frozenset(
    {"accepted", "scheduled", "canceled", "queued", "sending", "sent", "failed", "delivered"}
    | {"undelivered", "receiving", "received", "read", "partially_delivered"}
)
CALL_STATUSES = frozenset(
    {"queued", "ringing", "in-progress", "completed", "busy", "failed", "no-answer", "canceled"}
)
# A call in one of these has ended; nothing moves it on.
CALL_ENDED = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})

# GSM 03.38 basic character set plus its extension table: bodies made only of these are sent as
# GSM-7 (160 characters per single segment, 153 per part); anything else as UCS-2 (70 / 67).
_GSM7 = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà^{}\\[~]|€"
)


def new_sid(prefix: str) -> str:
    """A Twilio-style SID: two-letter prefix + 32 lowercase hex digits."""
    return prefix + secrets.token_hex(16)


def rfc2822(moment: datetime | None) -> str | None:
    """Twilio's timestamp format, e.g. 'Mon, 23 Nov 2026 18:00:00 +0000'."""
    if moment is None:
        return None
    return format_datetime(moment.astimezone(UTC).replace(microsecond=0))


def utcnow() -> datetime:
    """The current time in UTC (the state's default clock)."""
    return datetime.now(UTC)


def num_segments(body: str) -> int:
    """How many SMS segments Twilio would bill `body` as (at least 1)."""
    if all(ch in _GSM7 for ch in body):
        single, part = 160, 153
    else:
        single, part = 70, 67
        # UCS-2 counts characters outside the Basic Multilingual Plane (most emoji) twice.
        length = sum(2 if ord(ch) > 0xFFFF else 1 for ch in body)
        return 1 if length <= single else math.ceil(length / part)
    return 1 if len(body) <= single else math.ceil(len(body) / part)


def formatted(number: str) -> str:
    """A North American number as '(415) 555-0100'; anything else unchanged."""
    digits = number[2:] if number.startswith("+1") else ""
    if len(digits) == 10 and digits.isdigit():
        return f"({digits[:3]}) {digits[3:6]}-{digits[6:]}"
    return number


@dataclass
class PhoneNumber:
    """An IncomingPhoneNumber with all its webhook settings ('' means not set, as Twilio shows)."""

    sid: str
    account_sid: str
    phone_number: str
    friendly_name: str
    date_created: datetime
    date_updated: datetime
    voice_url: str = ""
    voice_method: str = "POST"
    voice_fallback_url: str = ""
    voice_fallback_method: str = "POST"
    voice_caller_id_lookup: bool = False
    status_callback: str = ""
    status_callback_method: str = "POST"
    sms_url: str = ""
    sms_method: str = "POST"
    sms_fallback_url: str = ""
    sms_fallback_method: str = "POST"

    @property
    def uri(self) -> str:
        return f"{API_ROOT}/{self.account_sid}/IncomingPhoneNumbers/{self.sid}.json"

    def to_json(self) -> dict[str, Any]:
        """Twilio's JSON for this number."""
        return {
            "account_sid": self.account_sid,
            "address_requirements": "none",
            "address_sid": None,
            "api_version": API_VERSION,
            "beta": False,
            "bundle_sid": None,
            "capabilities": {"voice": True, "sms": True, "mms": True, "fax": False},
            "date_created": rfc2822(self.date_created),
            "date_updated": rfc2822(self.date_updated),
            "emergency_address_sid": None,
            "emergency_address_status": "unregistered",
            "emergency_status": "Inactive",
            "friendly_name": self.friendly_name,
            "identity_sid": None,
            "origin": "twilio",
            "phone_number": self.phone_number,
            "sid": self.sid,
            "sms_application_sid": None,
            "sms_fallback_method": self.sms_fallback_method,
            "sms_fallback_url": self.sms_fallback_url,
            "sms_method": self.sms_method,
            "sms_url": self.sms_url,
            "status": "in-use",
            "status_callback": self.status_callback,
            "status_callback_method": self.status_callback_method,
            "trunk_sid": None,
            "type": "local",
            "uri": self.uri,
            "voice_application_sid": None,
            "voice_caller_id_lookup": self.voice_caller_id_lookup,
            "voice_fallback_method": self.voice_fallback_method,
            "voice_fallback_url": self.voice_fallback_url,
            "voice_method": self.voice_method,
            "voice_receive_mode": "voice",
            "voice_url": self.voice_url,
        }


@dataclass
class Message:
    """A message, outbound (from the REST API or TwiML) or inbound (from the phone)."""

    sid: str
    account_sid: str
    to: str
    from_: str
    body: str
    status: str
    direction: str  # inbound, outbound-api, outbound-call, outbound-reply
    date_created: datetime
    date_updated: datetime
    date_sent: datetime | None = None
    media_urls: tuple[str, ...] = ()
    messaging_service_sid: str | None = None
    status_callback: str | None = None
    error_code: int | None = None
    error_message: str | None = None

    @property
    def uri(self) -> str:
        return f"{API_ROOT}/{self.account_sid}/Messages/{self.sid}.json"

    def to_json(self) -> dict[str, Any]:
        """Twilio's JSON for this message."""
        base = f"{API_ROOT}/{self.account_sid}/Messages/{self.sid}"
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": self.body,
            "date_created": rfc2822(self.date_created),
            "date_sent": rfc2822(self.date_sent),
            "date_updated": rfc2822(self.date_updated),
            "direction": self.direction,
            "error_code": self.error_code,
            "error_message": self.error_message,
            "from": self.from_ or None,  # a Messaging Service assigns it after `accepted`
            "messaging_service_sid": self.messaging_service_sid,
            "num_media": str(len(self.media_urls)),
            # "initially 0, since a sender hasn't yet been assigned" (Twilio's API description)
            "num_segments": "0" if self.status == "accepted" else str(num_segments(self.body)),
            "price": None,
            "price_unit": "USD",
            "sid": self.sid,
            "status": self.status,
            "subresource_uris": {
                "media": f"{base}/Media.json",
                "feedback": f"{base}/Feedback.json",
            },
            "to": self.to,
            "uri": self.uri,
        }


@dataclass
class Call:
    """A call: outbound (REST API) or inbound (the phone calling the number)."""

    sid: str
    account_sid: str
    to: str
    from_: str
    status: str
    direction: str  # inbound, outbound-api, outbound-dial
    date_created: datetime
    date_updated: datetime
    url: str | None = None
    method: str = "POST"
    twiml: str | None = None
    fallback_url: str | None = None
    fallback_method: str = "POST"
    status_callback: str | None = None
    status_callback_method: str = "POST"
    status_callback_events: tuple[str, ...] = ()
    phone_number_sid: str | None = None
    parent_call_sid: str | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    answered_by: str | None = None
    extra: dict[str, str] = field(default_factory=dict)  # other create parameters, as sent

    @property
    def uri(self) -> str:
        return f"{API_ROOT}/{self.account_sid}/Calls/{self.sid}.json"

    @property
    def ended(self) -> bool:
        return self.status in CALL_ENDED

    @property
    def duration(self) -> int | None:
        """Whole seconds from answer to hang-up, once the call has ended."""
        if self.end_time is None:
            return None
        if self.start_time is None:
            return 0
        return max(0, int((self.end_time - self.start_time).total_seconds()))

    def to_json(self) -> dict[str, Any]:
        """Twilio's JSON for this call."""
        base = f"{API_ROOT}/{self.account_sid}/Calls/{self.sid}"
        subresources = [
            "notifications",
            "recordings",
            "payments",
            "events",
            "siprec",
            "streams",
            "transcriptions",
            "user_defined_message_subscriptions",
            "user_defined_messages",
        ]
        camel = {"user_defined_message_subscriptions": "UserDefinedMessageSubscriptions"}
        camel["user_defined_messages"] = "UserDefinedMessages"
        duration = self.duration
        return {
            "account_sid": self.account_sid,
            "answered_by": self.answered_by,
            "api_version": API_VERSION,
            "caller_name": None,
            "date_created": rfc2822(self.date_created),
            "date_updated": rfc2822(self.date_updated),
            "direction": self.direction,
            "duration": None if duration is None else str(duration),
            "end_time": rfc2822(self.end_time),
            "forwarded_from": None,
            "from": self.from_,
            "from_formatted": formatted(self.from_),
            "group_sid": None,
            "parent_call_sid": self.parent_call_sid,
            "phone_number_sid": self.phone_number_sid,
            "price": None,
            "price_unit": "USD",
            "queue_time": "0",
            "sid": self.sid,
            "start_time": rfc2822(self.start_time),
            "status": self.status,
            "subresource_uris": {
                name: f"{base}/{camel.get(name, name.capitalize())}.json" for name in subresources
            },
            "to": self.to,
            "to_formatted": formatted(self.to),
            "trunk_sid": None,
            "uri": self.uri,
        }
