"""Rate limits that count across every instance sharing the record (PostgreSQL), or per process.

The limiters share one interface, `hit(key) -> float | None` (None when allowed, else the
seconds to wait), `locked(key)` (the same answer without counting) and a `limit`. With PostgreSQL the hits live in the `rate_hits` table, so the
API's rate limit, the failed-token lockout and the voice menu's text caps hold however many
instances serve the number; with SQLite each process counts in its own memory
(the app hands in dialtone.web.ratelimit's), as the docs say.

A hit is one short transaction: an advisory lock on the (scope, key) pair so two instances
counting the same key take turns, the key's expired hits deleted, the rest counted, and this
hit added when it is allowed. Times come from the database's clock, so instances agree.
When the database cannot be reached, the limiter counts in this process's memory meanwhile
(logged once) rather than letting everything through or refusing everything; while the
record's breaker is open it does so without trying the database.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from dialtone.record import forms
from dialtone.record.base import RecordStore
from dialtone.record.breaker import Breaker
from dialtone.record.errors import StoreError

log = logging.getLogger("dialtone.record.limits")

SWEEP_EVERY = 500  # hits between sweeps of every scope's expired rows (bounded table)
# Seconds a limiter counts in memory after a failure before it tries the database again: a lock
# on rate_hits would otherwise hold every request for the statement timeout, each time.
RETRY_AFTER_FAILURE = 5.0

# The database's time, and the key's hits inside the window.
COUNT = """
WITH clock AS (SELECT extract(epoch FROM clock_timestamp())::float8 AS now)
SELECT clock.now, count(hits.at), min(hits.at) FROM clock
LEFT JOIN rate_hits AS hits ON hits.scope = %(scope)s AND hits.key = %(key)s
                           AND hits.at > clock.now - %(window)s
GROUP BY clock.now
"""
# This hit, and the key's expired ones gone.
ADD = """
WITH expired AS (
    DELETE FROM rate_hits WHERE scope = %(scope)s AND key = %(key)s AND at <= %(now)s - %(window)s
)
INSERT INTO rate_hits (scope, key, at) VALUES (%(scope)s, %(key)s, %(now)s)
"""


class Limiter(Protocol):
    """What ApiGuard and the voice menu ask of a rate limiter: this module's SharedLimiter and
    dialtone.web.ratelimit's RateLimiter (the one definition of the interface)."""

    limit: int

    def hit(self, key: str) -> float | None:
        """Count a hit; None if allowed, else the seconds to wait before the next one is."""
        ...

    def locked(self, key: str) -> float | None:
        """Without counting: None if a hit for `key` would be allowed now, else the seconds left."""
        ...


# (scope, limit, window in seconds) -> a limiter. The app picks the implementation.
LimiterFactory = Callable[[str, int, float], Limiter]


def limiter_factory(
    store: RecordStore | None, in_memory: LimiterFactory, breaker: Breaker | None = None
) -> LimiterFactory:
    """Limiters counted in the record when `store` can share them (PostgreSQL), each with an
    `in_memory` one for when the database is away (`breaker` open, or a failure); else
    `in_memory` ones alone."""

    def make(scope: str, limit: int, window: float = 60.0) -> Limiter:
        fallback = in_memory(scope, limit, window)
        if store is not None and store.shared:
            return SharedLimiter(store, scope, limit, window, fallback=fallback, breaker=breaker)
        return fallback

    return make


class SharedLimiter:
    """At most `limit` hits per `window` seconds for each key, counted in the database."""

    def __init__(
        self,
        store: RecordStore,
        scope: str,
        limit: int,
        window: float,
        *,
        fallback: Limiter,
        breaker: Breaker | None = None,
    ) -> None:
        self.store = store
        self.breaker = breaker
        self.scope = scope
        self.limit = limit
        self.window = window
        self.fallback = fallback
        self._hits = 0
        self._lock = threading.Lock()
        self._degraded = False
        self._failed_at = -float("inf")  # time.monotonic() of the last failure

    def hit(self, key: str) -> float | None:
        """Count a hit; None if allowed, else the seconds to wait before the next one is."""
        try:
            key = forms.text(key)
            wait: float | None = self._in_record(lambda q: self._hit(q.conn, key))
        except StoreError as exc:
            if not self._degraded:
                log.warning("Counting %s in this process until the record is back: %s",
                            self.scope, exc)  # fmt: skip
                self._degraded = True
            return self.fallback.hit(key)
        if self._degraded:
            log.info("Counting %s in the record again", self.scope)
            self._degraded = False
        return wait

    def locked(self, key: str) -> float | None:
        """Without counting: None if a hit for `key` would be allowed now, else the seconds left."""
        try:
            key = forms.text(key)
            return self._in_record(lambda q: self._locked(q.conn, key))
        except StoreError:
            return self.fallback.locked(key)

    def _in_record(self, count: Callable[[Any], float | None]) -> float | None:
        """`count` in one transaction; StoreUnavailable at once while the breaker is open."""
        if self.breaker is not None and (failure := self.breaker.failure()) is not None:
            raise failure
        if time.monotonic() - self._failed_at < RETRY_AFTER_FAILURE:
            raise StoreError("the limiter failed a moment ago")
        # A failure here does not open the record's breaker: a statement timeout on one hot key
        # (wrong tokens hammering the API's lockout) says nothing of the record's other writes.
        try:
            return self.store.transaction(count)
        except StoreError:
            self._failed_at = time.monotonic()
            raise

    def _locked(self, conn: Any, key: str) -> float | None:
        params: dict[str, Any] = {"scope": self.scope, "key": key, "window": self.window}
        now, count, oldest = conn.execute(COUNT, params).fetchone()
        return float(oldest + self.window - now) if count >= self.limit else None

    def _hit(self, conn: Any, key: str) -> float | None:
        params: dict[str, Any] = {"scope": self.scope, "key": key, "window": self.window}
        conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"{self.scope}\n{key}",)
        )
        now, count, oldest = conn.execute(COUNT, params).fetchone()
        params["now"] = now
        if self._sweep_due():  # keys nobody hits any more: their rows go too
            conn.execute(
                "DELETE FROM rate_hits WHERE scope = %s AND at <= %s - %s",
                (self.scope, now, self.window),
            )
        if count >= self.limit:
            return float(oldest + self.window - now)
        conn.execute(ADD, params)
        return None

    def _sweep_due(self) -> bool:
        with self._lock:
            self._hits += 1
            return self._hits % SWEEP_EVERY == 0
