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

from dialtone.record.errors import StoreError, StoreUnavailable
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
    """The pending opt-out changes of this machine, in a JSON-lines file.

    Two locks, each a thread lock and a flock on a file of its own: `.lock` for the short
    moments the file changes (an append, dropping what was applied), `.replay.lock` for a
    whole replay, database writes included, so that one replays at a time while appends
    (a STOP webhook) never wait for the database.
    """

    RECHECK = 1.0  # seconds between looks for a file another process of the machine wrote

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file_lock = _Lock(path.with_name(path.name + ".lock"))
        self._replay_lock = _Lock(path.with_name(path.name + ".replay.lock"))
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
            with self._file_lock.held(wait=True):
                pass
        except OSError as exc:
            return exc
        return None

    def add(self, change: OptOutChange) -> None:
        """Append `change`, durably (OSError when the disk refuses)."""
        line = (json.dumps(asdict(change)) + "\n").encode()  # ASCII: no character cut in two
        with self._file_lock.held(wait=True):
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            size = None
            try:
                size = os.fstat(fd).st_size
                if size:
                    os.lseek(fd, size - 1, os.SEEK_SET)  # (writes still go to the end)
                    if os.read(fd, 1) != b"\n":  # a line cut by a crash
                        line = b"\n" + line
                written = 0
                while written < len(line):  # a nearly full disk may take part of it
                    written += os.write(fd, line[written:])
                os.fsync(fd)
                if not size:  # the file may be new: its directory entry must outlast a power cut
                    _sync_directory(self.path.parent)
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
        the replay and keeps the file (each change is safe to apply again). Lines that are no
        change are set aside in `.rejected`, once."""
        with self._replay_lock.held(wait=wait) as mine:
            if not mine:
                return None
            with self._file_lock.held(wait=True):
                try:
                    data = self.path.read_bytes()
                except FileNotFoundError:
                    self._pending = False
                    return 0
                changes, rejected = _parse(data)
                if rejected:
                    data = self._set_aside(data, rejected)
            for change in changes:  # the database's time, without the file's lock
                apply(change)
            with self._file_lock.held(wait=True):
                rest = self.path.read_bytes()[len(data) :]  # appended meanwhile
                if rest:
                    _replace(self.path, rest)
                else:
                    self.path.unlink()
                self._pending = bool(rest)
            return len(changes)

    def _set_aside(self, data: bytes, rejected: list[int]) -> bytes:
        """Move the lines numbered `rejected` to `.rejected`; the file's new content."""
        lines = data.splitlines(keepends=True)
        aside = self.path.with_name(self.path.name + ".rejected")
        skip = set(rejected)
        with aside.open("ab") as file:
            file.writelines(lines[n - 1].rstrip(b"\n") + b"\n" for n in rejected)
        kept = b"".join(line for n, line in enumerate(lines, 1) if n not in skip)
        _replace(self.path, kept)
        log.warning(
            "Set aside %d line(s) of %s that are not opt-out changes (the first was line %d), "
            "in %s.",
            len(rejected),
            self.path,
            rejected[0],
            aside,
        )
        return kept


class _Lock:
    """A thread lock and an flock on `path` (where the platform has flock; Windows runs one
    process)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._thread_lock = threading.Lock()

    @contextmanager
    def held(self, *, wait: bool) -> Iterator[bool]:
        """Held (True), or, when not `wait` and it is taken, False at once."""
        if not self._thread_lock.acquire(blocking=wait):
            yield False
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if fcntl is None:
                yield True
                return
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
                except BlockingIOError:
                    yield False
                    return
                yield True
            finally:
                os.close(fd)  # closing releases the flock
        finally:
            self._thread_lock.release()


def _sync_directory(directory: Path) -> None:
    """fsync `directory`, so that a file just created in it is there after a power cut (POSIX;
    Windows journals its directories and cannot open one this way)."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _replace(path: Path, data: bytes) -> None:
    """`path` holds `data` now, whole or not at all (a crash leaves the old or the new)."""
    temporary = path.with_name(path.name + ".new")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)


def _parse(data: bytes) -> tuple[list[OptOutChange], list[int]]:
    """The changes in `data`, and the numbers of its lines that are none (cut short by a
    crash, edited by hand)."""
    changes: list[OptOutChange] = []
    rejected: list[int] = []
    for at_line, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            fields = json.loads(line.decode("utf-8"))
            keyword = fields.get("keyword")
            if not isinstance(fields["opted_out"], bool):  # a "false" by hand is no STOP
                raise TypeError("opted_out is not true or false")
            if keyword is not None and not isinstance(keyword, str):
                raise TypeError("keyword is not text")
            changes.append(
                OptOutChange(
                    number=str(fields["number"]),
                    opted_out=fields["opted_out"],
                    keyword=keyword,
                    at=str(fields["at"]),
                )
            )
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
            rejected.append(at_line)
    return changes, rejected


class KeptNotApplied(StoreUnavailable):
    """A send waits for opt-out changes kept here: not applied yet, or `stuck` (they cannot be
    applied until someone mends the file; the log says why)."""

    def __init__(self, where: str, *, stuck: bool) -> None:
        state = "cannot be applied (see the log)" if stuck else "are not applied yet"
        super().__init__(
            f"Opt-out changes kept in {where} while the record was down {state}.",
            path=where,
            reason=f"has opt-out changes kept while it was down that {state}",
        )
        self.stuck = stuck


class KeptOptOuts:
    """The opt-out changes waiting for the record: in the spool, else in memory."""

    RETRY = 2.0  # seconds between attempts to apply them from the thread

    def __init__(self, spool: OptOutSpool | None, apply: Callable[[OptOutChange], bool]) -> None:
        """`apply` writes one change to the record: True if it took, False if a newer change
        was there (StoreError while the record is down)."""
        self.spool = spool
        self._apply = apply
        self._held: list[OptOutChange] = []  # what the spool's disk refused, oldest first
        self._lock = threading.Lock()  # _held and _thread; never held across the database
        self._applying = threading.Lock()  # one apply at a time in this process
        self._stuck = False  # the changes could not be applied for a reason not the record's
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Apply what an earlier run kept, from the thread, without waiting for traffic."""
        if self.pending():
            self._retry_soon()

    def close(self) -> None:
        """Stop the thread (what is kept stays kept)."""
        self._stop.set()
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join(timeout=5)

    def pending(self, *, now: bool = False) -> bool:
        """Whether changes wait (`now`: look at the spool file at once)."""
        return bool(self._held) or (self.spool is not None and self.spool.pending(now=now))

    def require_applied(self) -> None:
        """Apply what waits, waiting for any other apply; StoreUnavailable if some still
        waits (a send must not go out past a STOP kept here)."""
        self.apply(wait=True)
        if not self.pending(now=True):
            return
        raise KeptNotApplied(str(self.spool.path if self.spool else "memory"), stuck=self._stuck)

    @property
    def stuck(self) -> bool:
        """The kept changes cannot be applied for a reason not the record's (the file cannot
        be read): sends stay refused until someone mends it."""
        return self._stuck

    def keep(self, change: OptOutChange) -> None:
        """Keep a change the record could not take (logged either way)."""
        shown = printable(change.number, 40)
        problem: Exception | str | None = "no spool"
        if self.spool is not None:
            try:
                self.spool.add(change)
                problem = None
            except Exception as exc:  # the disk, or anything else: memory still holds it
                problem = exc
        if problem is None:
            log.warning(
                "Kept the opt-out change of %s in %s; it is applied when the record is back.",
                shown,
                self.spool.path if self.spool else "",
            )
        else:
            with self._lock:
                self._held.append(change)
            log.error(
                "The opt-out change of %s could not be kept on disk either (%s): it is held in "
                "memory, and this process refuses sends until it is applied. If the process "
                "stops first, redo it by hand (docs/opt-outs.md).",
                shown,
                problem,
            )
        self._retry_soon()

    def apply(self, *, wait: bool = False) -> None:
        """Apply what waits, if the record takes it; unless `wait`, not while another thread
        or process is at it."""
        if not self.pending(now=wait) or not self._applying.acquire(blocking=wait):
            return
        applied = superseded = 0

        def one(change: OptOutChange) -> None:
            nonlocal applied, superseded
            if self._apply(change):
                applied += 1
            else:
                superseded += 1

        where = "memory"
        try:
            with self._lock:
                held = list(self._held)
            for change in held:  # the database's time, without the lock keep() takes
                one(change)
                with self._lock:
                    self._held.remove(change)
            where = str(self.spool.path) if self.spool else where
            replayed = self.spool.replay(one, wait=wait) if self.spool is not None else 0
        except StoreError as exc:  # down again: the next success, or the thread, tries again
            log.debug("The kept opt-out changes wait for the record: %s", exc)
            return
        except Exception as exc:  # whatever it is, the answer still goes out
            if not self._stuck:
                log.error(
                    "Cannot apply the opt-out changes kept in %s, so sends are refused: %s. "
                    "Mend the file (or move it away and redo its changes by hand, "
                    "docs/opt-outs.md).",
                    where,
                    exc,
                )
            self._stuck = True
            return
        finally:
            self._applying.release()
        if replayed is not None:  # None: another process is at it; nothing was learnt
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
            if self._stop.is_set() or self._thread is not None:
                return
            self._thread = threading.Thread(target=self._retry, name="kept opt-outs", daemon=True)
            self._thread.start()

    def _retry(self) -> None:
        try:
            while not self._stop.is_set():
                # Decided, and the thread forgotten, under the lock _retry_soon() takes: a
                # change kept meanwhile is either seen here or starts a new thread.
                with self._lock:
                    if not self.pending(now=True):
                        self._thread = None
                        return
                self.apply()
                self._stop.wait(self.RETRY)
        except BaseException:
            with self._lock:
                self._thread = None
            raise
