"""Connection limits that keep slow clients from taking the server offline.

waitress's defaults let about a hundred clients that send their headers a byte at a time hold
every connection slot (connection_limit 100) for as long as they like (channel_timeout counts
idle time, and any byte resets it). Dialtone serves with:

- CONNECTION_LIMIT open connections per instance (default 2000), polled with poll() rather than
  select(), which cannot watch a descriptor above 1023;
- REQUEST_TIMEOUT: a request (headers and body) must arrive whole within this many seconds of
  its first byte, however steadily it trickles, and a new connection must send its first byte
  within as long; slower connections are closed (otherwise 2,000 connections that never send
  anything hold every slot until CHANNEL_TIMEOUT);
- CHANNEL_TIMEOUT: an idle keep-alive connection is closed after this many seconds; and near
  CONNECTION_LIMIT sooner, oldest first, to make room (as nginx reuses its keep-alive
  connections when it runs out): otherwise a client that opens CONNECTION_LIMIT connections,
  each used once and then left open, holds every slot for CHANNEL_TIMEOUT;
- MAX_HEADER_BYTES: larger request headers get 431, so a half-sent request holds little memory.

The process's open-file limit (RLIMIT_NOFILE) must carry CONNECTION_LIMIT: the soft limit is
raised toward the hard one at start, and a limit that cannot be raised far enough is refused.
"""

from __future__ import annotations

import logging
import select
import time
from typing import Any

from dialtone.errors import DialtoneError
from dialtone.settings import Settings
from dialtone.web.graceful import channels_of, is_busy, socket_map_of

log = logging.getLogger("dialtone.web.connections")

# Descriptors besides client connections: listeners, waitress's trigger pipe, the record, logs,
# the Twilio client's connections, the interpreter's own.
SPARE_FILES = 64
CHECK_SECONDS = 1.0  # how often REQUEST_TIMEOUT and the room left are checked
CROWDED = 0.9  # with this share of CONNECTION_LIMIT open, idle connections make room...
ROOMY = 0.75  # ... until this share is open (what a flood refills takes a second or more)
IDLE_GRACE = 1.0  # seconds: a connection just accepted or just answered keeps its chance


class FileLimitTooLow(DialtoneError):
    """RLIMIT_NOFILE cannot carry CONNECTION_LIMIT."""


def waitress_limits(settings: Settings) -> dict[str, Any]:
    """The waitress adjustments for the connection limits above."""
    return {
        "connection_limit": settings.connection_limit,
        "channel_timeout": settings.channel_timeout,
        # waitress looks for idle connections every cleanup_interval seconds (default 30).
        "cleanup_interval": max(1, min(30, settings.channel_timeout // 2)),
        "max_request_header_size": settings.max_header_bytes,
        # select() fails on descriptors above 1023; Windows has no poll() and stays on select().
        "asyncore_use_poll": hasattr(select, "poll"),
    }


def files_needed(settings: Settings) -> int:
    """Open files one instance may need at CONNECTION_LIMIT connections."""
    return settings.connection_limit + SPARE_FILES


def ensure_file_limit(settings: Settings) -> None:
    """Raise the soft RLIMIT_NOFILE to carry CONNECTION_LIMIT, or refuse in one paragraph."""
    try:
        import resource  # POSIX only; imported here so that Windows serves without it
    except ImportError:
        return
    needed = files_needed(settings)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise _too_low(settings, needed, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    except (ValueError, OSError):  # macOS refuses soft limits above its OPEN_MAX
        raise _too_low(settings, needed, soft) from None
    log.info("Raised the open-file limit from %d to %d for CONNECTION_LIMIT", soft, needed)


def _too_low(settings: Settings, needed: int, limit: int) -> FileLimitTooLow:
    return FileLimitTooLow(
        f"CONNECTION_LIMIT={settings.connection_limit} needs about {needed} open files, but "
        f"this process may open only {limit} (its RLIMIT_NOFILE). Lower CONNECTION_LIMIT, or "
        "raise the limit: LimitNOFILE= in the systemd unit, `ulimit -n` in the shell that "
        "starts Dialtone, or /etc/security/limits.conf."
    )


class ConnectionWatch:
    """Closes connections whose request has not arrived whole within `timeout` seconds, and
    idle ones, oldest first, while more than CROWDED of `limit` are open."""

    def __init__(self, server: Any, timeout: float, limit: int) -> None:
        self.socket_map = socket_map_of(server)
        self.timeout = timeout
        self.limit = limit
        self.next_check = 0.0
        # channel -> (the request being read, when it was first seen unfinished)
        self.started: dict[Any, tuple[object, float]] = {}

    def __call__(self) -> None:
        """Check, at most once every CHECK_SECONDS; called between turns of the serving loop."""
        now = time.monotonic()
        if now < self.next_check:
            return
        self.next_check = now + CHECK_SECONDS
        started: dict[Any, tuple[object, float]] = {}
        late = silent = 0
        wall = time.time()  # waitress stamps its channels with time.time()
        channels = channels_of(self.socket_map)
        self._make_room(channels, wall)
        for channel in channels:
            request = channel.request
            if channel.will_close:
                continue
            if request is None:
                # Nothing received or sent since it was accepted: a connection that has yet to
                # send its first byte (a keep-alive one between requests has had activity).
                never_used = channel.last_activity == channel.creation_time
                if (
                    never_used
                    and not channel.requests
                    and wall - channel.creation_time > self.timeout
                ):
                    channel.will_close = True
                    silent += 1
                continue
            seen, since = self.started.get(channel, (None, now))
            if seen is not request:
                since = now
            # Not while an earlier request on it is being answered (as waitress's own idle
            # check): closing then would cut that answer off.
            if now - since > self.timeout and not channel.requests:
                channel.will_close = True  # closed by the loop's next turn, as waitress does
                late += 1
            else:
                started[channel] = (request, since)
        self.started = started
        if silent:
            log.warning(
                "Closed %d connection(s) that sent nothing within REQUEST_TIMEOUT=%gs",
                silent,
                self.timeout,
            )
        if late:
            log.warning(
                "Closed %d connection(s) that took longer than REQUEST_TIMEOUT=%gs to send "
                "a request",
                late,
                self.timeout,
            )

    def _make_room(self, channels: list[Any], wall: float) -> None:
        """While more than CROWDED of the limit is open, close idle connections (nothing being
        received or answered), the longest idle first, until ROOMY of it is."""
        if len(channels) < self.limit * CROWDED:
            return
        oldest_first = sorted(
            (
                channel
                for channel in channels
                if not channel.will_close and wall - channel.last_activity >= IDLE_GRACE
            ),
            key=lambda channel: channel.last_activity,
        )
        excess = len(channels) - int(self.limit * ROOMY)
        closing: list[Any] = []
        for channel in oldest_first:
            if len(closing) == excess:
                break
            if not is_busy(channel):  # nothing half-read, unread, running or unsent
                channel.will_close = True  # closed by the loop's next turn, as waitress does
                closing.append(channel)
        if closing:
            log.warning(
                "Closed %d idle connection(s) to make room: %d of CONNECTION_LIMIT=%d were open",
                len(closing),
                len(channels),
                self.limit,
            )
