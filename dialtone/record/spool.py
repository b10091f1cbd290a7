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

    def __init__(self, path: Path) -> None:
        self.path = path
        self._thread_lock = threading.Lock()
        self.pending = path.exists()  # left by an earlier run: applied at the first write

    @classmethod
    def beside(cls, database: Path) -> OptOutSpool:
        """The spool for the record at (or configured at) `database`."""
        return cls(database.with_name(database.name + "-opt-outs.jsonl"))

    def add(self, change: OptOutChange) -> None:
        """Append `change`, durably (OSError when the disk refuses)."""
        line = json.dumps(asdict(change), ensure_ascii=False) + "\n"
        with self._locked():
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line.encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            self.pending = True

    def replay(self, apply: Callable[[OptOutChange], None]) -> int:
        """Apply every kept change in order, then forget them; how many were applied. What
        `apply` raises stops the replay and keeps the file (each change is safe to apply
        again)."""
        with self._locked():
            try:
                text = self.path.read_text(encoding="utf-8")
            except FileNotFoundError:
                self.pending = False
                return 0
            changes = list(_parse(text, self.path))
            for change in changes:
                apply(change)
            self.path.unlink()
            self.pending = False
            return len(changes)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with self._thread_lock:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if fcntl is None:
                yield
                return
            lock = os.open(
                self.path.with_name(self.path.name + ".lock"),
                os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                0o600,
            )
            try:
                fcntl.flock(lock, fcntl.LOCK_EX)
                yield
            finally:
                os.close(lock)  # closing releases the flock


def _parse(text: str, path: Path) -> Iterator[OptOutChange]:
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            fields = json.loads(line)
            yield OptOutChange(
                number=str(fields["number"]),
                opted_out=bool(fields["opted_out"]),
                keyword=fields.get("keyword"),
                at=str(fields["at"]),
            )
        except (ValueError, KeyError, TypeError):  # a line cut short by a crash mid-write
            log.warning("Skipping line %d of %s: not an opt-out change.", number, path)
