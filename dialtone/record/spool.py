"""Opt-out changes the record could not take, kept on local disk until it can.

A STOP that arrives while the record cannot be written is still answered; the change is appended
here (one JSON line, fsynced) and applied to the record once a write succeeds again, so that the
next `/send_sms` to that number is refused as it would have been. Each change carries the time
it arrived and is applied only over an older state, so a START recorded meanwhile wins over a
STOP kept from before it, and applying a change twice changes nothing.

The file sits beside DATABASE_PATH (also with DATABASE_URL: each machine keeps its own). The
processes of one machine share it: an append and a replay take its lock (flock where the
platform has it; Windows runs one process).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("dialtone.record")


@dataclass(frozen=True)
class OptOutChange:
    """One STOP (opted_out) or START (not) from `number`, as it arrived at `at`."""

    number: str
    opted_out: bool
    keyword: str | None
    at: str  # the record's timestamp format


class OptOutSpool:
    """The pending opt-out changes of this machine, in a JSON-lines file."""

    RECHECK = 1.0  # seconds between looks for a file another process of the machine wrote

    def __init__(self, path: Path) -> None:
        self.path = path
        self._thread_lock = threading.Lock()
        self._pending = False
        self._checked = -self.RECHECK  # time.monotonic() of the last look at the file

    @classmethod
    def beside(cls, database: Path) -> OptOutSpool:
        """The spool for the record at (or configured at) `database`."""
        return cls(database.with_name(database.name + "-opt-outs.jsonl"))

    def pending(self, *, now: bool = False) -> bool:
        """Whether changes wait: kept by this process, or in the file, which another process
        of this machine (or an earlier run) may have written. The file is looked at once a
        RECHECK at most, or at once when `now` (before a send checks the opt-out list)."""
        if self._pending:
            return True
        moment = time.monotonic()
        if now or moment - self._checked >= self.RECHECK:
            self._checked = moment
            try:
                self._pending = self.path.exists()
            except OSError:  # a directory this user may not search: nothing kept there by it
                self._pending = False
        return self._pending

    def add(self, change: OptOutChange) -> None:
        """Append `change`, durably (OSError when the disk refuses)."""
        line = (json.dumps(asdict(change)) + "\n").encode()  # ASCII: no character cut in two
        with self._locked(wait=True):
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            size = None
            try:
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":  # a line cut by a crash
                    line = b"\n" + line
                written = 0
                while written < len(line):  # a nearly full disk may take part of it
                    written += os.write(fd, line[written:])
                os.fsync(fd)
            except OSError:
                if size is not None:
                    os.ftruncate(fd, size)  # no partial line left for the next one to join
                raise
            finally:
                os.close(fd)
            self._pending = True

    def replay(self, apply: Callable[[OptOutChange], None], *, wait: bool = False) -> int | None:
        """Apply every kept change in order, then forget them; how many were applied, or None
        when another thread or process is replaying (and not `wait`). What `apply` raises stops
        the replay and keeps the file (each change is safe to apply again)."""
        with self._locked(wait=wait) as mine:
            if not mine:
                return None
            try:
                data = self.path.read_bytes()
            except FileNotFoundError:
                self._pending = False
                return 0
            changes = list(_parse(data, self.path))
            for change in changes:
                apply(change)
            self.path.unlink()
            self._pending = False
            return len(changes)

    @contextmanager
    def _locked(self, *, wait: bool) -> Iterator[bool]:
        """The spool to itself (True), or, when not `wait` and it is taken, False at once."""
        if not self._thread_lock.acquire(blocking=wait):
            yield False
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if fcntl is None:
                yield True
                return
            lock = os.open(
                self.path.with_name(self.path.name + ".lock"),
                os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                0o600,
            )
            try:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
                except BlockingIOError:
                    yield False
                    return
                yield True
            finally:
                os.close(lock)  # closing releases the flock
        finally:
            self._thread_lock.release()


def _parse(data: bytes, path: Path) -> Iterator[OptOutChange]:
    for at_line, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            fields = json.loads(line.decode("utf-8"))
            yield OptOutChange(
                number=str(fields["number"]),
                opted_out=bool(fields["opted_out"]),
                keyword=fields.get("keyword"),
                at=str(fields["at"]),
            )
        except (ValueError, KeyError, TypeError):  # a line cut short by a crash mid-write
            log.warning("Skipping line %d of %s: not an opt-out change.", at_line, path)
