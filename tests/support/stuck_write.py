"""A write stuck on a slow disk, for the record's tests: another thread holds the SQLite store's
own lock."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from dialtone.record.store import Store


@contextmanager
def stuck_write(store: Store, longest: float = 30.0) -> Iterator[None]:
    """Another thread holds `store`'s lock from the start of the block until its end, or for
    `longest` seconds if that comes first."""
    held, release = threading.Event(), threading.Event()

    def write() -> None:
        with store._locked():
            held.set()
            release.wait(longest)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    assert held.wait(5), "the stuck write never got the lock"
    try:
        yield
    finally:
        release.set()
        writer.join(5)
