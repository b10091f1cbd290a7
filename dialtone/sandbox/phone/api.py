"""The phone API: how the terminal phone (and tests) use the carrier, served under `/_phone/`.

JSON in, JSON out, loopback clients only (403 otherwise). The prefix cannot clash with Twilio's
API, which lives under `/2010-04-01/`.

    GET  /_phone/info                         the phone's and the sandbox's numbers
    GET  /_phone/events?after=N&wait=S        events with id > N, waiting up to S s (max 30)
    POST /_phone/messages   {"body", "media": [{"url", "content_type"}]}      text the number
    POST /_phone/calls      {}                                               call the number
    POST /_phone/calls/<sid>/digits   {"digits": "1#"}   keys for a Gather (or a Record)
    POST /_phone/calls/<sid>/answer | decline | hangup
`<sid>` may be `current`: the phone's current call.
"""

from __future__ import annotations

import json
import logging
import mimetypes
from collections.abc import Callable
from ipaddress import ip_address
from typing import Any, NoReturn

from bottle import Bottle, HTTPError, HTTPResponse, request

from dialtone.facts import MAX_MEDIA
from dialtone.sandbox.carrier.messaging import Media
from dialtone.sandbox.carrier.network import Carrier, PhoneError

log = logging.getLogger("dialtone.sandbox.phone")

PREFIX = "/_phone"
MAX_WAIT = 30.0


def create_phone_app(carrier: Carrier) -> Bottle:
    """The phone API over `carrier`."""
    app = Bottle()
    app.add_hook("before_request", _loopback_only)
    app.default_error_handler = _error_page

    @app.get(f"{PREFIX}/info")
    def info() -> HTTPResponse:
        state = carrier.state
        return _json(
            200,
            {
                "phone_number": carrier.phone_number,
                "sandbox_number": state.phone_number,
                "account_sid": state.account_sid,
                "last_event": carrier.events.last_id,
                "current_call": carrier.current_call(),
            },
        )

    @app.get(f"{PREFIX}/events")
    def events() -> HTTPResponse:
        after = _number(request.query.get("after"), "after", 0)
        wait = min(_number(request.query.get("wait"), "wait", 0), MAX_WAIT)
        found = carrier.events.since(int(after), wait)
        return _json(200, {"events": found, "last": carrier.events.last_id})

    @app.post(f"{PREFIX}/messages")
    def send_message() -> HTTPResponse:
        payload = _payload()
        body = payload.get("body") or ""
        if not isinstance(body, str):
            _fail(400, '"body" must be a string.')
        media = _media(payload.get("media") or [])
        message = _phone(lambda: carrier.send_sms(body, media, payload.get("to")))
        return _json(201, {"sid": message.sid, "to": message.to, "status": message.status})

    @app.post(f"{PREFIX}/calls")
    def place_call() -> HTTPResponse:
        payload = _payload()
        call = _phone(lambda: carrier.place_call(payload.get("to")))
        return _json(201, {"sid": call.sid, "to": call.to, "status": call.status})

    @app.post(f"{PREFIX}/calls/<sid>/digits")
    def digits(sid: str) -> HTTPResponse:
        keys = _payload().get("digits")
        if not isinstance(keys, str) or not keys:
            _fail(400, '"digits" must be a non-empty string.')
        _phone(lambda: carrier.press(carrier.resolve(sid), keys))
        return _json(200, {"ok": True})

    actions: dict[str, Callable[[str], None]] = {
        "answer": carrier.answer,
        "decline": carrier.decline,
        "hangup": carrier.hangup,
    }

    @app.post(f"{PREFIX}/calls/<sid>/<action>")
    def call_action(sid: str, action: str) -> HTTPResponse:
        act = actions.get(action)
        if act is None:
            _fail(404, f"Unknown call action {action!r}: answer, decline or hangup.")
        _phone(lambda: act(carrier.resolve(sid)))
        return _json(200, {"ok": True})

    return app


def _loopback_only() -> None:
    try:
        loopback = ip_address(request.remote_addr or "").is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise HTTPError(403, "The phone API answers loopback clients only.")


def _payload() -> dict[str, Any]:
    raw = request.body.read() or b"{}"
    try:
        payload = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        _fail(400, "The body is not valid JSON.")
    if not isinstance(payload, dict):
        _fail(400, "The body must be a JSON object.")
    return payload


def _media(items: Any) -> list[Media]:
    """[{"url", "content_type"?}] or ["url", ...]; the type is guessed from the URL if absent."""
    if not isinstance(items, list) or len(items) > MAX_MEDIA:
        _fail(400, f'"media" must be a list of at most {MAX_MEDIA} items.')
    media = []
    for item in items:
        url, kind = (item, None) if isinstance(item, str) else (None, None)
        if isinstance(item, dict):
            url, kind = item.get("url"), item.get("content_type")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            _fail(400, "Every media item needs an http(s) URL.")
        guessed = mimetypes.guess_type(url.split("?", 1)[0])[0]
        media.append(Media(url, kind or guessed or "application/octet-stream"))
    return media


def _number(raw: str | None, name: str, default: float) -> float:
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        _fail(400, f"{name} must be a number.")
    if value < 0:
        _fail(400, f"{name} must not be negative.")
    return value


def _phone(action: Callable[[], Any]) -> Any:
    try:
        return action()
    except PhoneError as exc:
        _fail(409, str(exc))


def _fail(status: int, message: str) -> NoReturn:
    raise _json(status, {"error": message})


def _json(status: int, body: dict[str, Any]) -> HTTPResponse:
    return HTTPResponse(json.dumps(body), status, {"Content-Type": "application/json"})


def _error_page(error: HTTPError) -> str:
    if error.status_code >= 500:
        log.error("phone API error on %s", request.path, exc_info=error.exception)
    error.content_type = "application/json"
    message = error.body if isinstance(error.body, str) and error.body else error.status_line
    return json.dumps({"error": message})
