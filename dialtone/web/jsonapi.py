"""The JSON API's answers and errors: `{"error": {"status": ..., "message": ...}}` for errors."""

from __future__ import annotations

import json
from typing import Any, NoReturn

from bottle import HTTPResponse, request

JSON = "application/json"


def error_body(status: int, message: str, **extra: Any) -> str:
    """The JSON text of an error: {"error": {"status": ..., "message": ..., ...}}."""
    return json.dumps({"error": {"status": status, "message": message, **extra}})


def json_error(status: int, message: str, **extra: Any) -> HTTPResponse:
    """A JSON error answer (see error_body)."""
    return HTTPResponse(
        error_body(status, message, **extra), status, {"Content-Type": "application/json"}
    )


def fail(status: int, message: str, **extra: Any) -> NoReturn:
    """Stop handling the request with a JSON error."""
    raise json_error(status, message, **extra)


def json_answer(result: dict[str, Any], status: int = 200) -> HTTPResponse:
    """A JSON answer with `status`."""
    return HTTPResponse(json.dumps(result), status, {"Content-Type": "application/json"})


def read_json() -> dict[str, Any]:
    """The request body as a JSON object, or a 400 saying what is wrong with it."""
    if request.content_type.split(";")[0].strip().lower() != JSON:
        fail(400, "Send a JSON body with Content-Type: application/json.")
    try:
        payload = json.loads(request.body.read() or b"null")
    except (ValueError, RecursionError):
        fail(400, "The body is not valid JSON.")
    if not isinstance(payload, dict):
        fail(400, 'The body must be a JSON object, like {"to": "+15551234567", ...}.')
    return payload


def query_strings() -> dict[str, str]:
    """The query string as text (UTF-8; a name given twice keeps its last value).

    A parameter that is not UTF-8 (`number=%ff`) is a 400 naming it, not a filter dropped.
    """
    query: dict[str, str] = {}
    for raw_key, raw_value in request.query.allitems():  # Bottle decoded them as latin-1
        try:
            key = raw_key.encode("latin-1").decode("utf-8")
        except UnicodeError:
            fail(400, f"A query parameter name is not valid UTF-8: {raw_key!r}.")
        try:
            query[key] = raw_value.encode("latin-1").decode("utf-8")
        except UnicodeError:
            fail(400, f'"{key}" is not valid UTF-8 text; percent-encode UTF-8 bytes.')
    return query
