"""The opt-out spool: STOP and START kept on local disk while the record is down, applied once
it is back, never over a newer state."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from dialtone.record import spool as spool_module
from dialtone.record.base import RecordStore
from dialtone.record.errors import StoreUnavailable
from dialtone.record.recorder import Recorder
from dialtone.record.spool import KeptOptOuts, OptOutChange, OptOutSpool

NUMBER = "+15557654321"


def stop(at: str, number: str = NUMBER) -> OptOutChange:
    return OptOutChange(number, True, "STOP", at)


def test_the_first_change_kept_syncs_the_directory_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new file's data is fsynced, and so is the directory entry naming it: a power cut
    right after a STOP was kept must not lose the file."""
    synced: list[Path] = []
    monkeypatch.setattr(spool_module, "_sync_directory", synced.append)
    spool = OptOutSpool(tmp_path / "kept" / "opt-outs.jsonl")
    spool.add(stop("2026-01-01T00:00:01.000000Z"))
    spool.add(stop("2026-01-01T00:00:02.000000Z"))  # the file is there already
    assert synced == [tmp_path / "kept"]


def test_changes_are_applied_in_order_then_forgotten(tmp_path: Path) -> None:
    spool = OptOutSpool.beside(tmp_path / "var" / "dialtone.db")  # its directory is made
    assert not spool.pending()
    spool.add(stop("2026-01-01T00:00:01.000000Z"))
    spool.add(OptOutChange(NUMBER, False, "START", "2026-01-01T00:00:02.000000Z"))
    assert spool.pending()
    assert spool.path == tmp_path / "var" / "dialtone.db-opt-outs.jsonl"
    assert oct(spool.path.stat().st_mode & 0o777) == "0o600"
    applied: list[OptOutChange] = []
    assert spool.replay(applied.append) == 2
    assert [c.keyword for c in applied] == ["STOP", "START"]
    assert not spool.path.exists()
    assert not spool.pending()
    assert spool.replay(applied.append) == 0


def test_a_failed_replay_keeps_every_change(tmp_path: Path) -> None:
    spool = OptOutSpool.beside(tmp_path / "dialtone.db")
    spool.add(stop("2026-01-01T00:00:01.000000Z"))

    def down(change: OptOutChange) -> None:
        raise StoreUnavailable("still down", path="x")

    with pytest.raises(StoreUnavailable):
        spool.replay(down)
    assert spool.pending()
    assert OptOutSpool.beside(tmp_path / "dialtone.db").pending()  # and after a restart


def test_a_line_cut_short_is_skipped_and_the_next_change_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = OptOutSpool.beside(tmp_path / "dialtone.db")
    spool.add(stop("2026-01-01T00:00:01.000000Z"))
    with spool.path.open("ab") as file:
        file.write(b'{"number": "+1555\xc3')  # a crash mid-write, inside a UTF-8 character
    spool.add(stop("2026-01-01T00:00:02.000000Z", number="+15550000002"))
    applied: list[OptOutChange] = []
    assert spool.replay(applied.append) == 2
    assert [c.number for c in applied] == [NUMBER, "+15550000002"]
    assert "Set aside 1 line(s)" in caplog.text


def test_another_process_s_change_is_seen_before_a_send(tmp_path: Path) -> None:
    """Two processes of one machine share the file: the one that did not keep the STOP sees
    it at once when asked before a send, and within RECHECK otherwise."""
    mine = OptOutSpool.beside(tmp_path / "dialtone.db")
    assert not mine.pending()
    OptOutSpool.beside(tmp_path / "dialtone.db").add(stop("2026-01-01T00:00:01.000000Z"))
    assert mine.pending(now=True)


def test_a_replay_under_way_elsewhere_is_not_waited_for_unless_asked(tmp_path: Path) -> None:
    spool = OptOutSpool.beside(tmp_path / "dialtone.db")
    spool.add(stop("2026-01-01T00:00:01.000000Z"))
    other = OptOutSpool.beside(tmp_path / "dialtone.db")  # another process's, same file
    seen: list[int | None] = []

    def apply(change: OptOutChange) -> None:
        seen.append(other.replay(lambda c: None))  # while this replay holds the lock

    assert spool.replay(apply) == 1
    assert seen == [None]


def test_a_kept_change_never_overrides_a_newer_one(store: RecordStore, tmp_path: Path) -> None:
    store.set_opt_out(NUMBER, False, keyword="START", at="2026-01-01T00:00:05.000000Z")
    store.set_opt_out(NUMBER, True, keyword="STOP", at="2026-01-01T00:00:03.000000Z")  # older
    assert not store.is_opted_out(NUMBER)
    store.set_opt_out(NUMBER, True, keyword="STOP", at="2026-01-01T00:00:07.000000Z")  # newer
    assert store.is_opted_out(NUMBER)
    store.set_opt_out("+15550000001", True, keyword="STOP", at="2026-01-01T00:00:01.000000Z")
    assert store.is_opted_out("+15550000001")  # no row yet: taken


def test_a_spool_left_by_an_earlier_run_is_applied_by_the_first_write(
    store: RecordStore,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(KeptOptOuts, "_retry_soon", lambda self: None)  # no thread: the write
    OptOutSpool.beside(tmp_path / "dialtone.db").add(stop(store.now()))
    with caplog.at_level(logging.WARNING, logger="dialtone.record"):
        recorder = Recorder(store, OptOutSpool.beside(tmp_path / "dialtone.db"))
        assert recorder.health() is None
        recorder.close()
    assert store.is_opted_out(NUMBER)
    assert caplog.text.count("Applied 1 opt-out change(s)") == 1
    assert not recorder.kept.pending(now=True)


def test_a_kept_change_is_applied_without_traffic(
    store: RecordStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The other machines learn of a STOP kept here without waiting for this one's next
    request: a thread applies it, at start or once the record is back."""
    spool = OptOutSpool.beside(tmp_path / "dialtone.db")
    spool.add(stop(store.now()))
    spool.add(OptOutChange("+15550000001", False, "START", "2000-01-01T00:00:00.000000Z"))
    store.set_opt_out("+15550000001", True, keyword="STOP")  # newer than that START
    caplog.set_level(logging.WARNING, logger="dialtone.record")
    recorder = Recorder(store, spool)
    try:
        deadline = time.monotonic() + 5
        while spool.pending(now=True) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert store.is_opted_out(NUMBER)
        assert store.is_opted_out("+15550000001")  # the older START did not undo the STOP
        assert "Applied 1 opt-out change(s)" in caplog.text
        assert "1 already superseded" in caplog.text
    finally:
        recorder.close()


@pytest.fixture
def no_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> OptOutSpool:
    """A spool whose directory is a file (even root cannot write there), and no retry thread:
    what is kept waits for the test's own apply()."""
    monkeypatch.setattr(KeptOptOuts, "_retry_soon", lambda self: None)
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the spool's directory should be")
    return OptOutSpool.beside(blocker / "dialtone.db")


def test_where_the_disk_refuses_a_change_is_held_in_memory(
    store: RecordStore, no_disk: OptOutSpool, caplog: pytest.LogCaptureFixture
) -> None:
    assert no_disk.writable() is not None
    recorder = Recorder(store, no_disk)
    with caplog.at_level(logging.ERROR, logger="dialtone.record"):
        recorder.kept.keep(stop(store.now()))
    assert "held in memory" in caplog.text
    assert recorder.kept.pending()
    assert recorder.opted_out_before_sending(NUMBER)  # applied first, then checked
    assert store.is_opted_out(NUMBER)
    assert not recorder.kept.pending(now=True)


def test_a_send_waits_while_a_held_change_cannot_be_applied(
    store: RecordStore, no_disk: OptOutSpool
) -> None:
    def down(change: OptOutChange) -> bool:
        raise StoreUnavailable("still down", path="x")

    kept = KeptOptOuts(no_disk, down)
    recorder = Recorder(store, no_disk)
    recorder.kept = kept
    kept.keep(stop(store.now()))
    with pytest.raises(StoreUnavailable, match="not applied yet"):
        recorder.opted_out_before_sending(NUMBER)
    assert kept.pending()


def test_lines_that_are_no_change_are_set_aside_in_one_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = OptOutSpool.beside(tmp_path / "dialtone.db")
    spool.add(stop("2026-01-01T00:00:01.000000Z"))
    with spool.path.open("ab") as file:
        file.write(b"[" * 100_000 + b"\n")  # past the JSON parser's recursion limit
        file.write(b'{"number": "+15550000009", "opted_out": "false", "at": "x"}\n')
    applied: list[OptOutChange] = []
    assert spool.replay(applied.append) == 1
    assert [c.number for c in applied] == [NUMBER]
    assert caplog.text.count("Set aside 2 line(s)") == 1
    rejected = spool.path.with_name(spool.path.name + ".rejected").read_bytes()
    assert b'"opted_out": "false"' in rejected


def test_bad_lines_are_set_aside_once_while_the_record_stays_down(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = OptOutSpool.beside(tmp_path / "dialtone.db")
    spool.add(stop("2026-01-01T00:00:01.000000Z"))
    with spool.path.open("ab") as file:
        file.write(b"not a change\n")

    def down(change: OptOutChange) -> None:
        raise StoreUnavailable("still down", path="x")

    for _ in range(3):
        with pytest.raises(StoreUnavailable):
            spool.replay(down)
    assert caplog.text.count("Set aside 1 line(s)") == 1
    aside = spool.path.with_name(spool.path.name + ".rejected")
    assert aside.read_bytes() == b"not a change\n"
    assert spool.replay(lambda change: None) == 1


def test_a_stop_is_kept_at_once_while_a_replay_waits_for_the_database(tmp_path: Path) -> None:
    """The replay holds its own lock across the database, not the one an append takes: a STOP
    webhook (here another process's spool) does not wait for a slow record."""
    spool = OptOutSpool.beside(tmp_path / "dialtone.db")
    spool.add(stop("2026-01-01T00:00:01.000000Z"))
    other = OptOutSpool.beside(tmp_path / "dialtone.db")
    took: list[float] = []

    def slow(change: OptOutChange) -> None:
        started = time.monotonic()
        other.add(stop("2026-01-01T00:00:02.000000Z", number="+15550000002"))
        took.append(time.monotonic() - started)

    assert spool.replay(slow) == 1
    assert took[0] < 1.0
    rest: list[OptOutChange] = []  # what was appended meanwhile stays for the next replay
    assert spool.replay(rest.append) == 1
    assert [c.number for c in rest] == ["+15550000002"]


def test_without_flock_or_pread_as_on_windows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dialtone.record import spool as module

    monkeypatch.setattr(module, "fcntl", None)
    monkeypatch.delattr(module.os, "pread", raising=False)
    spool = OptOutSpool.beside(tmp_path / "dialtone.db")
    spool.add(stop("2026-01-01T00:00:01.000000Z"))
    spool.add(stop("2026-01-01T00:00:02.000000Z", number="+15550000002"))
    applied: list[OptOutChange] = []
    assert spool.replay(applied.append) == 2
