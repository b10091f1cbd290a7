"""Opt-out changes the record could not take, kept on local disk until it can.

A STOP that arrives while the record cannot be written is still answered; the change is appended
here (one JSON line, fsynced) and applied to the record once a write succeeds again, so that the
next `/send_sms` to that number is refused as it would have been. Each change carries the time
it arrived and is applied only over an older state, so a START recorded meanwhile wins over a
STOP kept from before it, and applying a change twice changes nothing.

The file sits beside DATABASE_PATH (also with DATABASE_URL: each machine keeps its own). The
processes of one machine share it: an append and a replay take its lock (flock where the
platform has it; Windows runs one process). Where the disk refuses too (the full disk that
stopped SQLite), the change is held in memory instead, until it is applied or the process
stops. `KeptOptOuts` puts the two together and applies them: after the next write that works,
before a send checks the opt-out list, and every RETRY seconds from a thread of its own while
any wait, so that the other machines learn of them without waiting for this one's traffic.
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

from dialtone.record.errors import StoreError
from dialtone.untrusted import printable

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

    def writable(self) -> OSError | None:
        """None when changes can be kept here (its directory and lock file made if missing);
        else why not."""
        try:
            with self._locked(wait=True):
                pass
        except OSError as exc:
            return exc
        return None

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
    bad: list[int] = []
    for at_line, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            fields = json.loads(line.decode("utf-8"))
            if not isinstance(fields["opted_out"], bool):  # a "false" by hand is no STOP
                raise TypeError("opted_out is not true or false")
            yield OptOutChange(
                number=str(fields["number"]),
                opted_out=fields["opted_out"],
                keyword=fields.get("keyword"),
                at=str(fields["at"]),
            )
        except (ValueError, KeyError, TypeError, RecursionError):  # cut short by a crash
            bad.append(at_line)
    if bad:
        rejected = path.with_name(path.name + ".rejected")
        with rejected.open("ab") as file:
            lines = data.splitlines()
            file.writelines(lines[n - 1] + b"\n" for n in bad)
        log.warning(
            "Skipped %d line(s) of %s that are not opt-out changes (the first is line %d); "
            "they are kept in %s.",
            len(bad),
            path,
            bad[0],
            rejected,
        )


class KeptOptOuts:
    """The opt-out changes waiting for the record: in the spool, else in memory."""

    RETRY = 2.0  # seconds between attempts to apply them from the thread

    def __init__(self, spool: OptOutSpool | None, apply: Callable[[OptOutChange], bool]) -> None:
        """`apply` writes one change to the record: True if it took, False if a newer change
        was there (StoreError while the record is down)."""
        self.spool = spool
        self._apply = apply
        self._held: list[OptOutChange] = []  # what the spool's disk refused
        self._lock = threading.Lock()
        self._stuck = False  # the spool could not be applied for a reason not the record's
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Apply what an earlier run kept, from the thread, without waiting for traffic."""
        if self.pending():
            self._retry_soon()

    def close(self) -> None:
        """Stop the thread (what is kept stays kept)."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=5)

    def pending(self, *, now: bool = False) -> bool:
        """Whether changes wait (`now`: look at the spool file at once)."""
        return bool(self._held) or (self.spool is not None and self.spool.pending(now=now))

    @property
    def stuck(self) -> bool:
        """The kept changes cannot be applied for a reason that is not the record's."""
        return self._stuck

    def keep(self, change: OptOutChange) -> None:
        """Keep a change the record could not take (logged either way)."""
        shown = printable(change.number, 40)
        try:
            if self.spool is None:
                raise OSError("no spool")
            self.spool.add(change)
        except OSError as exc:
            with self._lock:
                self._held.append(change)
            log.error(
                "The opt-out change of %s could not be kept on disk either (%s): it is held in "
                "memory, and sends are refused until it is applied. If this process stops "
                "first, redo it by hand (docs/opt-outs.md).",
                shown,
                exc,
            )
        else:
            log.warning(
                "Kept the opt-out change of %s in %s; it is applied when the record is back.",
                shown,
                self.spool.path,
            )
        self._retry_soon()

    def apply(self, *, wait: bool = False) -> None:
        """Apply what waits, if the record takes it; unless `wait`, not while another thread
        or process is at it."""
        if not self.pending(now=wait):
            return
        applied = superseded = 0

        def one(change: OptOutChange) -> None:
            nonlocal applied, superseded
            if self._apply(change):
                applied += 1
            else:
                superseded += 1

        try:
            if self._held and self._lock.acquire(blocking=wait):
                try:
                    while self._held:
                        one(self._held[0])
                        self._held.pop(0)
                finally:
                    self._lock.release()
            if self.spool is not None:
                self.spool.replay(one, wait=wait)
        except StoreError as exc:  # down again: the next success, or the thread, tries again
            log.debug("The kept opt-out changes wait for the record: %s", exc)
        except Exception as exc:  # whatever it is, the answer still goes out
            if not self._stuck:
                log.error(
                    "Cannot apply the opt-out changes kept in %s, so sends are refused: %s. "
                    "Mend the file (or move it away and redo its changes by hand, "
                    "docs/opt-outs.md).",
                    self.spool.path if self.spool else "memory",
                    exc,
                )
            self._stuck = True
            return
        else:
            self._stuck = False
        if applied or superseded:
            log.warning(
                "Applied %d opt-out change(s) kept while the record was down%s.",
                applied,
                f" ({superseded} already superseded by a newer STOP or START)"
                if superseded
                else "",
            )

    def _retry_soon(self) -> None:
        """Make sure the thread runs: it applies what waits every RETRY s until none does."""
        with self._lock:
            if self._stop.is_set() or (self._thread is not None and self._thread.is_alive()):
                return
            self._thread = threading.Thread(target=self._retry, name="kept opt-outs", daemon=True)
            self._thread.start()

    def _retry(self) -> None:
        while not self._stop.is_set() and self.pending(now=True):
            self.apply()
            self._stop.wait(self.RETRY)
