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
    if request.content_type.split(";")[0].strip() != JSON:
        fail(400, "Send a JSON body with Content-Type: application/json.")
    try:
        payload = json.loads(request.body.read() or b"null")
    except (ValueError, RecursionError):
        fail(400, "The body is not valid JSON.")
    if not isinstance(payload, dict):
        fail(400, 'The body must be a JSON object, like {"to": "+15551234567", ...}.')
    return payload


def query_strings() -> dict[str, str]:
    """The query string as text (UTF-8; a name given twice keeps its last value)."""
    return {key: request.query.getunicode(key, default="") for key in request.query}
