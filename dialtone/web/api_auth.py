"""The token-protected JSON API's shared guard: bearer auth, rate limits and JSON errors.

One `ApiGuard` serves every API route (POST /send_sms, /make_call, GET /messages, /calls), so
they share API_TOKEN, one rate limit per token, and the slow-down on failed authentications.
"""

from __future__ import annotations

import hmac
import math

from bottle import request

from dialtone.settings import Settings
from dialtone.web.jsonapi import fail, json_error
from dialtone.web.ratelimit import RateLimiter

AUTH_FAILURES_PER_MINUTE = 10


class ApiGuard:
    """Bearer-token authentication and the per-token rate limit of the JSON API."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.limiter = RateLimiter(settings.rate_limit_per_minute)
        # Wrong or missing tokens, per client address: guessing API_TOKEN stays slow.
        self.failures = RateLimiter(AUTH_FAILURES_PER_MINUTE)

    def authorize(self) -> None:
        """401 without a bearer token, 403 with a wrong one, 429 over the rate limit."""
        expected = self.settings.api_token
        if not expected:
            fail(503, "The API is off: set API_TOKEN on the server to switch it on.")
        scheme, _, token = (request.get_header("Authorization") or "").partition(" ")
        token = token.strip()
        if (
            scheme.lower() == "bearer"
            and token
            and hmac.compare_digest(token.encode(), expected.encode())
        ):
            self.throttle(self.limiter, expected, "requests")
            return
        self.throttle(self.failures, request.remote_addr or "?", "failed authentications")
        if scheme.lower() != "bearer" or not token:
            error = json_error(401, "Send Authorization: Bearer <API_TOKEN>.")
            error.set_header("WWW-Authenticate", "Bearer")
            raise error
        fail(403, "The bearer token is not this server's API_TOKEN.")

    @staticmethod
    def throttle(limiter: RateLimiter, key: str, what: str) -> None:
        """Count a hit; 429 with Retry-After when `key` is over the limit."""
        wait = limiter.hit(key)
        if wait is not None:
            error = json_error(
                429, f"Rate limit of {limiter.limit} {what} a minute reached; retry later."
            )
            error.set_header("Retry-After", str(max(1, math.ceil(wait))))
            raise error
