"""Checkpoints of the record's WAL on a background thread, off the webhooks' path.

With SQLite's automatic checkpoint, the commit that takes the WAL past 1000 pages copies them
into the database file and fsyncs twice (synchronous=NORMAL syncs at checkpoints only) before
its webhook can answer: measured here, one commit in about a hundred took 4 to 7 ms, and while
it did the other worker processes waited for the writer lock. Here a thread with its own
connection runs a PASSIVE checkpoint every INTERVAL seconds instead: it never blocks a writer,
and the GIL is released while SQLite copies and syncs. What a commit guarantees is unchanged:
the same pages are synced at the same kind of checkpoint, only on another thread.

The writers keep SQLite's automatic checkpoint at a higher threshold (FALLBACK_PAGES) as a
safety net, so the WAL stays bounded even if this thread falls behind or fails.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

from dialtone.record.schema import BUSY_TIMEOUT_MS

log = logging.getLogger("dialtone.record.store")

INTERVAL = 0.05  # seconds between checkpoints: a few hundred WAL pages at full load
FALLBACK_PAGES = 8000  # the writers' own automatic checkpoint, should this thread fall behind


class Checkpointer(threading.Thread):
    """A daemon thread checkpointing `path`'s WAL every `interval` seconds until `stop()`."""

    def __init__(self, path: Path, interval: float = INTERVAL) -> None:
        super().__init__(name=f"checkpoint {path.name}", daemon=True)
        self.path = path
        self.interval = interval
        self._stopping = threading.Event()
        self._failures = 0

    def run(self) -> None:
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.DatabaseError as exc:
            log.warning("No background checkpoints for %s: %s", self.path, exc)
            return
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            while not self._stopping.wait(self.interval):
                self._checkpoint(conn)
        finally:
            conn.close()

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            self._failures = 0
        except sqlite3.DatabaseError as exc:
            # The writers' own checkpoint still bounds the WAL; say so once, not 20 times a second.
            self._failures += 1
            if self._failures == 1:
                log.warning("Background checkpoint of %s failed: %s", self.path, exc)

    def stop(self) -> None:
        """Stop after the checkpoint in progress, if any."""
        self._stopping.set()
        if self.is_alive():
            self.join()
