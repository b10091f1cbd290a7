"""The token-protected JSON API's shared guard: bearer auth, rate limits and JSON errors.

One `ApiGuard` serves every API route (POST /send_sms, /make_call, GET /messages, /calls), so
they share API_TOKEN, one rate limit per token, and the slow-down on failed authentications:
after AUTH_FAILURES_PER_MINUTE wrong or missing tokens from one client address, that address is
refused (429) until its lock expires, even with the right token, so a guesser cannot tell a hit.
The address is REMOTE_ADDR: waitress sets it from X-Forwarded-For only when the request came
through TRUSTED_PROXY (Bottle's `request.remote_addr` would believe the header from anyone).
"""

from __future__ import annotations

import hmac
import logging
import math
from typing import NoReturn

from bottle import request

from dialtone.settings import Settings
from dialtone.untrusted import printable
from dialtone.web.jsonapi import fail, json_error
from dialtone.web.ratelimit import Limiter, LimiterFactory, in_memory

log = logging.getLogger("dialtone.api")

AUTH_FAILURES_PER_MINUTE = 10


class ApiGuard:
    """Bearer-token authentication and the per-token rate limit of the JSON API."""

    def __init__(self, settings: Settings, limiters: LimiterFactory = in_memory) -> None:
        """`limiters` makes the limiters: shared by every instance when the app passes the
        record's (PostgreSQL), else each process counts alone."""
        self.settings = settings
        self.limiter = limiters("api", settings.rate_limit_per_minute, 60.0)
        # Wrong or missing tokens, per client address: guessing API_TOKEN stays slow.
        self.failures = limiters("api-auth-failures", AUTH_FAILURES_PER_MINUTE, 60.0)

    def authorize(self) -> None:
        """401 without a bearer token, 403 with a wrong one, 429 over the rate limit."""
        expected = self.settings.api_token
        if not expected:
            fail(503, "The API is off: set API_TOKEN on the server to switch it on.")
        client = client_address()
        wait = self.failures.locked(client)
        if wait is not None:
            self.refuse(self.failures, wait, "failed authentications")
        scheme, _, token = (request.get_header("Authorization") or "").partition(" ")
        token = token.strip()
        if (
            scheme.lower() == "bearer"
            and token
            and hmac.compare_digest(token.encode(), expected.encode())
        ):
            self.throttle(self.limiter, expected, "requests")
            return
        self.throttle(self.failures, client, "failed authentications")
        locked = self.failures.locked(client)
        if locked is not None:  # this failure completed the lock: logged once per lock
            log.warning(
                "API: refusing %s for %d s after %d wrong or missing tokens within a minute.",
                printable(client, 60),
                math.ceil(locked),
                self.failures.limit,
            )
        if scheme.lower() != "bearer" or not token:
            error = json_error(401, "Send Authorization: Bearer <API_TOKEN>.")
            error.set_header("WWW-Authenticate", "Bearer")
            raise error
        fail(403, "The bearer token is not this server's API_TOKEN.")

    @staticmethod
    def throttle(limiter: Limiter, key: str, what: str) -> None:
        """Count a hit; 429 with Retry-After when `key` is over the limit."""
        wait = limiter.hit(key)
        if wait is not None:
            ApiGuard.refuse(limiter, wait, what)

    @staticmethod
    def refuse(limiter: Limiter, wait: float, what: str) -> NoReturn:
        """429 with Retry-After (`wait` seconds, rounded up)."""
        error = json_error(
            429, f"Rate limit of {limiter.limit} {what} a minute reached; retry later."
        )
        error.set_header("Retry-After", str(max(1, math.ceil(wait))))
        raise error


def client_address() -> str:
    """The client's address as waitress saw it (through TRUSTED_PROXY: the proxy's client)."""
    return str(request.environ.get("REMOTE_ADDR") or "?")
