"""The JSON API behind `Authorization: Bearer <API_TOKEN>`: place calls and texts, read the record.

POST /send_sms and POST /make_call cost money: destinations are validated (and allow-listed when
ALLOWED_DESTINATIONS is set) in dialtone.bot.outbound. GET /messages and GET /calls list the
record, newest first, with filters and paging (dialtone.web.listing).
"""

from typing import Any

from dialtone import api
from dialtone.bot.outbound import Outbox, parse_call, parse_sms
from dialtone.record.base import RecordStore
from dialtone.record.schema import CALL_STATUS_RANK, MESSAGE_STATUS_RANK
from dialtone.settings import Settings
from dialtone.web.listing import listing


@api("/send_sms", method="POST", status=201)
def send_sms(payload: dict[str, Any], settings: Settings, outbox: Outbox) -> dict[str, Any]:
    """Text `to` a `body` and/or `media_url`."""
    return outbox.send_sms(parse_sms(payload, settings))


@api("/make_call", method="POST", status=201)
def make_call(payload: dict[str, Any], settings: Settings, outbox: Outbox) -> dict[str, Any]:
    """Call `to` and say `message`, or run the voice menu."""
    return outbox.make_call(parse_call(payload, settings))


@api("/messages")
def messages(query: dict[str, str], store: RecordStore) -> dict[str, Any]:
    """The messages in the record (filters: number, since, status, direction; limit, before)."""
    return listing("/messages", query, MESSAGE_STATUS_RANK, store.messages)


@api("/calls")
def calls(query: dict[str, str], store: RecordStore) -> dict[str, Any]:
    """The calls in the record, filtered and paged as /messages."""
    return listing("/calls", query, CALL_STATUS_RANK, store.calls)
