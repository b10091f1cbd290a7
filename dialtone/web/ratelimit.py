"""Rate limiters: the interface every one shares, and the in-process sliding-window one.

With PostgreSQL the app's limiters count in the database instead, across instances
(dialtone.record.limits); with SQLite they are these, counting in each process's memory.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol


class Limiter(Protocol):
    """What ApiGuard and the voice menu ask of a rate limiter."""

    limit: int

    def hit(self, key: str) -> float | None:
        """Count a hit; None if allowed, else the seconds to wait before the next one is."""
        ...


# (scope, limit, window in seconds) -> a limiter. The app picks the implementation.
LimiterFactory = Callable[[str, int, float], Limiter]


def in_memory(scope: str, limit: int, window: float = 60.0) -> Limiter:
    """A limiter counting in this process's memory (`scope` only names it)."""
    return RateLimiter(limit, window)


class RateLimiter:
    """At most `limit` hits per `window` seconds for each key."""

    def __init__(
        self, limit: int, window: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str) -> float | None:
        """Count a hit; None if allowed, else the seconds to wait before the next one is."""
        now = self.clock()
        with self._lock:
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - self.window:
                hits.popleft()
            if len(hits) >= self.limit:
                return hits[0] + self.window - now
            hits.append(now)
            return None
