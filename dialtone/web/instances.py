"""`WORKERS=N` on one machine: N identical instances, each with its own SO_REUSEPORT socket.

A convenience for `make serve`; in production the process manager starts the instances itself
(systemd's deploy/dialtone@.service, one unit per instance). This process only starts and
stops them: each instance is this same command run again with DIALTONE_INSTANCE set, so it is
an ordinary single instance with REUSE_PORT=true, building its own app. The kernel hands each
new connection to one of their sockets by a hash of its addresses: an even spread, where
processes racing to accept on one shared socket left one of them idle.

- Instances start one after the other, each once the previous one listens, so the first one
  alone creates or migrates the record; one that cannot start stops the others (its error
  printed once, exit code 2).
- SIGTERM or Ctrl-C: every instance finishes the requests in flight, then all exit 0.
- An instance that dies stops the others, and this process exits 1: restarting is the process
  manager's job (or run the instances as separate units, restarted one by one).
- No instance outlives this process, even after `kill -9`: each watches a pipe whose other end
  only this process holds, and stops gracefully when it reads end-of-file.

POSIX only (fork, sigtimedwait, SO_REUSEPORT): dialtone.web.serving imports it only when
WORKERS > 1 or in an instance.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from dialtone.settings import Settings
from dialtone.web import graceful, serving
from dialtone.web.accesslog import WSGIApp

log = logging.getLogger("dialtone.web.instances")

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
START_TIMEOUT = 120.0  # seconds for one instance to listen (a migration may run first)
STOP_TIMEOUT = graceful.GRACE_SECONDS + 5


@dataclass
class Instance:
    """One started instance: its number, its process and the read end of its ready pipe."""

    number: int
    process: subprocess.Popen[bytes]
    ready: int


def run(settings: Settings) -> int:
    """Start settings.workers instances sharing HOST:PORT, watch them, stop them; exit code."""
    # A plain bind (no SO_REUSEPORT) fails if anything listens there, a left-over instance
    # included: the instances would otherwise share the port with it without a word.
    with serving.bind_socket(settings, reuse_port=False) as probe:
        port = probe.getsockname()[1]  # PORT=0: one free port for all of them
    lifeline, keep = os.pipe()
    watched = {signal.SIGCHLD, *STOP_SIGNALS}
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, watched)
    started: list[Instance] = []
    try:
        for number in range(1, settings.workers + 1):
            instance = _start(number, port, lifeline)
            started.append(instance)
            code = _wait_ready(instance)
            if code >= 0:
                return code
        pids = ", ".join(str(instance.process.pid) for instance in started)
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
                if instance.process.poll() is not None:
                    log.error(
                        "Instance %d (pid %d) %s, so Dialtone stops: its process manager "
                        "restarts it (systemd: Restart=on-failure).",
                        instance.number,
                        instance.process.pid,
                        _describe(instance.process.returncode),
                    )
                    return 1
    finally:
        _stop(started)
        os.close(keep)
        os.close(lifeline)
        for instance in started:
            os.close(instance.ready)
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)


def _start(number: int, port: int, lifeline: int) -> Instance:
    """This same command again, as instance `number` on `port`."""
    ready, ready_to_write = os.pipe()
    env = {
        **os.environ,
        serving.INSTANCE_ENV: f"{number},{port},{lifeline},{ready_to_write}",
        "PORT": str(port),
        "WORKERS": "1",
        "REUSE_PORT": "true",
    }
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        process = subprocess.Popen(  # noqa: S603 (this very program, run again)
            [sys.executable, *sys.orig_argv[1:]], env=env, pass_fds=(lifeline, ready_to_write)
        )
    finally:
        os.close(ready_to_write)
    return Instance(number, process, ready)


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
            code = instance.process.wait()  # it closed its end: it has exited
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
    running = [instance for instance in started if instance.process.poll() is None]
    for instance in running:
        with contextlib.suppress(ProcessLookupError):
            instance.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    for instance in running:
        try:
            code = instance.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.error(
                "Instance %d did not stop in %.0f s; killing it", instance.number, STOP_TIMEOUT
            )
            instance.process.kill()
            code = instance.process.wait()
        if code not in (0, -signal.SIGTERM):
            log.warning("Instance %d %s", instance.number, _describe(code))


def _describe(code: int) -> str:
    if code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"


def serve_as_instance(
    settings: Settings,
    make_app: Callable[[], WSGIApp],
    close_app: Callable[[WSGIApp], None] | None,
) -> int:
    """Serve as one of the instances `run` started (DIALTONE_INSTANCE is set)."""
    number, port, lifeline, ready = (
        int(part) for part in os.environ.pop(serving.INSTANCE_ENV).split(",")
    )
    # Started with the launcher's signals blocked (a mask survives exec): take them back.
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    threading.Thread(target=_watch_lifeline, args=(number, lifeline), daemon=True).start()

    def say_ready() -> None:
        os.write(ready, b"1")
        os.close(ready)

    mine = settings.with_overrides(port=port, workers=1, reuse_port=True)
    return serving.serve_one(mine, make_app, close_app=close_app, ready=say_ready)


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
