"""The graceful stop: on SIGTERM or Ctrl-C, finish the requests in flight, then return.

waitress's own `run()` stops its loop on Ctrl-C before the answers in flight are sent, and has
no graceful stop at all; so Dialtone runs waitress's serving loop itself (`run_until`) and, on
a stop, drains the server (`drain`). Both lean on a few waitress internals (the socket map, a
channel's request queue and output buffers, the task dispatcher); `check_waitress` names them,
runs at every start, and tests/web/test_drain.py fails loudly if a waitress upgrade moves them.

Nothing here is POSIX-only: SIGTERM and SIGINT exist on Windows too.
"""

from __future__ import annotations

import logging
import select
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer

from dialtone.errors import DialtoneError

log = logging.getLogger("dialtone.web.graceful")

GRACE_SECONDS = 10.0  # for requests in flight at shutdown (Twilio itself waits 15 s)
POLL_SECONDS = 0.25  # how often the serving loop looks for a stop signal
# After a stop, how long a connection must stay idle before it is closed (and how long the
# listener still accepts): a client's request sent just before the signal can still be inside a
# busy kernel, not yet readable, and must be answered rather than cut off.
QUIET_SECONDS = 0.25
BACKLOG = 1024  # waitress's own default; the most connections drained from a listener's queue
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# The waitress internals this module uses, by owner: checked at start by `check_waitress`.
CHANNEL_ATTRIBUTES = ("request", "total_outbufs_len", "will_close")
SERVER_ATTRIBUTES = ("task_dispatcher", "adj")


class WaitressChanged(DialtoneError):
    """The installed waitress lacks an internal the graceful stop needs."""


def serve_until_signalled(
    server: Any,
    *,
    grace: float = GRACE_SECONDS,
    tick: Callable[[], None] | None = None,
    started: Callable[[], None] | None = None,
) -> None:
    """Run a waitress server until SIGTERM/SIGINT, then drain it (see `drain`) and close it.

    `started()` is called once the signals are caught: a stop from then on is graceful."""
    stopping: list[int] = []

    def stop(signum: int, frame: object) -> None:
        stopping.append(signum)

    previous = {sig: signal.signal(sig, stop) for sig in STOP_SIGNALS}
    try:
        if started is not None:
            started()
        run_until(server, lambda: bool(stopping), grace=grace, tick=tick)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_until(
    server: Any,
    should_stop: Callable[[], bool],
    *,
    grace: float,
    tick: Callable[[], None] | None = None,
) -> None:
    """waitress's serving loop, `tick()` and `should_stop()` checked between polls, then `drain`."""
    check_waitress(server)
    socket_map = socket_map_of(server)
    use_poll = server.adj.asyncore_use_poll
    while not should_stop():
        wasyncore.loop(timeout=POLL_SECONDS, map=socket_map, use_poll=use_poll, count=1)
        if tick is not None:
            tick()
    drain(server, grace)


def drain(server: Any, grace: float, *, quiet: float = QUIET_SECONDS) -> None:
    """Stop accepting, let requests in flight finish and be sent, close idle connections.

    A request the client sent before the stop is answered, whichever moment the signal came,
    even when a busy kernel delivers its bytes late: for `quiet` seconds the listener still
    accepts what the kernel completes (and the rest of its backlog before it closes), and a
    connection is closed only once it has been idle, nothing unread, for `quiet` seconds.
    """
    socket_map = socket_map_of(server)
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
        channels = channels_of(socket_map)
        if not channels and not listeners:
            break
        idle_since = {
            channel: idle_since.get(channel, now) for channel in channels if not is_busy(channel)
        }
        for channel, since in idle_since.items():
            if now - since >= quiet:
                channel.will_close = True  # closed by the loop's next handle_write
        wasyncore.loop(timeout=0.05, map=socket_map, use_poll=use_poll, count=1)
    else:
        log.warning("Stopping with requests still in flight after %.0f s", grace)
    server.task_dispatcher.shutdown(timeout=1)
    wasyncore.close_all(socket_map)


def socket_map_of(server: Any) -> dict[int, Any]:
    """The map of every socket a waitress server's loop serves (listeners and connections)."""
    # A one-socket waitress server keeps its map in `_map`; a MultiSocketServer in `map`.
    return server._map if hasattr(server, "_map") else server.map


def channels_of(socket_map: dict[int, Any]) -> list[HTTPChannel]:
    """The open client connections in a socket map."""
    return [item for item in socket_map.values() if isinstance(item, HTTPChannel)]


def check_waitress(server: Any) -> None:
    """Raise WaitressChanged naming what is missing if this waitress lacks what drain uses."""
    missing = [f"server.{name}" for name in SERVER_ATTRIBUTES if not hasattr(server, name)]
    if not (hasattr(server, "_map") or hasattr(server, "map")):
        missing.append("server._map")
    if not hasattr(getattr(server, "adj", None), "asyncore_use_poll"):
        missing.append("server.adj.asyncore_use_poll")
    if not callable(getattr(getattr(server, "task_dispatcher", None), "shutdown", None)):
        missing.append("server.task_dispatcher.shutdown")
    missing += [
        f"HTTPChannel.{name}" for name in CHANNEL_ATTRIBUTES if not hasattr(HTTPChannel, name)
    ]
    if (
        "requests" not in HTTPChannel.__init__.__code__.co_names
    ):  # set per channel, not a class attribute
        missing.append("HTTPChannel.requests")
    missing += [
        f"waitress.wasyncore.{name}"
        for name in ("loop", "close_all", "dispatcher")
        if not hasattr(wasyncore, name)
    ]
    if not hasattr(BaseWSGIServer, "handle_accept"):
        missing.append("BaseWSGIServer.handle_accept")
    if missing:
        raise WaitressChanged(
            "The installed waitress no longer has what Dialtone's graceful stop uses ("
            + ", ".join(missing)
            + "). Install the waitress version pinned in requirements.txt, or update "
            "dialtone/web/graceful.py for this one."
        )


def _accept_backlog(listener: BaseWSGIServer) -> None:
    """Accept every connection the kernel has already completed on `listener`."""
    for _ in range(BACKLOG):
        if not select.select([listener.socket], [], [], 0)[0]:
            break
        listener.handle_accept()


# MSG_DONTWAIT is POSIX; waitress's sockets are non-blocking anyway.
_PEEK = socket.MSG_PEEK | getattr(socket, "MSG_DONTWAIT", 0)


def is_busy(channel: HTTPChannel) -> bool:
    """A request running, queued, half-read or unread, or an answer not yet sent."""
    if channel.requests or channel.total_outbufs_len or channel.request is not None:
        return True
    try:
        return bool(channel.socket.recv(1, _PEEK))
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return False  # reset by the client: nothing left to answer
