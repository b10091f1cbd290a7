"""While the record fails: answer at once, and let one thread find out when it is back.

Without this, every webhook during an outage waits out the failure itself (a pool wait and a
retry while PostgreSQL is down, statement_timeout behind a lock, SQLite's busy timeout), holding
a waitress thread for 1.5 to 5 s; at a few webhooks a second the queue then grows past
Twilio's 15 s. So the first failure opens the breaker: the Recorder stops trying (each lost
record is still logged with its SID, each opt-out change still kept), /healthz answers 503 at
once, and a thread of its own probes the record (GET /healthz's write) every PROBE_EVERY s. The
first probe that passes closes it, so from the moment /healthz says 200 again every webhook is
recorded. The probe waits briefly (PROBE_WAIT) for locks and connections, so that it does not
hold the store's own lock for long (SQLite's opt-out list is still read meanwhile).

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
PROBE_WAIT = 0.25  # seconds a probe waits for a lock or a pooled connection
# Seconds after the record is back during which sends are still refused: twice what another
# instance takes to see it back and apply what it kept (a probe, a reconnection at most once a
# second, the apply).
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
        """`probe` writes to the record, briefly: None when it took the write, else why not;
        `on_close` runs in the probing thread once one did (applying kept opt-outs)."""
        self._probe = probe
        self._on_close = on_close
        self._probe_every = PROBE_EVERY if probe_every is None else probe_every
        self._settle = SETTLE if settle is None else settle
        self._lock = threading.Lock()
        self._failure: StoreUnavailable | None = None
        self._since = 0.0  # time.monotonic() when it opened
        self._trips = 0  # failures reported so far: a probe passes only if none came meanwhile
        self._passed_at = -float("inf")  # time.monotonic() when the last probe passed
        self._stopped = False
        self._wake = threading.Event()  # set to stop the probing thread
        self._thread: threading.Thread | None = None

    def failure(self) -> StoreUnavailable | None:
        """While open, the last failure (the first's, or the last probe's); else None."""
        return self._failure

    def passed_at(self) -> float:
        """time.monotonic() when a probe last passed (a health check as good as any)."""
        return self._passed_at

    def settling(self, disrupted_at: float = -float("inf")) -> float:
        """Seconds left of the settling time after it last closed, or after `disrupted_at`
        (an outage the store came through without failing; 0 when none is left)."""
        since = max(self._passed_at, disrupted_at)
        return max(0.0, since + self._settle - time.monotonic())

    def trip(self, failure: StoreUnavailable, began: float | None = None) -> None:
        """A write that `began` (time.monotonic()) failed: open (logged once per outage) and
        probe until one passes. One that began before the last probe passed is old news (it
        waited out the outage that probe ended): it opens nothing."""
        with self._lock:
            if began is not None and began < self._passed_at:
                return
            self._trips += 1
            opened = self._failure is None
            if opened:
                self._since = time.monotonic()
            self._failure = failure
            if not self._stopped and self._thread is None:
                self._thread = threading.Thread(target=self._run, name="record probe", daemon=True)
                self._thread.start()  # under the lock: stop() never sees it unstarted
        if opened:
            log.error(
                "%s Until it takes writes again, webhooks are answered without being recorded "
                "(each one logged) and sends are refused; it is tried every %g s.",
                failure,
                self._probe_every,
            )

    def stop(self) -> None:
        """Stop probing (at shutdown); it stays as it is."""
        with self._lock:
            self._stopped = True
            thread = self._thread
        self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)

    def _run(self) -> None:
        """Probe until one passes (then close, and run on_close), or until stopped. The thread
        stays this breaker's until it returns, so that stop() waits for on_close too."""
        try:
            while not self._wake.wait(self._probe_every):
                trips = self._trips
                try:
                    failure = self._probe()
                except Exception:  # a bug, not an outage: keep probing, never stay open
                    log.exception("The record's probe failed")
                    continue
                with self._lock:
                    if self._stopped:
                        self._thread = None
                        return  # shutting down: it stays as it is
                    if failure is not None or self._trips != trips:  # a write failed meanwhile
                        self._failure = failure or self._failure
                        continue
                    down_for = time.monotonic() - self._since
                    self._passed_at = time.monotonic()
                    self._failure = None
                log.warning(
                    "The record takes writes again, after %.1f s; sends resume in %g s.",
                    down_for,
                    self._settle,
                )
                self._on_close()
                with self._lock:  # decided under the lock trip() takes: it sees no thread, or
                    if self._failure is None:  # this one sees its failure
                        self._thread = None
                        return
                # It opened again while on_close ran (no new thread was started): probe on.
        finally:
            with self._lock:
                if self._thread is threading.current_thread():
                    self._thread = None
