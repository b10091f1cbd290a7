"""Call queues shared by every call in a sandbox: <Enqueue> waits here, <Dial><Queue> connects.

Thread-safe: each call runs in its own thread. A caller joins a queue and waits; an agent's
<Dial><Queue> takes the caller who has waited longest and both sides share a Bridge until one of
them hangs up (or the Dial's timeLimit passes).
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field

MAX_QUEUE_SIZE = 100  # Twilio's default MaxSize for a queue


def queue_sid(name: str) -> str:
    """A stable QU... SID for a queue name (Twilio makes one per queue; the sandbox derives it)."""
    return "QU" + hashlib.sha256(name.encode("utf-8")).hexdigest()[:32]


@dataclass
class Bridge:
    """Two connected calls; `ended` is set when either leaves."""

    caller_sid: str
    agent_sid: str
    started: float = field(default_factory=time.monotonic)
    ended: threading.Event = field(default_factory=threading.Event)


@dataclass
class Waiter:
    """A caller waiting in a queue; `bridge` is set when an agent connects."""

    call_sid: str
    queue: str
    joined: float = field(default_factory=time.monotonic)
    bridge: Bridge | None = None

    @property
    def waited(self) -> int:
        """Whole seconds spent in the queue so far."""
        return int(time.monotonic() - self.joined)


class QueueRegistry:
    """Every named queue of one sandbox."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._queues: dict[str, list[Waiter]] = {}

    def join(self, name: str, call_sid: str) -> Waiter:
        """Put a call at the back of queue `name`."""
        waiter = Waiter(call_sid, name)
        with self._changed:
            self._queues.setdefault(name, []).append(waiter)
            self._changed.notify_all()
        return waiter

    def leave(self, waiter: Waiter) -> bool:
        """Take a call out of its queue; False if an agent had already connected it."""
        with self._changed:
            members = self._queues.get(waiter.queue, [])
            if waiter.bridge is not None or waiter not in members:
                return False
            members.remove(waiter)
            return True

    def position(self, waiter: Waiter) -> tuple[int, int]:
        """(1-based position of the waiter, current size of its queue)."""
        with self._changed:
            members = self._queues.get(waiter.queue, [])
            index = members.index(waiter) + 1 if waiter in members else 0
            return index, len(members)

    def size(self, name: str) -> int:
        """How many calls are waiting in queue `name`."""
        with self._changed:
            return len(self._queues.get(name, []))

    def connect(
        self, name: str, agent_sid: str, timeout: float, cancelled: threading.Event
    ) -> Bridge | None:
        """Connect the longest-waiting caller of `name`, waiting up to `timeout` s for one."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                members = self._queues.get(name, [])
                if members:
                    waiter = members.pop(0)
                    waiter.bridge = Bridge(waiter.call_sid, agent_sid)
                    self._changed.notify_all()
                    return waiter.bridge
                left = deadline - time.monotonic()
                if left <= 0 or cancelled.is_set():
                    return None
                self._changed.wait(min(left, 0.05))
