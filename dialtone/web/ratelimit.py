"""Rate limiters: the interface every one shares, and the in-process sliding-window one.

The interface (`Limiter`, defined beside the shared one in dialtone.record.limits), so callers never
depend on where the counts live:

- `hit(key) -> float | None`: count a hit for `key`; None when it is allowed, else the seconds
  to wait before the next one would be (a refused hit is not counted).
- `locked(key) -> float | None`: the same answer without counting: is `key` over the limit now?
  The API asks it before checking a token, so an address that guessed too often is refused even
  with the right token until its lock expires.
- `limit`: the number of hits allowed per window (for messages).

With PostgreSQL the app's limiters count in the database instead, across instances
(dialtone.record.limits); with SQLite they are these, counting in each process's memory.

Memory: keys idle for a whole window are dropped as new ones arrive, and at most `max_keys` are
kept; past that the least recently seen key is forgotten (it loses its count, which errs toward
letting a client in, never toward refusing one it should not). Addresses are cheap to change, so
this bounds memory, not an attacker with many addresses: that is the proxy's job (docs/security.md).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from dialtone.record.limits import Limiter, LimiterFactory

__all__ = ["Limiter", "LimiterFactory", "RateLimiter", "in_memory"]


def in_memory(scope: str, limit: int, window: float = 60.0) -> Limiter:
    """A limiter counting in this process's memory (`scope` only names it)."""
    return RateLimiter(limit, window)


MAX_KEYS = 10_000  # ~2 MB at most: a key and a deque of at most `limit` floats each


class RateLimiter:
    """At most `limit` hits per `window` seconds for each key, remembering at most `max_keys`."""

    def __init__(
        self,
        limit: int,
        window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = MAX_KEYS,
    ) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self.max_keys = max_keys
        # Least recently hit first: expiry and eviction both pop from the front.
        self._hits: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def hit(self, key: str) -> float | None:
        """Count a hit; None if allowed, else the seconds to wait before the next one is."""
        now = self.clock()
        with self._lock:
            hits = self._current(key, now)
            if hits is None:
                self._forget(now)
                hits = self._hits[key] = deque()
            self._hits.move_to_end(key)
            if len(hits) >= self.limit:
                return hits[0] + self.window - now
            hits.append(now)
            return None

    def locked(self, key: str) -> float | None:
        """Without counting: None if a hit for `key` would be allowed now, else the seconds left."""
        now = self.clock()
        with self._lock:
            hits = self._current(key, now)
            if hits is None or len(hits) < self.limit:
                return None
            return hits[0] + self.window - now

    def __len__(self) -> int:
        """How many keys are remembered (bounded by `max_keys`)."""
        return len(self._hits)

    def _current(self, key: str, now: float) -> deque[float] | None:
        """The key's hits still inside the window (None for a key not remembered)."""
        hits = self._hits.get(key)
        if hits is not None:
            while hits and hits[0] <= now - self.window:
                hits.popleft()
        return hits

    def _forget(self, now: float) -> None:
        """Before adding a key: drop keys idle for a whole window, then the least recent ones
        until there is room for one more."""
        while self._hits:
            oldest_key, oldest = next(iter(self._hits.items()))
            idle = not oldest or oldest[-1] <= now - self.window
            if not idle and len(self._hits) < self.max_keys:
                break
            del self._hits[oldest_key]
