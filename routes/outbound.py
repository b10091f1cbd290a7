"""POST /make_call and POST /send_sms: a token-protected JSON API that places calls and texts.

These cost money, so: POST only, `Authorization: Bearer <API_TOKEN>`, destinations validated
(E.164 or whatsapp:) and optionally allow-listed, and a per-token rate limit.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
from dataclasses import dataclass
from typing import Any, NoReturn

from bottle import Bottle, HTTPResponse, request
from requests.exceptions import RequestException
from twilio.base.exceptions import TwilioRestException
from twilio.twiml.voice_response import VoiceResponse

from dialtone.phone_numbers import is_destination, is_e164
from dialtone.ratelimit import RateLimiter
from dialtone.settings import Settings
from dialtone.twilio_api import MissingCredentials, TwilioHandle

log = logging.getLogger("dialtone.outbound")

PATHS = frozenset({"/make_call", "/send_sms"})
MAX_BODY_CHARS = 1600  # Twilio's limit for one message body
MAX_MEDIA = 10  # Twilio's limit of media per MMS
MAX_SPOKEN_CHARS = 4096  # Twilio's limit for <Say> text


def json_error(status: int, message: str, **extra: Any) -> HTTPResponse:
    """A JSON error answer: {"error": {"status": ..., "message": ..., ...}}."""
    body = json.dumps({"error": {"status": status, "message": message, **extra}})
    return HTTPResponse(body, status, {"Content-Type": "application/json"})


def fail(status: int, message: str, **extra: Any) -> NoReturn:
    """Stop handling the request with a JSON error."""
    raise json_error(status, message, **extra)


@dataclass(frozen=True)
class SmsRequest:
    """A validated /send_sms request."""

    to: str
    body: str | None
    media_urls: list[str]


@dataclass(frozen=True)
class CallRequest:
    """A validated /make_call request: call `to` and say `message`, or run the voice menu."""

    to: str
    message: str | None


def read_json() -> dict[str, Any]:
    """The request body as a JSON object, or a 400 saying what is wrong with it."""
    if request.content_type.split(";")[0].strip() != "application/json":
        fail(400, "Send a JSON body with Content-Type: application/json.")
    try:
        payload = json.loads(request.body.read() or b"null")
    except (ValueError, UnicodeDecodeError):
        fail(400, "The body is not valid JSON.")
    if not isinstance(payload, dict):
        fail(400, 'The body must be a JSON object, like {"to": "+15551234567", ...}.')
    return payload


def destination(payload: dict[str, Any], settings: Settings, *, calls: bool = False) -> str:
    """The validated `to`: E.164 (or whatsapp: for messages) and on the allow-list if there is one."""
    to = payload.get("to")
    if not isinstance(to, str) or not is_destination(to):
        fail(400, '"to" must be an E.164 number like +15551234567, or whatsapp:+15551234567.')
    if calls and not is_e164(to):
        fail(400, '"to" must be an E.164 number like +15551234567; calls cannot go to WhatsApp.')
    if settings.allowed_destinations and to not in settings.allowed_destinations:
        fail(403, f"{to} is not in ALLOWED_DESTINATIONS.")
    return to


def parse_sms(payload: dict[str, Any], settings: Settings) -> SmsRequest:
    """Validate a /send_sms payload: `to`, and `body` and/or `media_url` (a URL or a list)."""
    to = destination(payload, settings)
    body = payload.get("body")
    if body is not None and not isinstance(body, str):
        fail(400, '"body" must be a string.')
    if body is not None and len(body) > MAX_BODY_CHARS:
        fail(400, f'"body" is {len(body)} characters; Twilio accepts at most {MAX_BODY_CHARS}.')
    media = payload.get("media_url", [])
    media = [media] if isinstance(media, str) else media
    if not isinstance(media, list) or not all(_is_http_url(url) for url in media):
        fail(400, '"media_url" must be an http(s) URL or a list of them.')
    if len(media) > MAX_MEDIA:
        fail(400, f"At most {MAX_MEDIA} media URLs per message.")
    if not body and not media:
        fail(400, 'Send a "body", a "media_url", or both.')
    return SmsRequest(to, body or None, media)


def parse_call(payload: dict[str, Any], settings: Settings) -> CallRequest:
    """Validate a /make_call payload: `to`, and an optional `message` to say instead of the menu."""
    to = destination(payload, settings, calls=True)
    message = payload.get("message")
    if message is not None and (not isinstance(message, str) or not message.strip()):
        fail(400, '"message" must be a non-empty string.')
    if message is not None and len(message) > MAX_SPOKEN_CHARS:
        fail(400, f'"message" is too long to say; at most {MAX_SPOKEN_CHARS} characters.')
    return CallRequest(to, message)


def _is_http_url(value: object) -> bool:
    return isinstance(value, str) and value.startswith(("https://", "http://")) and len(value) > 8


class OutboundApi:
    """Authentication, rate limiting and the Twilio calls behind the two routes."""

    def __init__(self, settings: Settings, twilio: TwilioHandle) -> None:
        self.settings = settings
        self.twilio = twilio
        self.limiter = RateLimiter(settings.rate_limit_per_minute)

    def authorize(self) -> None:
        """401 without a bearer token, 403 with a wrong one, 429 over the rate limit."""
        expected = self.settings.api_token
        if not expected:
            fail(503, "The outbound API is off: set API_TOKEN on the server to switch it on.")
        scheme, _, token = (request.get_header("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise HTTPResponse(
                json.dumps(
                    {"error": {"status": 401, "message": "Send Authorization: Bearer <API_TOKEN>."}}
                ),
                401,
                {"Content-Type": "application/json", "WWW-Authenticate": "Bearer"},
            )
        if not hmac.compare_digest(token.strip().encode(), expected.encode()):
            fail(403, "The bearer token is not this server's API_TOKEN.")
        wait = self.limiter.hit(expected)
        if wait is not None:
            retry_after = str(max(1, math.ceil(wait)))
            error = json_error(
                429, f"Rate limit of {self.limiter.limit} requests a minute reached; retry later."
            )
            error.set_header("Retry-After", retry_after)
            raise error

    def send_sms(self, sms: SmsRequest) -> dict[str, Any]:
        """Send the message through Twilio; the new SID and status."""
        message = self._twilio(lambda: self.twilio.send_message(sms.to, sms.body, sms.media_urls))
        log.info("sent message %s to %s (%s)", message.sid, sms.to, message.status)
        return {"sid": message.sid, "status": message.status, "to": sms.to}

    def make_call(self, call: CallRequest) -> dict[str, Any]:
        """Start the call through Twilio; the new SID and status."""
        settings = self.settings
        if not settings.phone_number:
            fail(503, "Calls need TWILIO_PHONE_NUMBER on the server.")
        how: dict[str, str] = {}
        if call.message:
            spoken = VoiceResponse()
            spoken.say(call.message, voice=settings.say_voice, language=settings.say_language)
            how["twiml"] = str(spoken)
        elif settings.public_url:
            how["url"] = settings.public_url + "/voice_url"
        else:
            fail(
                503,
                'PUBLIC_URL is not set, so Twilio cannot fetch /voice_url; pass a "message" '
                "to say, or set PUBLIC_URL.",
            )
        callback = self.twilio.callback_url("/status")
        if callback:
            how["status_callback"] = callback
        created = self._twilio(
            lambda: self.twilio.client.calls.create(to=call.to, from_=settings.phone_number, **how)
        )
        log.info("started call %s to %s (%s)", created.sid, call.to, created.status)
        return {"sid": created.sid, "status": created.status, "to": call.to}

    def _twilio(self, action: Any) -> Any:
        """Run a Twilio request, turning its failures into JSON errors."""
        try:
            return action()
        except TwilioRestException as exc:
            log.warning("Twilio refused: %s %s", exc.code, exc.msg)
            fail(
                502,
                f"Twilio refused the request: {exc.msg}",
                twilio_code=exc.code,
                twilio_status=exc.status,
                more_info=f"https://www.twilio.com/docs/errors/{exc.code}" if exc.code else None,
            )
        except MissingCredentials as exc:
            fail(503, str(exc))
        except RequestException as exc:
            log.warning("Could not reach Twilio: %s", type(exc).__name__)
            fail(502, "Could not reach Twilio; try again.")


def install(app: Bottle, settings: Settings, twilio: TwilioHandle) -> None:
    """Add POST /make_call and POST /send_sms."""
    api = OutboundApi(settings, twilio)

    @app.post("/send_sms")
    def send_sms() -> HTTPResponse:
        api.authorize()
        return created(api.send_sms(parse_sms(read_json(), settings)))

    @app.post("/make_call")
    def make_call() -> HTTPResponse:
        api.authorize()
        return created(api.make_call(parse_call(read_json(), settings)))


def created(result: dict[str, Any]) -> HTTPResponse:
    """A 201 JSON answer."""
    return HTTPResponse(json.dumps(result), 201, {"Content-Type": "application/json"})
