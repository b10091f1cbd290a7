"""The one place a `twilio.rest.Client` is made, and the helpers around it.

`TWILIO_API_URL` redirects every request the client makes (https://api.twilio.com and any other
*.twilio.com host) to another base URL: the local sandbox, a mock, or the tests' fake Twilio.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client
from twilio.rest.api.v2010.account.message import MessageInstance

from dialtone.errors import DialtoneError
from dialtone.phone_numbers import WHATSAPP_PREFIX
from dialtone.settings import Settings


class MissingCredentials(DialtoneError):
    """An operation needs TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN and they are not set."""


class RedirectingHttpClient(TwilioHttpClient):
    """A TwilioHttpClient that sends requests for *.twilio.com to another base URL."""

    def __init__(self, base_url: str | None, timeout: float) -> None:
        super().__init__(timeout=timeout)
        self.base = urlsplit(base_url) if base_url else None

    def rewrite(self, url: str) -> str:
        """The URL the request really goes to."""
        parts = urlsplit(url)
        if self.base is None or not (parts.hostname or "").endswith("twilio.com"):
            return url
        path = self.base.path.rstrip("/") + parts.path
        return urlunsplit((self.base.scheme, self.base.netloc, path, parts.query, parts.fragment))

    def request(self, method: str, url: str, *args: object, **kwargs: object) -> Response:
        return super().request(method, self.rewrite(url), *args, **kwargs)


def make_client(settings: Settings) -> Client:
    """A twilio Client for the configured account, honouring TWILIO_API_URL and TWILIO_TIMEOUT."""
    if not settings.has_credentials:
        raise MissingCredentials(
            "This needs Twilio credentials: set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN in .env "
            "(or run `make dev` without them to use the local sandbox)."
        )
    http_client = RedirectingHttpClient(settings.twilio_api_url, settings.twilio_timeout)
    return Client(settings.account_sid, settings.auth_token, http_client=http_client)


class TwilioHandle:
    """The app's Twilio client, made from settings on first use (so the app starts without one)."""

    def __init__(self, settings: Settings, client: Client | None = None) -> None:
        self.settings = settings
        self._client = client
        self._lock = threading.Lock()

    @property
    def client(self) -> Client:
        """The client; MissingCredentials if there is none to make."""
        with self._lock:
            if self._client is None:
                self._client = make_client(self.settings)
            return self._client

    def callback_url(self, path: str) -> str | None:
        """PUBLIC_URL + path, or None when there is no public URL for Twilio to call back."""
        return self.settings.public_url + path if self.settings.public_url else None

    def send_message(
        self, to: str, body: str | None, media_urls: list[str] | None = None
    ) -> MessageInstance:
        """Send an SMS/MMS/WhatsApp message from the number (or Messaging Service), with a status callback to /status."""
        settings = self.settings
        sender: dict[str, str] = {}
        if settings.messaging_service_sid:
            sender["messaging_service_sid"] = settings.messaging_service_sid
        elif settings.phone_number:
            from_ = settings.phone_number
            if to.startswith(WHATSAPP_PREFIX):
                from_ = WHATSAPP_PREFIX + from_
            sender["from_"] = from_
        else:
            raise MissingCredentials(
                "Sending needs TWILIO_PHONE_NUMBER or TWILIO_MESSAGING_SERVICE_SID."
            )
        optional: dict[str, object] = {}
        if body:
            optional["body"] = body
        if media_urls:
            optional["media_url"] = media_urls
        callback = self.callback_url("/status")
        if callback:
            optional["status_callback"] = callback
        return self.client.messages.create(to=to, **sender, **optional)


@dataclass(frozen=True)
class TwilioError:
    """What Twilio said when it refused a request: its error code, HTTP status and message."""

    code: int | None
    status: int | None
    message: str

    @property
    def more_info(self) -> str | None:
        """Twilio's page about the error code."""
        return f"https://www.twilio.com/docs/errors/{self.code}" if self.code else None


def twilio_error(exc: TwilioException) -> TwilioError:
    """Read the code, status and message out of any exception the twilio client raises."""
    if isinstance(exc, TwilioRestException):
        return TwilioError(exc.code, exc.status, exc.msg or str(exc.args[0] if exc.args else ""))
    if isinstance(exc, TwilioServiceException):
        return TwilioError(exc.code, exc.status, exc.detail or exc.title)
    # A list page that is not HTTP 200 raises a plain TwilioException("Unable to fetch page",
    # response), with Twilio's JSON error in the response.
    response: Any = exc.args[1] if len(exc.args) > 1 else None
    try:
        body = json.loads(response.text)
        return TwilioError(body.get("code"), response.status_code, str(body.get("message", "")))
    except (AttributeError, ValueError, TypeError):
        return TwilioError(None, None, str(exc.args[0] if exc.args else exc))
