"""The lock the Dialtone processes sharing one record take around each write transaction.

With WORKERS > 1 every process writes to the same SQLite file. SQLite's own answer to a writer
already in progress is SQLITE_BUSY and a busy handler that sleeps 1, 2, 5, 10, 15, 20, 25 ms ...
between retries, while a Dialtone write takes a fraction of a millisecond: measured with two
workers, that sleeping made throughput barely better than one worker and pushed p99 latency past
60 ms. An flock() on a file next to the database is handed on within microseconds of release.

The lock belongs to the open file, so a Store (and with it this lock) must be made after a fork,
never inherited through one: each instance builds its own app in its own process (dialtone.web.serving).

flock() is POSIX. On Windows, where several instances on one port do not exist either, there is
no writer lock: `WriterLock.beside()` answers None and SQLite's busy timeout keeps writers apart.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("dialtone.record.store")

FIRST_WAIT = 0.00005  # seconds; doubled on each try up to MAX_WAIT
MAX_WAIT = 0.001


class WriterLock:
    """An exclusive flock on `<database>-writer.lock`, waited for with a bounded timeout."""

    def __init__(self, database: Path) -> None:
        self.path = database.with_name(database.name + "-writer.lock")
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    @classmethod
    def beside(cls, database: Path | str) -> WriterLock | None:
        """The lock for a database file; None for ":memory:" or when the file cannot be made
        (SQLite's busy timeout still keeps writers apart then, only more slowly)."""
        if str(database) == ":memory:" or fcntl is None:
            return None
        try:
            return cls(Path(database))
        except OSError as exc:
            log.warning("No writer lock beside %s (%s); relying on SQLite's", database, exc)
            return None

    def acquire(self, timeout: float) -> bool:
        """Take the lock, waiting up to `timeout` seconds; False if another process kept it."""
        fd = self._descriptor()
        deadline = time.monotonic() + timeout
        wait = FIRST_WAIT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return False
            time.sleep(wait)
            wait = min(wait * 2, MAX_WAIT)

    def release(self) -> None:
        """Let the next writer in."""
        fcntl.flock(self._descriptor(), fcntl.LOCK_UN)

    def close(self) -> None:
        """Close the lock file (releasing the lock). Safe to call twice."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def _descriptor(self) -> int:
        if self._fd is None:
            raise ValueError("the writer lock is closed")
        return self._fd
