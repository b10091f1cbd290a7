"""What POST /make_call and POST /send_sms do: validate, place the call or text, record it.

These cost money, so: POST only, `Authorization: Bearer <API_TOKEN>`, destinations checked by
the one outbound policy (dialtone.bot.destinations: possible numbers, ALLOWED_DESTINATIONS,
DENIED_PREFIXES), and a per-token rate limit (dialtone.web.api_auth,
shared with GET /messages and /calls). What is sent is recorded with the SID and status Twilio
answered, or with Twilio's error code; a text to a number that has opted out (STOP) is refused
with 409 before anything reaches Twilio.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from requests.exceptions import RequestException
from twilio.base.exceptions import TwilioException
from twilio.twiml.voice_response import VoiceResponse

from dialtone.bot.destinations import check_destination
from dialtone.bot.texting import place_call, send_text
from dialtone.facts import MAX_BODY_CHARS, MAX_MEDIA, MAX_TWIML_CHARS, clean, twilio_length
from dialtone.record.breaker import SETTLE
from dialtone.record.errors import StoreError
from dialtone.record.recorder import Recorder, Settling
from dialtone.record.spool import KeptNotApplied
from dialtone.settings import Settings
from dialtone.twilio_api import MissingCredentials, TwilioHandle, twilio_error
from dialtone.web.jsonapi import fail, json_error

log = logging.getLogger("dialtone.outbound")

T = TypeVar("T")


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


def destination(payload: dict[str, Any], settings: Settings, *, calls: bool = False) -> str:
    """The validated `to`, as the destination policy allows it (400 or 403 otherwise)."""
    to = payload.get("to")
    refusal = check_destination(to, settings, calls=calls)
    if refusal is not None:
        fail(refusal.status, refusal.message)
    assert isinstance(to, str)  # check_destination refuses anything else
    return to


SMS_FIELDS = ("to", "body", "media_url")
CALL_FIELDS = ("to", "message")


def known_fields(payload: dict[str, Any], fields: tuple[str, ...]) -> None:
    """A 400 naming the first field the endpoint does not know (a typo would be lost silently)."""
    unknown = sorted(set(payload) - set(fields))
    if unknown:
        fail(400, f"Unknown field {unknown[0]!r}; use {', '.join(fields)}.")


def parse_sms(payload: dict[str, Any], settings: Settings) -> SmsRequest:
    """Validate a /send_sms payload: `to`, and `body` and/or `media_url` (a URL or a list)."""
    to = destination(payload, settings)
    known_fields(payload, SMS_FIELDS)
    body = text_field(payload, "body")
    if body is not None and twilio_length(body) > MAX_BODY_CHARS:
        fail(
            400,
            f'"body" is {twilio_length(body)} characters (emoji count as 2); '
            f"Twilio accepts at most {MAX_BODY_CHARS}.",
        )
    media = payload.get("media_url", [])
    media = [media] if isinstance(media, str) else media
    if not isinstance(media, list) or not all(is_http_url(url) for url in media):
        fail(400, '"media_url" must be an http(s) URL or a list of them.')
    if len(media) > MAX_MEDIA:
        fail(400, f"At most {MAX_MEDIA} media URLs per message.")
    if not body and not media:
        fail(400, 'Send a "body", a "media_url", or both.')
    return SmsRequest(to, body or None, media)


def parse_call(payload: dict[str, Any], settings: Settings) -> CallRequest:
    """Validate a /make_call payload: `to`, and an optional `message` to say instead of the menu."""
    to = destination(payload, settings, calls=True)
    known_fields(payload, CALL_FIELDS)
    message = text_field(payload, "message")
    if message is not None and not clean(message).strip():
        fail(400, '"message" must say something.')
    return CallRequest(to, clean(message) if message is not None else None)


def text_field(payload: dict[str, Any], name: str) -> str | None:
    """An optional string field; 400 if it is not a string or cannot be encoded (lone surrogates)."""
    value = payload.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        fail(400, f'"{name}" must be a string.')
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        fail(400, f'"{name}" is not valid Unicode text.')
    return value


def is_http_url(value: object) -> bool:
    """True for an absolute http(s) URL with a host, as Twilio fetches media: a query string is
    fine (signed storage links carry one); a space, a control character, a lone surrogate, a
    user name or a port that is not a number is not."""
    if not isinstance(value, str) or not value.isprintable() or " " in value:
        return False  # (a lone surrogate is not printable either)
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 (urlsplit checks the port only when asked)
    except ValueError:
        return False
    return (
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and parts.username is None
        and parts.password is None
    )


class Outbox:
    """Where calls and texts leave through Twilio: checked, sent, and recorded."""

    def __init__(self, settings: Settings, twilio: TwilioHandle, recorder: Recorder) -> None:
        self.settings = settings
        self.twilio = twilio
        self.recorder = recorder

    def _opted_out(self, number: str) -> bool:
        """Whether `number` opted out; 503 when the record cannot be written or read (fail
        closed: an opt-out can be neither checked nor kept, and the send costs money)."""
        try:
            return self.recorder.opted_out_before_sending(number)
        except Settling as exc:
            error = json_error(
                503,
                "The record was unavailable a moment ago, and an opt-out kept meanwhile by "
                "another instance may not be applied yet: nothing was sent. Try again in "
                f"{math.ceil(exc.retry_after)} s.",
            )
            error.set_header("Retry-After", str(math.ceil(exc.retry_after)))
            raise error from None
        except KeptNotApplied as exc:
            fail(
                503,
                f"The record {exc.reason}, and one may be this number's: nothing was sent. "
                + (
                    "An operator must mend or move the file the server's log names."
                    if exc.stuck
                    else "Try again in a few seconds."
                ),
            )
        except StoreError as exc:
            reason = getattr(exc, "reason", "unavailable")
            fail(
                503,
                f"The record {reason}, so opt-outs can be neither checked nor kept: nothing "
                f"was sent. GET /healthz says whether it is back; sends resume {SETTLE:g} s "
                "after it is.",
            )

    def send_sms(self, sms: SmsRequest) -> dict[str, Any]:
        """Send the message through Twilio and record it; the new SID and status."""
        if self._opted_out(sms.to):
            fail(
                409,
                f"{sms.to} has opted out (texted STOP); they must text START before you can "
                "message them again.",
                opted_out=True,
            )
        message = self._twilio(
            lambda: send_text(self.twilio, self.recorder, sms.to, sms.body, sms.media_urls)
        )
        log.info("sent message %s to %s (%s)", message.sid, sms.to, message.status)
        return {"sid": message.sid, "status": message.status, "to": sms.to}

    def make_call(self, call: CallRequest) -> dict[str, Any]:
        """Start the call through Twilio and record it; the new SID and status."""
        settings = self.settings
        if not settings.phone_number:
            fail(503, "Calls need TWILIO_PHONE_NUMBER on the server.")
        self._opted_out(call.to)  # a call needs no SMS opt-in, but the record must take it
        how: dict[str, str] = {}
        if call.message:
            spoken = VoiceResponse()
            spoken.say(call.message, voice=settings.say_voice, language=settings.say_language)
            how["twiml"] = str(spoken)
            if len(how["twiml"]) > MAX_TWIML_CHARS:
                fail(
                    400,
                    f'"message" is too long: Twilio takes at most {MAX_TWIML_CHARS} characters of TwiML.',
                )
        elif settings.public_url:
            how["url"] = settings.public_url + settings.voice_path
        else:
            fail(
                503,
                'PUBLIC_URL is not set, so Twilio cannot fetch /voice_url; pass a "message" '
                "to say, or set PUBLIC_URL.",
            )
        callback = self.twilio.callback_url("/status")
        if callback:
            how["status_callback"] = callback

        created = self._twilio(lambda: place_call(self.twilio, self.recorder, call.to, **how))
        log.info("started call %s to %s (%s)", created.sid, call.to, created.status)
        return {"sid": created.sid, "status": created.status, "to": call.to}

    def _twilio(self, action: Callable[[], T]) -> T:
        """Run a Twilio request (which records itself); when Twilio refuses it or cannot be
        reached, answer a JSON 502 with Twilio's code."""
        try:
            return action()
        except MissingCredentials as exc:
            fail(503, str(exc))
        except TwilioException as exc:
            error = twilio_error(exc)
            log.warning("Twilio refused: %s %s", error.code, error.message)
            message = f"Twilio refused the request: {error.message}"
            if error.status and error.status >= 500:
                # Not retried (see dialtone.twilio_api): Twilio may have acted on it.
                message += (
                    " Twilio may have sent it anyway: check Twilio's console or the status "
                    "callbacks before you try again."
                )
            answer = json_error(
                502,
                message,
                twilio_code=error.code,
                twilio_status=error.status,
                more_info=error.more_info,
            )
            raise answer from None
        except (RequestException, ValueError) as exc:
            # The network, or an answer that is not Twilio's JSON (a proxy's error page).
            log.warning("Could not reach Twilio: %s", type(exc).__name__)
            raise json_error(502, "Could not reach Twilio; try again.") from None
