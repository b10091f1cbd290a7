"""The listings behind GET /messages and GET /calls: their filters, paging and JSON page.

Filters: `number` (From or To), `since` (ISO 8601; without a zone it is UTC), `status`,
`direction`; paging: `limit` (1 to 500, default 50) and the `before` cursor. Newest first; when a
page is full, `next` is the URL of the next (older) page, else null.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from dialtone.phone_numbers import is_destination
from dialtone.record.errors import StoreError
from dialtone.record.queries import DEFAULT_PAGE, MAX_PAGE
from dialtone.record.rows import Call, Message
from dialtone.web.jsonapi import fail

log = logging.getLogger("dialtone.records")

FILTERS = ("number", "since", "status", "direction", "limit", "before")
DIRECTIONS = ("inbound", "outbound")


def parse_filters(query: Mapping[str, str], statuses: Mapping[str, int]) -> dict[str, Any]:
    """The listing filters from a query string; a 400 naming the first bad one."""
    unknown = sorted(set(query) - set(FILTERS))
    if unknown:
        fail(400, f"Unknown parameter {unknown[0]!r}; use {', '.join(FILTERS)}.")
    filters: dict[str, Any] = {"limit": DEFAULT_PAGE}
    if query.get("number"):
        if not is_destination(query["number"]):
            hint = " (in a URL, write + as %2B)" if query["number"].startswith(" ") else ""
            fail(
                400,
                f'"number" must be an E.164 number like +15551234567 (or whatsapp:+1...){hint}.',
            )
        filters["number"] = query["number"]
    if query.get("since"):
        filters["since"] = parse_since(query["since"])
    if query.get("status"):
        if query["status"] not in statuses:
            fail(400, f'"status" must be one of {", ".join(sorted(statuses))}.')
        filters["status"] = query["status"]
    if query.get("direction"):
        if query["direction"] not in DIRECTIONS:
            fail(400, '"direction" must be inbound or outbound.')
        filters["direction"] = query["direction"]
    if query.get("limit"):
        filters["limit"] = whole_number(query["limit"], "limit", 1, MAX_PAGE)
    if query.get("before"):
        filters["before"] = whole_number(query["before"], "before", 1, 2**63 - 1)
    return filters


def parse_since(raw: str) -> datetime:
    """An ISO 8601 date or time (a naive one is UTC); a 400 otherwise."""
    try:
        moment = datetime.fromisoformat(raw)
        # Converted now: a time near year 1 or 9999 with an offset is outside UTC's range.
        return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    except (ValueError, OverflowError):
        fail(400, '"since" must be an ISO 8601 date or time, like 2025-01-31T09:00:00Z.')


def whole_number(raw: str, name: str, low: int, high: int) -> int:
    """`raw` as a whole number from `low` to `high`; a 400 otherwise."""
    # int() refuses more than 4,300 digits (ValueError) and is slow before that: measure the
    # digits that count first (leading zeros do not).
    digits = raw.lstrip("0") or "0"
    if (
        not raw.isascii()
        or not raw.isdecimal()
        or len(digits) > len(str(high))
        or not low <= int(digits) <= high
    ):
        fail(400, f'"{name}" must be a whole number from {low} to {high}.')
    return int(digits)


def page(
    path: str, rows: list[Message] | list[Call], filters: dict[str, Any], query: Mapping[str, str]
) -> dict[str, Any]:
    """The JSON answer: the rows, and the URL of the next page when this one is full."""
    next_url = None
    if rows and len(rows) >= filters["limit"]:
        params = {k: v for k, v in query.items() if k != "before"}
        params["before"] = str(rows[-1].id)
        next_url = f"{path}?{urlencode(params)}"
    return {path.strip("/"): [row.as_dict() for row in rows], "next": next_url}


def listing(
    path: str, query: Mapping[str, str], statuses: Mapping[str, int], read: Callable[..., Any]
) -> dict[str, Any]:
    """One page of a listing: `read(**filters)` with the query's filters, as JSON-ready data."""
    filters = parse_filters(query, statuses)
    try:
        rows = read(**filters)
    except StoreError as exc:
        log.error("GET %s failed: %s", path, exc)
        fail(503, "The record cannot be read just now; see the server log.")
    return page(path, rows, filters, query)
