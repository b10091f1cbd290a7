"""The one place a `twilio.rest.Client` is made, and the helpers around it.

`TWILIO_API_URL` redirects every request the client makes (https://api.twilio.com and any other
*.twilio.com host) to another base URL: the local sandbox, a mock, or the tests' fake Twilio.

Retries: a request Twilio answers with 429 or a 5xx, or that fails on the network, is tried
again after an exponential backoff with jitter, at most MAX_ATTEMPTS times in all, and all of
it within TWILIO_TIMEOUT seconds. Only when that is safe: Twilio documents that creating a
message or a call (POST to Messages.json or Calls.json) is not idempotent, that a 5xx there may
have created it, and its REST API takes no idempotency key for them. So a create is retried only
when Twilio cannot have acted on it: a 429 (rejected before it was processed) or a connection
that was never made. Reads, and updates of an existing resource by its SID, are retried on any
429, 5xx or network failure.
"""

from __future__ import annotations

import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client
from twilio.rest.api.v2010.account.message import MessageInstance
from urllib3.exceptions import NewConnectionError

from dialtone.bot.destinations import check_destination
from dialtone.errors import DialtoneError
from dialtone.loopback import is_loopback_name
from dialtone.phone_numbers import WHATSAPP_PREFIX
from dialtone.settings import Settings


class MissingCredentials(DialtoneError):
    """An operation needs TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN and they are not set."""


log = logging.getLogger("dialtone.twilio")

MAX_ATTEMPTS = 3  # tries in all, for one REST request
BACKOFF_SECONDS = 0.25  # the first wait; it doubles with each retry, with jitter
MIN_ATTEMPT_SECONDS = 0.5  # no retry starts with less time than this left in TWILIO_TIMEOUT
# A SID at the end of a path: POSTing there updates an existing resource (idempotent).
_SID_PATH = re.compile(r"/[A-Z]{2}[0-9a-fA-F]{32}\.json$")


def is_loopback(url: str) -> bool:
    """True for a URL on this machine (127.0.0.0/8, ::1, localhost): the sandbox or a mock."""
    return is_loopback_name(urlsplit(url).hostname or "")


def creates(method: str, url: str) -> bool:
    """True for a POST that creates a resource (Messages.json, Calls.json): not idempotent."""
    return method.upper() == "POST" and not _SID_PATH.search(urlsplit(url).path)


def never_sent(exc: requests.RequestException) -> bool:
    """True when the request cannot have reached Twilio: the connection was never made."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    if isinstance(exc, requests.exceptions.ConnectionError):
        reason = getattr(exc.args[0] if exc.args else None, "reason", None)
        return isinstance(reason, NewConnectionError)
    return False


def retryable_status(status: int, create: bool) -> bool:
    """429 always (Twilio did nothing); a 5xx only when repeating the request is harmless."""
    return status == 429 or (status >= 500 and not create)


def backoff(attempt: int, base: float = BACKOFF_SECONDS) -> float:
    """The wait before retry number `attempt` (1, 2, ...): exponential, with jitter."""
    step: float = base * 2 ** (attempt - 1)
    return step / 2 + random.uniform(0, step / 2)  # noqa: S311 (jitter, not security)


class RedirectingHttpClient(TwilioHttpClient):
    """A TwilioHttpClient that sends requests for *.twilio.com to another base URL, with a
    total time budget and bounded, safe retries (see the module docstring)."""

    def __init__(
        self,
        base_url: str | None,
        timeout: float,
        *,
        attempts: int = MAX_ATTEMPTS,
        backoff_seconds: float = BACKOFF_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(timeout=timeout)
        self.base = urlsplit(base_url) if base_url else None
        if base_url and is_loopback(base_url) and self.session is not None:
            # The sandbox or a local mock: never through http_proxy (workshop networks set it).
            self.session.trust_env = False
        self.attempts = attempts
        self.backoff_seconds = backoff_seconds
        self.sleep = sleep

    def rewrite(self, url: str) -> str:
        """The URL the request really goes to."""
        parts = urlsplit(url)
        if self.base is None or not (parts.hostname or "").endswith("twilio.com"):
            return url
        path = self.base.path.rstrip("/") + parts.path
        return urlunsplit((self.base.scheme, self.base.netloc, path, parts.query, parts.fragment))

    def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        """Send the request (to the rewritten URL), retrying what is safe within the budget."""
        url = self.rewrite(url)
        budget = timeout or self.timeout or 10.0
        deadline = time.monotonic() + budget
        create = creates(method, url)
        attempt = 1
        failure: requests.RequestException | None
        while True:
            left = max(deadline - time.monotonic(), 0.1)
            try:
                response = super().request(
                    method, url, params, data, headers, auth, left, allow_redirects
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                if create and not never_sent(exc):
                    raise
                reason, wait, failure = type(exc).__name__, None, exc
            else:
                if not retryable_status(response.status_code, create):
                    return response
                reason, failure = f"HTTP {response.status_code}", None
                wait = _retry_after(response.headers)
            delay = backoff(attempt, self.backoff_seconds) if wait is None else wait
            if (
                attempt >= self.attempts
                or time.monotonic() + delay > deadline - MIN_ATTEMPT_SECONDS
            ):
                if failure is not None:
                    raise failure
                return response
            log.warning(
                "Twilio %s %s: %s; retry %d of %d in %.2f s",
                method.upper(),
                urlsplit(url).path,
                reason,
                attempt,
                self.attempts - 1,
                delay,
            )
            self.sleep(delay)
            attempt += 1


def _retry_after(headers: Any) -> float | None:
    """Seconds from a Retry-After header (the number form), or None."""
    raw = (headers or {}).get("Retry-After") or (headers or {}).get("retry-after")
    try:
        return max(0.0, float(raw)) if raw is not None else None
    except ValueError:
        return None


def make_client(settings: Settings, *, backoff_seconds: float = BACKOFF_SECONDS) -> Client:
    """A twilio Client for the configured account, honouring TWILIO_API_URL and TWILIO_TIMEOUT
    (the time one request may take in all, retries included)."""
    if not settings.has_credentials:
        raise MissingCredentials(
            "This needs Twilio credentials: set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN in .env "
            "(or run `make dev` without them to use the local sandbox)."
        )
    http_client = RedirectingHttpClient(
        settings.twilio_api_url, settings.twilio_timeout, backoff_seconds=backoff_seconds
    )
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
        self._check_destination(to)
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

    def create_call(self, to: str, **how: Any) -> Any:
        """Place a call from the number to `to` (`how`: twiml or url, status_callback, ...)."""
        self._check_destination(to, calls=True)
        return self.client.calls.create(to=to, from_=self.settings.phone_number, **how)

    def _check_destination(self, to: str, *, calls: bool = False) -> None:
        """The last line of the destination policy: every path out checks it first, with a
        better answer; this catches a path that forgot (DestinationRefused, fail closed)."""
        refusal = check_destination(to, self.settings, calls=calls)
        if refusal is not None:
            raise DestinationRefused(refusal.message)


class DestinationRefused(DialtoneError):
    """A text or call to a destination the policy refuses (dialtone.bot.destinations)."""


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
