"""`WORKERS=N` on one machine: N instances, each with its own SO_REUSEPORT socket.

A convenience for `make serve`; in production the process manager starts the instances itself
(systemd's deploy/dialtone@.service, one unit per instance). This process only starts and
stops them: each is a forked copy that builds its own app (no SQLite connection, lock or
thread crosses the fork) and serves as an ordinary single instance with REUSE_PORT=true. The
kernel hands each new connection to one of their sockets by a hash of its addresses: an even
spread, where processes racing to accept on one shared socket left one of them idle. Forking
(rather than starting the command again) lets the instances share the memory of the modules
this process imported: 42 MB of PSS for two instances and this process, against 89 MB.

- Instances start one after the other, each once the previous one listens, so the first one
  alone creates or migrates the record; one that cannot start stops the others (its error
  printed once, exit code 2).
- SIGTERM or Ctrl-C: every instance finishes the requests in flight, then all exit 0.
- An instance that dies stops the others, and this process exits 1: restarting is the process
  manager's job (or run the instances as separate units, restarted one by one).
- No instance outlives this process, even after `kill -9`: each watches a pipe whose write end
  only this process holds, and stops gracefully when it reads end-of-file.

POSIX only (fork, sigtimedwait, SO_REUSEPORT): dialtone.web.serving imports it only when
WORKERS > 1.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

from dialtone.errors import DialtoneError
from dialtone.settings import Settings
from dialtone.web import graceful, serving
from dialtone.web.accesslog import WSGIApp

log = logging.getLogger("dialtone.web.instances")

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
START_TIMEOUT = 120.0  # seconds for one instance to listen (a migration may run first)
STOP_TIMEOUT = graceful.GRACE_SECONDS + 5
STARTUP_FAILED = 2  # an instance's exit code when it could not build its app or bind


@dataclass
class Instance:
    """One started instance: its number, pid, the read end of its ready pipe, its exit code."""

    number: int
    pid: int
    ready: int
    code: int | None = None  # as subprocess gives it: negative for a signal

    def poll(self) -> int | None:
        """Its exit code once it has ended (reaping it), else None."""
        if self.code is None:
            with contextlib.suppress(ChildProcessError):
                pid, status = os.waitpid(self.pid, os.WNOHANG)
                if pid:
                    self.code = os.waitstatus_to_exitcode(status)
        return self.code


def run(
    settings: Settings,
    make_app: Callable[[], WSGIApp],
    close_app: Callable[[WSGIApp], None] | None = None,
) -> int:
    """Start settings.workers instances sharing HOST:PORT, watch them, stop them; exit code."""
    # A plain bind (no SO_REUSEPORT) fails if anything listens there, a left-over instance
    # included: the instances would otherwise share the port with it without a word.
    with serving.bind_socket(settings, reuse_port=False) as probe:
        port = probe.getsockname()[1]  # PORT=0: one free port for all of them
    mine = settings.with_overrides(port=port, workers=1, reuse_port=True)
    lifeline, keep = os.pipe()
    watched = {signal.SIGCHLD, *STOP_SIGNALS}
    # Blocked signals wait in the kernel until sigtimedwait() collects them: no handler runs in
    # the middle of a fork, and no SIGCHLD is lost between two waits.
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, watched)
    started: list[Instance] = []
    try:
        for number in range(1, settings.workers + 1):
            instance = _start(number, (lifeline, keep), started, mine, make_app, close_app)
            started.append(instance)
            code = _wait_ready(instance)
            if code >= 0:
                return code
        pids = ", ".join(str(instance.pid) for instance in started)
        log.info(
            "Dialtone listening on http://%s:%s with %d instances (pids %s), each with its own "
            "socket",
            settings.host,
            port,
            len(started),
            pids,
        )
        while True:
            info = signal.sigtimedwait(watched, 60)
            if info is not None and info.si_signo in STOP_SIGNALS:
                log.info("Stopping: the instances finish the requests in flight.")
                return 0
            for instance in started:
                if instance.poll() is not None:
                    log.error(
                        "Instance %d (pid %d) %s, so Dialtone stops: its process manager "
                        "restarts it (systemd: Restart=on-failure).",
                        instance.number,
                        instance.pid,
                        _describe(instance.code or 0),
                    )
                    return 1
    finally:
        _stop(started)
        os.close(keep)
        os.close(lifeline)
        for instance in started:
            os.close(instance.ready)
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)


def _start(
    number: int,
    pipe: tuple[int, int],
    siblings: list[Instance],
    settings: Settings,
    make_app: Callable[[], WSGIApp],
    close_app: Callable[[WSGIApp], None] | None,
) -> Instance:
    """Fork instance `number`; in the child, serve and never return."""
    ready, ready_to_write = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        # Only the launcher may hold the lifeline's write end, or its death would go unseen.
        for fd in (pipe[1], ready, *(sibling.ready for sibling in siblings)):
            os.close(fd)
        _instance(number, pipe[0], ready_to_write, settings, make_app, close_app)
    os.close(ready_to_write)
    return Instance(number, pid, ready)


def _wait_ready(instance: Instance) -> int:
    """-1 once `instance` listens; else the exit code to stop with (after logging why)."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if STOP_SIGNALS & signal.sigpending():
            log.info("Stopped while starting.")
            return 0
        if select.select([instance.ready], [], [], 0.25)[0]:
            if os.read(instance.ready, 1):
                return -1
            while instance.poll() is None:  # it closed its end: it is exiting
                time.sleep(0.01)
            code = instance.code or 0
            log.error(
                "Instance %d could not start: it %s before it listened (its error is above), "
                "so Dialtone stopped.",
                instance.number,
                _describe(code),
            )
            return code if code > 0 else 1
    log.error("Instance %d did not listen within %.0f s.", instance.number, START_TIMEOUT)
    return 1


def _stop(started: list[Instance]) -> None:
    """SIGTERM every instance, wait for them to drain, then SIGKILL what is left."""
    running = [instance for instance in started if instance.poll() is None]
    for instance in running:
        with contextlib.suppress(ProcessLookupError):
            os.kill(instance.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    for instance in running:
        while instance.poll() is None and time.monotonic() < deadline:
            signal.sigtimedwait({signal.SIGCHLD}, 0.1)
        if instance.poll() is None:
            log.error(
                "Instance %d did not stop in %.0f s; killing it", instance.number, STOP_TIMEOUT
            )
            os.kill(instance.pid, signal.SIGKILL)
            os.waitpid(instance.pid, 0)
        elif instance.code != 0:
            log.warning("Instance %d %s", instance.number, _describe(instance.code or 0))


def _describe(code: int) -> str:
    if code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"


def _instance(
    number: int,
    lifeline: int,
    ready: int,
    settings: Settings,
    make_app: Callable[[], WSGIApp],
    close_app: Callable[[WSGIApp], None] | None,
) -> NoReturn:
    """An instance's whole life, in the forked child; it never returns into the launcher's code."""
    code = 0
    try:
        for sig in (*STOP_SIGNALS, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        threading.Thread(target=_watch_lifeline, args=(number, lifeline), daemon=True).start()

        def say_ready() -> None:
            os.write(ready, b"1")
            os.close(ready)

        serving.serve_one(settings, make_app, close_app=close_app, ready=say_ready)
    except DialtoneError as exc:
        print(f"\n{exc}\n", file=sys.stderr)
        code = STARTUP_FAILED
    except BaseException:
        log.exception("Instance %d (pid %d) failed", number, os.getpid())
        code = 1
    finally:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        # _exit: never run the launcher's atexit handlers or unwind into its stack.
        os._exit(code)


def _watch_lifeline(number: int, fd: int) -> None:
    """Stop this instance gracefully once the launcher is gone (end-of-file on its pipe)."""
    while True:
        try:
            if not os.read(fd, 1):
                break
        except InterruptedError:
            continue
    log.warning("Instance %d: the process that started it is gone; stopping.", number)
    os.kill(os.getpid(), signal.SIGTERM)
