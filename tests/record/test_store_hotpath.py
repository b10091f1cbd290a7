"""The webhook's path through the record: one transaction that also reads the sender's opt-out,
and WAL checkpoints on a background thread instead of in a webhook's commit."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from dialtone.record.checkpoint import Checkpointer
from dialtone.record.store import Outcome, Received, Store
from tests.conftest import CALLER, PHONE_NUMBER


def text(sid: str, body: str, sender: str = CALLER) -> dict[str, str]:
    return {"MessageSid": sid, "From": sender, "To": PHONE_NUMBER, "Body": body}


def test_receive_message_tells_the_opt_out_before_the_text(tmp_path: Path) -> None:
    with Store(tmp_path / "record.db") as store:
        assert store.receive_message(text("SM1", "hi"), "t-1") == Received(Outcome.NEW, False)
        stop = store.receive_message(text("SM2", "STOP"), "t-2", opted_out=True, keyword="STOP")
        assert stop == Received(Outcome.NEW, False)  # the STOP itself: not opted out before it
        assert store.receive_message(text("SM3", "hello?"), "t-3") == Received(Outcome.NEW, True)
        # A retry is not written again, and still says what the record says now.
        assert store.receive_message(text("SM3", "hello?"), "t-3") == Received(
            Outcome.DUPLICATE, True
        )
        assert store.receive_message(text("SM4", "x", sender="+15559999999"), "t-4") == Received(
            Outcome.NEW, False
        )
        assert [e.idempotency_key for e in store.events("SM3")] == ["token:t-3"]


def test_a_text_without_a_sender_is_never_opted_out(tmp_path: Path) -> None:
    with Store(tmp_path / "record.db") as store:
        store.set_opt_out("", True)
        assert store.receive_message(text("SM1", "hi", sender=""), "t-1").sender_opted_out is False


def wal_pages_in_database(path: Path) -> int:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        return int(conn.execute("PRAGMA page_count").fetchone()[0])


def test_the_background_thread_checkpoints_the_wal(tmp_path: Path) -> None:
    path = tmp_path / "record.db"
    store = Store(path)
    try:
        before = path.stat().st_size
        for n in range(50):  # about 450 WAL pages: below even SQLite's default of 1000
            store.record_inbound_message(text(f"SM{n}", "x" * 500), f"t-{n}")
        # The writers' automatic checkpoint is far away, so only the thread
        # moves the pages from the WAL into the database file.
        deadline = time.monotonic() + 5
        while path.stat().st_size == before and time.monotonic() < deadline:
            time.sleep(0.01)
        assert path.stat().st_size > before
        assert wal_pages_in_database(path) > 10
    finally:
        store.close()
    assert store._checkpointer is not None
    assert not store._checkpointer.is_alive()


def test_no_thread_for_a_memory_or_readonly_record(tmp_path: Path) -> None:
    with Store(":memory:") as store:
        assert store._checkpointer is None
    Store(tmp_path / "record.db").close()
    with Store(tmp_path / "record.db", readonly=True) as store:
        assert store._checkpointer is None


def test_a_checkpointer_on_a_missing_directory_gives_up_quietly(tmp_path: Path) -> None:
    thread = Checkpointer(tmp_path / "nowhere" / "record.db", interval=0.01)
    thread.start()
    thread.join(5)
    assert not thread.is_alive()
    thread.stop()  # safe after it ended
