"""While the record fails: answer at once, and let one thread find out when it is back.

Without this, every webhook during an outage waits out the failure itself (a pool wait and a
retry while PostgreSQL is down, statement_timeout behind a lock, SQLite's busy timeout), holding
a waitress thread for 1.5 to 5 s; at a few webhooks a second the queue then grows past
Twilio's 15 s. So the first failure opens the breaker: the Recorder stops trying (each lost
record is still logged with its SID, each opt-out change still kept), /healthz answers 503 at
once, and a thread of its own probes the record (GET /healthz's write) every PROBE_EVERY s. The
first probe that passes closes it, so from the moment /healthz says 200 again every webhook is
recorded.

Closing starts a settling time (SETTLE s) during which sends are still refused: another
instance may hold a STOP it kept while the record was down, and applies it only when its own
probe passes, a moment later than this one's.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from dialtone.record.errors import StoreUnavailable

log = logging.getLogger("dialtone.record")

PROBE_EVERY = 0.25  # seconds between probes while the record fails
# Seconds after the record is back during which sends are still refused: more than another
# instance takes to see it back and apply what it kept (a probe, a reconnection once a second).
SETTLE = 3.0


class Breaker:
    """Open while the record fails (see the module docstring)."""

    def __init__(
        self,
        probe: Callable[[], StoreUnavailable | None],
        on_close: Callable[[], None] = lambda: None,
        *,
        probe_every: float | None = None,
        settle: float | None = None,
    ) -> None:
        """`probe` writes to the record: None when it took the write, else why not;
        `on_close` runs in the probing thread once it did (applying kept opt-outs)."""
        self._probe = probe
        self._on_close = on_close
        self._probe_every = PROBE_EVERY if probe_every is None else probe_every
        self._settle = SETTLE if settle is None else settle
        self._lock = threading.Lock()
        self._failure: StoreUnavailable | None = None
        self._since = 0.0  # time.monotonic() when it opened
        self._closed_at = -float("inf")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def failure(self) -> StoreUnavailable | None:
        """While open, the last failure (the first's, or the last probe's); else None."""
        return self._failure

    def down_for(self) -> float:
        """Seconds since it opened (0 while closed)."""
        failure, since = self._failure, self._since
        return time.monotonic() - since if failure is not None else 0.0

    def settling(self) -> float:
        """Seconds left of the settling time after it last closed (0 when none is left)."""
        return max(0.0, self._closed_at + self._settle - time.monotonic())

    def trip(self, failure: StoreUnavailable, began: float | None = None) -> None:
        """A write that `began` (time.monotonic()) failed: open (logged once per outage) and
        probe until one passes. One that began before the last probe passed is old news (it
        waited out the outage that probe ended): it opens nothing."""
        with self._lock:
            if began is not None and began < self._closed_at:
                return
            opened = self._failure is None
            if opened:
                self._since = time.monotonic()
            self._failure = failure
            thread = None
            if not self._stop.is_set() and self._thread is None:
                thread = threading.Thread(target=self._run, name="record probe", daemon=True)
                self._thread = thread
        if opened:
            log.error(
                "%s Until it takes writes again, webhooks are answered without being recorded "
                "(each one logged) and sends are refused; it is tried every %g s.",
                failure,
                self._probe_every,
            )
        if thread is not None:
            thread.start()

    def close(self) -> None:
        """Stop probing (at shutdown)."""
        self._stop.set()
        with self._lock:
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)

    def _run(self) -> None:
        try:
            while not self._stop.wait(self._probe_every):
                try:
                    failure = self._probe()
                except Exception:  # a bug, not an outage: keep probing, never stop open
                    log.exception("The record's probe failed")
                    continue
                with self._lock:
                    if failure is not None:
                        self._failure = failure
                        continue
                    down_for = time.monotonic() - self._since
                    self._failure = None
                    self._closed_at = time.monotonic()
                    self._thread = None
                log.warning(
                    "The record takes writes again, after %.1f s; sends resume in %g s.",
                    down_for,
                    self._settle,
                )
                self._on_close()
                return
        finally:
            with self._lock:
                if self._thread is threading.current_thread():
                    self._thread = None
