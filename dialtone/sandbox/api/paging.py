"""What every sandbox REST resource shares: request parameters, list pages, small checks."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode, urlsplit

from dialtone.sandbox.api import errors as err

DEFAULT_PAGE_SIZE = 50
Answer = tuple[int, dict[str, Any]]


class Params:
    """The query or form parameters of a request, in order, repeated names kept."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self.pairs = pairs

    def get(self, name: str) -> str | None:
        """The first value of `name`, or None."""
        return next((v for k, v in self.pairs if k == name), None)

    def getall(self, name: str) -> list[str]:
        """Every value of `name`."""
        return [v for k, v in self.pairs if k == name]


def list_page(items: list[dict[str, Any]], key: str, path: str, params: Params) -> dict[str, Any]:
    """One page of a list, with the paging fields the twilio library follows."""
    page_size = _int_param(params, "PageSize", DEFAULT_PAGE_SIZE, 1, 1000)
    page = _int_param(params, "Page", 0, 0, None)
    filters = [(k, v) for k, v in params.pairs if k not in ("Page", "PageSize", "PageToken")]

    def uri(number: int) -> str:
        return path + "?" + urlencode([*filters, ("PageSize", page_size), ("Page", number)])

    start = page * page_size
    chunk = items[start : start + page_size]
    return {
        key: chunk,
        "end": start + max(len(chunk) - 1, 0),
        "first_page_uri": uri(0),
        "next_page_uri": uri(page + 1) if start + page_size < len(items) else None,
        "page": page,
        "page_size": page_size,
        "previous_page_uri": uri(page - 1) if page > 0 else None,
        "start": start,
        "uri": uri(page),
    }


def _int_param(params: Params, name: str, default: int, low: int, high: int | None) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise err.bad_request(err.BAD_REQUEST, f"{name} must be an integer.") from None
    if value < low or (high is not None and value > high):
        limit = f"from {low} to {high}" if high is not None else f"at least {low}"
        raise err.bad_request(err.BAD_REQUEST, f"{name} must be {limit}.")
    return value


def is_url(value: str) -> bool:
    """True for an absolute http(s) URL."""
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def check_method(name: str, value: str) -> str:
    """`value` as GET or POST; a 400 naming `name` otherwise."""
    method = value.upper()
    if method not in ("GET", "POST"):
        raise err.bad_request(err.BAD_REQUEST, f"{name} must be GET or POST.")
    return method
