"""Serving on several processes that share one listening socket (WORKERS > 1), and stopping
gracefully.

The parent binds HOST:PORT once and forks WORKERS children. Each child builds the app itself,
after the fork, so no SQLite connection, lock or thread crosses it, and serves the shared socket
on its own waitress; the kernel hands each new connection to one of them, so every core works.

SIGTERM or SIGINT to the parent: it sends SIGTERM to each child, which stops accepting, lets the
requests in flight finish and their answers go out (up to GRACE_SECONDS), closes its app and
exits 0; then the parent exits 0. A child that dies any other way is logged and replaced, at
most MAX_RESTARTS times a minute; a child that cannot start stops the whole server.

`serve_until_signalled()` is the graceful loop on its own, for a single-process server too:
waitress's own `run()` stops its loop on Ctrl-C before the answers in flight are sent.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import logging
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import Any, NoReturn

from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer

from dialtone.errors import DialtoneError
from dialtone.settings import Settings
from dialtone.web.accesslog import WSGIApp
from dialtone.web.serving import make_server, port_in_use

log = logging.getLogger("dialtone.web.prefork")

GRACE_SECONDS = 10.0  # for requests in flight at shutdown (Twilio itself waits 15 s)
POLL_SECONDS = 0.25  # how often the serving loop looks for a stop signal
# After a stop, how long a connection must stay idle before it is closed (and how long the
# listener still accepts): a client's request sent just before the signal can still be inside a
# busy kernel, not yet readable, and must be answered rather than cut off.
QUIET_SECONDS = 0.25
MAX_RESTARTS = 5  # replacements of dead workers allowed within RESTART_WINDOW
RESTART_WINDOW = 60.0
STARTUP_FAILED = 3  # a child's exit code when it could not build the app or its server
BACKLOG = 1024  # waitress's own default
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class WorkerFailure(DialtoneError):
    """The worker processes could not start, or kept dying."""


def check_supported(settings: Settings) -> None:
    """WorkerFailure, in one line, where several worker processes cannot run (not Linux)."""
    if not (hasattr(os, "fork") and hasattr(signal, "sigtimedwait")):
        raise WorkerFailure(
            f"WORKERS={settings.workers} needs fork() and sigtimedwait(), which this system does "
            "not have (several worker processes run on Linux only): serve with WORKERS=1 here."
        )


def bind_socket(settings: Settings) -> socket.socket:
    """The listening TCP socket for HOST:PORT, bound once in the parent and shared."""
    family, kind, proto, _, address = socket.getaddrinfo(
        settings.host, settings.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise port_in_use(settings) from None
        raise
    sock.listen(BACKLOG)
    return sock


def serve(
    settings: Settings,
    make_app: Callable[[], WSGIApp],
    *,
    close_app: Callable[[WSGIApp], None] | None = None,
    sock: socket.socket | None = None,
) -> int:
    """Serve `make_app()` on settings.workers processes until SIGTERM/SIGINT; return 0."""
    listener = sock or bind_socket(settings)
    watched = {signal.SIGCHLD, *STOP_SIGNALS}
    # Blocked signals wait in the kernel until sigtimedwait() collects them: no handler runs in
    # the middle of a fork, and no SIGCHLD is lost between two waits.
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, watched)
    pool = _Pool(settings, listener, make_app, close_app)
    try:
        for index in range(settings.workers):
            pool.spawn(index)
        host, port = listener.getsockname()[:2]
        log.info(
            "Dialtone listening on http://%s:%s with %d worker processes",
            host,
            port,
            settings.workers,
        )
        while True:
            info = signal.sigtimedwait(watched, RESTART_WINDOW)
            if info is None:
                continue
            if info.si_signo in STOP_SIGNALS:
                log.info("Stopping: the workers finish the requests in flight.")
                break
            pool.reap_and_replace()
    finally:
        pool.stop(GRACE_SECONDS + 5)
        listener.close()
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
    return 0


class _Pool:
    """The parent's view of its children: spawn, reap, replace within bounds, stop."""

    def __init__(
        self,
        settings: Settings,
        listener: socket.socket,
        make_app: Callable[[], WSGIApp],
        close_app: Callable[[WSGIApp], None] | None,
    ) -> None:
        self.settings = settings
        self.listener = listener
        self.make_app = make_app
        self.close_app = close_app
        self.children: dict[int, int] = {}  # pid -> worker index
        self.restarts: collections.deque[float] = collections.deque()

    def spawn(self, index: int) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _child(self.settings, self.listener, self.make_app, self.close_app)
        self.children[pid] = index
        log.info("worker %d started (pid %d)", index + 1, pid)

    def reap(self) -> list[tuple[int, int, int]]:
        """(pid, index, wait status) of every child that has ended since the last call."""
        ended = []
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            if pid in self.children:
                ended.append((pid, self.children.pop(pid), status))
        return ended

    def reap_and_replace(self) -> None:
        for pid, index, status in self.reap():
            how = _describe(status)
            if os.WIFEXITED(status) and os.WEXITSTATUS(status) == STARTUP_FAILED:
                raise WorkerFailure(
                    "A worker process could not start (the error is above), so Dialtone stopped."
                )
            now = time.monotonic()
            while self.restarts and now - self.restarts[0] > RESTART_WINDOW:
                self.restarts.popleft()
            if len(self.restarts) >= MAX_RESTARTS:
                raise WorkerFailure(
                    f"Worker processes died {MAX_RESTARTS + 1} times within "
                    f"{RESTART_WINDOW:.0f} s (the last {how}), so Dialtone stopped. "
                    "See the errors above."
                )
            self.restarts.append(now)
            log.error("worker %d (pid %d) %s; starting a new one", index + 1, pid, how)
            self.spawn(index)

    def stop(self, timeout: float) -> None:
        """SIGTERM every child, wait up to `timeout` seconds, then SIGKILL what is left."""
        for pid in self.children:
            _kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.children:
            for pid, index, status in self.reap():
                if not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0):
                    log.warning("worker %d (pid %d) %s", index + 1, pid, _describe(status))
            left = deadline - time.monotonic()
            if not self.children or left <= 0:
                break
            signal.sigtimedwait({signal.SIGCHLD}, min(left, 0.5))
        for pid in self.children:
            log.error("worker pid %d did not stop in %.0f s; killing it", pid, timeout)
            _kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        self.children.clear()


def _child(
    settings: Settings,
    listener: socket.socket,
    make_app: Callable[[], WSGIApp],
    close_app: Callable[[WSGIApp], None] | None,
) -> NoReturn:
    """A worker's whole life; it never returns into the parent's code."""
    code = 0
    try:
        for sig in (*STOP_SIGNALS, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        try:
            app = make_app()
            server = make_server(app, settings, sockets=[listener])
        except DialtoneError as exc:
            print(f"\n{exc}\n", file=sys.stderr)
            code = STARTUP_FAILED
        except BaseException:
            log.exception("A worker could not start")
            code = STARTUP_FAILED
        else:
            serve_until_signalled(server)
            if close_app is not None:
                close_app(app)
    except BaseException:
        log.exception("worker pid %d failed", os.getpid())
        code = 1
    finally:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        # _exit: never run the parent's atexit handlers or unwind into its stack.
        os._exit(code)


def serve_until_signalled(server: Any, *, grace: float = GRACE_SECONDS) -> None:
    """Run a waitress server until SIGTERM/SIGINT, then drain it (see `drain`) and close it."""
    stopping: list[int] = []

    def stop(signum: int, frame: object) -> None:
        stopping.append(signum)

    previous = {sig: signal.signal(sig, stop) for sig in STOP_SIGNALS}
    try:
        run_until(server, lambda: bool(stopping), grace=grace)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_until(server: Any, should_stop: Callable[[], bool], *, grace: float) -> None:
    """waitress's serving loop, checked for `should_stop()` between polls, then `drain`."""
    socket_map = _socket_map(server)
    use_poll = server.adj.asyncore_use_poll
    while not should_stop():
        wasyncore.loop(timeout=POLL_SECONDS, map=socket_map, use_poll=use_poll, count=1)
    drain(server, grace)


def drain(server: Any, grace: float, *, quiet: float = QUIET_SECONDS) -> None:
    """Stop accepting, let requests in flight finish and be sent, close idle connections.

    A request the client sent before the stop is answered, whichever moment the signal came,
    even when a busy kernel delivers its bytes late: for `quiet` seconds the listener still
    accepts what the kernel completes (and the rest of its backlog before it closes), and a
    connection is closed only once it has been idle, nothing unread, for `quiet` seconds.
    """
    socket_map = _socket_map(server)
    use_poll = server.adj.asyncore_use_poll
    start = time.monotonic()
    deadline = start + grace
    listeners = [item for item in socket_map.values() if isinstance(item, BaseWSGIServer)]
    idle_since: dict[HTTPChannel, float] = {}
    while (now := time.monotonic()) < deadline:
        if listeners and now >= start + quiet:
            for listener in listeners:
                _accept_backlog(listener)
                # The plain dispatcher close: the listening socket only, not waitress's trigger.
                wasyncore.dispatcher.close(listener)
            listeners = []
        channels = [item for item in socket_map.values() if isinstance(item, HTTPChannel)]
        if not channels and not listeners:
            break
        idle_since = {
            channel: idle_since.get(channel, now) for channel in channels if not _busy(channel)
        }
        for channel, since in idle_since.items():
            if now - since >= quiet:
                channel.will_close = True  # closed by the loop's next handle_write
        wasyncore.loop(timeout=0.05, map=socket_map, use_poll=use_poll, count=1)
    else:
        log.warning("Stopping with requests still in flight after %.0f s", grace)
    server.task_dispatcher.shutdown(timeout=1)
    wasyncore.close_all(socket_map)


def _accept_backlog(listener: BaseWSGIServer) -> None:
    """Accept every connection the kernel has already completed on `listener`."""
    for _ in range(BACKLOG):
        if not select.select([listener.socket], [], [], 0)[0]:
            break
        listener.handle_accept()


def _busy(channel: HTTPChannel) -> bool:
    """A request running, queued, half-read or unread, or an answer not yet sent."""
    if channel.requests or channel.total_outbufs_len or channel.request is not None:
        return True
    try:
        # Windows has no MSG_DONTWAIT; waitress's sockets are non-blocking there anyway.
        flags = socket.MSG_PEEK | getattr(socket, "MSG_DONTWAIT", 0)
        return bool(channel.socket.recv(1, flags))
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return False  # reset by the client: nothing left to answer


def _socket_map(server: Any) -> dict[int, Any]:
    # A one-socket waitress server keeps its map in `_map`; a MultiSocketServer in `map`.
    return server._map if hasattr(server, "_map") else server.map


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"was killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exited with code {os.waitstatus_to_exitcode(status)}"


def _kill(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
