"""The phone API: how the terminal phone (and tests) use the carrier, served under `/_phone/`.

JSON in, JSON out. Loopback clients, loopback Host and no foreign Origin only (403 otherwise,
see `dialtone.sandbox.guard`); anything that changes state must be `application/json` (415
otherwise), so a web page cannot drive the phone with a form post. At most MAX_LONG_POLLS event
requests wait at once; others are answered at once with `"busy": true`, so waiting readers never
hold every worker thread and the REST API keeps answering. The prefix cannot clash with Twilio's
API, which lives under `/2010-04-01/`.

    GET  /_phone/info                         the phone's and the sandbox's numbers
    GET  /_phone/events?after=N&wait=S        events with id > N, waiting up to S s (max 30)
    POST /_phone/messages   {"body", "media": [{"url", "content_type"}]}      text the number
                            (answers sid, to, status, and a "notice" to show while this
                            phone has texted STOP to that number)
    POST /_phone/calls      {}                                               call the number
    POST /_phone/calls/<sid>/digits   {"digits": "1#"}   keys for a Gather (or a Record)
    POST /_phone/calls/<sid>/answer | decline | hangup
    GET  /_phone/failures                     failures planned for the next messages and calls
    POST /_phone/failures   {"kind": "message", "to", "error_code": 30003, "status", "count"}
                            {"kind": "call", "to", "status": "busy" | "no-answer" | "failed"}
    POST /_phone/failures/clear   {}          forget every planned failure
`<sid>` may be `current`: the phone's current call; `to` defaults to the phone's number.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import threading
from collections.abc import Callable
from typing import Any, NoReturn

from bottle import Bottle, HTTPError, HTTPResponse, request

from dialtone.facts import MAX_MEDIA, carrier_keyword
from dialtone.sandbox.carrier.failures import FailureError
from dialtone.sandbox.carrier.messaging import Media
from dialtone.sandbox.carrier.network import Carrier, PhoneError
from dialtone.sandbox.guard import json_only, refusal

log = logging.getLogger("dialtone.sandbox.phone")

PREFIX = "/_phone"
OPTED_OUT_NOTICE = (
    "This phone texted STOP to {number}: Twilio delivers nothing from it to this phone, and "
    "the bot stays silent, until you text START."
)
MAX_WAIT = 30.0
MAX_LONG_POLLS = 4  # event requests that may wait at once (the server has more worker threads)


def create_phone_app(carrier: Carrier) -> Bottle:
    """The phone API over `carrier`."""
    app = Bottle()
    app.add_hook("before_request", _guard)
    app.default_error_handler = _error_page
    long_polls = threading.BoundedSemaphore(MAX_LONG_POLLS)

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
        if wait and not long_polls.acquire(blocking=False):
            found = carrier.events.since(int(after))  # enough readers wait: answer at once
            return _json(200, {"events": found, "last": carrier.events.last_id, "busy": True})
        try:
            found = carrier.events.since(int(after), wait)
        finally:
            if wait:
                long_polls.release()
        return _json(200, {"events": found, "last": carrier.events.last_id})

    @app.get(f"{PREFIX}/failures")
    def failures() -> HTTPResponse:
        return _json(200, carrier.failures.pending())

    @app.post(f"{PREFIX}/failures")
    def plan_failure() -> HTTPResponse:
        return _json(201, _plan_failure(carrier, _payload()))

    @app.post(f"{PREFIX}/failures/clear")
    def clear_failures() -> HTTPResponse:
        carrier.failures.clear()
        return _json(200, carrier.failures.pending())

    @app.post(f"{PREFIX}/messages")
    def send_message() -> HTTPResponse:
        payload = _payload()
        body = payload.get("body") or ""
        if not isinstance(body, str):
            _fail(400, '"body" must be a string.')
        media = _media(payload.get("media") or [])
        message = _phone(lambda: carrier.send_sms(body, media, payload.get("to")))
        answer = {"sid": message.sid, "to": message.to, "status": message.status}
        opted_out = carrier.state.optouts.is_opted_out(message.to, message.from_)
        keyword = carrier_keyword(body)
        if opted_out and (keyword is None or keyword.opted_out is None):  # HELP gets nothing too
            # Twilio tells the sender nothing after STOP; the phone says why no reply comes.
            answer["notice"] = OPTED_OUT_NOTICE.format(number=message.to)
        return _json(201, answer)

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


def _guard() -> None:
    """The LoopbackGuard's rules (also when the app is served without it), then JSON only."""
    reason = refusal(request.environ)
    if reason is not None:
        raise HTTPError(403, reason)
    if request.method not in ("GET", "HEAD"):
        reason = json_only(request.environ)
        if reason is not None:
            raise HTTPError(415, reason)


def _plan_failure(carrier: Carrier, payload: dict[str, Any]) -> dict[str, Any]:
    """Plan a failure from a `POST /_phone/failures` body; what was planned."""
    kind, to = payload.get("kind"), payload.get("to") or carrier.phone_number
    count, status, code = payload.get("count", 1), payload.get("status"), payload.get("error_code")
    if kind not in ("message", "call"):
        _fail(400, '"kind" must be "message" or "call".')
    if not isinstance(to, str) or not isinstance(count, int) or isinstance(count, bool):
        _fail(400, '"to" must be a phone number and "count" a whole number.')
    if status is not None and not isinstance(status, str):
        _fail(400, '"status" must be a string.')
    if kind == "message" and (not isinstance(code, int) or isinstance(code, bool)):
        _fail(400, '"error_code" must be a Twilio error code such as 30003.')
    try:
        if kind == "message":
            planned = carrier.failures.fail_messages(
                to, error_code=int(code or 0), status=status, count=count
            )
            return {"kind": kind, "to": to, "status": planned.status, "error_code": code}
        call = carrier.failures.fail_calls(to, status=status or "", count=count)
    except FailureError as exc:
        _fail(400, str(exc))
    return {"kind": kind, "to": to, "status": call.status, "count": count}


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
