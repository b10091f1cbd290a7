"""Twilio's STOP filtering on long codes: who has opted out of texts from which of our numbers."""

from __future__ import annotations

import threading


class OptOutList:
    """Pairs (our number, their number) that texted STOP; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pairs: set[tuple[str, str]] = set()

    def opt_out(self, number: str, sender: str) -> None:
        """`sender` texted STOP (or a synonym) to our `number`: Twilio refuses texts to it."""
        with self._lock:
            self._pairs.add((number, sender))

    def opt_in(self, number: str, sender: str) -> None:
        """`sender` texted START (or a synonym) to our `number`: texts to it are allowed again."""
        with self._lock:
            self._pairs.discard((number, sender))

    def is_opted_out(self, number: str, recipient: str) -> bool:
        """True if `recipient` has opted out of texts from our `number`."""
        with self._lock:
            return (number, recipient) in self._pairs

    def is_opted_out_of_pool(self, recipient: str) -> bool:
        """True if `recipient` opted out of any number: a Messaging Service's opt-outs cover its
        whole sender pool, and in the sandbox every number is in the pool."""
        with self._lock:
            return any(them == recipient for _, them in self._pairs)
