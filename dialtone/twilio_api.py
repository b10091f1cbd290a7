"""The one place a `twilio.rest.Client` is made, and the helpers around it.

`TWILIO_API_URL` redirects every request the client makes (https://api.twilio.com and any other
*.twilio.com host) to another base URL: the local sandbox, a mock, or the tests' fake Twilio.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from dialtone.errors import DialtoneError
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
