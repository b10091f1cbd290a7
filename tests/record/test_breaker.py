"""The breaker: once the record fails, webhooks stop waiting for it, one thread probes it, and
sends wait a settling time after it is back (another instance's kept STOP)."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import webtest

from dialtone.record import breaker as breaker_module
from dialtone.record.base import RecordStore
from dialtone.record.breaker import Breaker
from dialtone.record.errors import StoreUnavailable
from dialtone.record.postgres import PostgresStore
from dialtone.settings import Settings
from tests.conftest import API_TOKEN, AUTH_TOKEN, CALLER, PHONE_NUMBER, signed_post
from tests.support.forms import numbered_sms
from tests.support.postgres import own_server
from tests.support.stuck_write import stuck_write

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
DOWN = StoreUnavailable("The record is down.", path="x", reason="cannot be written: down")


def eventually(check: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.01)


class Probe:
    """A probe that fails while `down`, counting its calls."""

    def __init__(self) -> None:
        self.down = True
        self.calls = 0
        self.closed = 0

    def __call__(self) -> StoreUnavailable | None:
        self.calls += 1
        return DOWN if self.down else None

    def on_close(self) -> None:
        self.closed += 1


@pytest.fixture
def probe() -> Probe:
    return Probe()


@pytest.fixture
def breaker(probe: Probe) -> Iterator[Breaker]:
    made = Breaker(probe, probe.on_close, probe_every=0.01, settle=30)
    yield made
    made.stop()


def test_closed_until_a_failure(breaker: Breaker, probe: Probe) -> None:
    assert breaker.failure() is None
    assert breaker.settling() == 0
    time.sleep(0.05)
    assert probe.calls == 0  # nothing probed while nothing failed


def test_a_failure_opens_it_and_one_thread_probes_until_one_passes(
    breaker: Breaker, probe: Probe, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="dialtone.record"):
        for _ in range(20):  # many threads' writes fail at once: one line, one probing thread
            breaker.trip(DOWN)
        assert breaker.failure() is DOWN
        eventually(lambda: probe.calls >= 3)
        assert [t.name for t in threading.enumerate()].count("record probe") == 1
        probe.down = False
        eventually(lambda: breaker.failure() is None)
        eventually(lambda: probe.closed == 1)  # on_close runs just after it reports closed
    assert 29 < breaker.settling() <= 30
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if "sends are refused" in m]) == 1
    assert len([m for m in messages if m.startswith("The record takes writes again")]) == 1
    calls = probe.calls
    time.sleep(0.05)
    assert probe.calls == calls  # closed: no more probes
    eventually(lambda: "record probe" not in [t.name for t in threading.enumerate()])


def test_it_opens_again_after_closing(breaker: Breaker, probe: Probe) -> None:
    probe.down = False
    breaker.trip(DOWN)
    eventually(lambda: breaker.failure() is None)
    probe.down = True
    breaker.trip(DOWN)
    assert breaker.failure() is DOWN
    probe.down = False
    eventually(lambda: breaker.failure() is None)
    eventually(lambda: probe.closed == 2)  # on_close runs just after it reports closed


def test_a_failure_that_began_before_it_closed_opens_nothing(
    breaker: Breaker, probe: Probe
) -> None:
    """A write that waited out the outage (a lock, a dead connection) and fails after the probe
    that ended it passed: the record is fine, so webhooks must not stop being recorded."""
    began = time.monotonic()
    breaker.trip(DOWN)
    probe.down = False
    eventually(lambda: breaker.failure() is None)
    breaker.trip(DOWN, began)
    assert breaker.failure() is None
    breaker.trip(DOWN, time.monotonic())  # one that began since: a new outage
    assert breaker.failure() is DOWN


def test_a_failure_while_a_probe_runs_keeps_it_open(breaker: Breaker, probe: Probe) -> None:
    """A webhook's write failed while the probe was passing: the record is not back."""
    probing, answer, again = threading.Event(), threading.Event(), threading.Event()
    probes = []

    def slow_probe() -> StoreUnavailable | None:
        probes.append(1)
        probing.set()
        (answer if len(probes) == 1 else again).wait(5)
        return None

    made = Breaker(slow_probe, probe_every=0.01)
    try:
        made.trip(DOWN)
        assert probing.wait(5)
        made.trip(DOWN)  # meanwhile
        answer.set()
        eventually(lambda: len(probes) == 2)  # the first passed, and it probes again
        assert made.failure() is DOWN
        again.set()
        eventually(lambda: made.failure() is None)  # the next probe, with nothing failing
    finally:
        answer.set()
        again.set()
        made.stop()


def test_stop_while_a_probe_runs_leaves_it_open(probe: Probe) -> None:
    """At shutdown a probe that passes late neither closes it nor applies what was kept."""
    probing, answer = threading.Event(), threading.Event()

    def slow_probe() -> StoreUnavailable | None:
        probing.set()
        answer.wait(5)
        return None

    made = Breaker(slow_probe, probe.on_close, probe_every=0.01)
    made.trip(DOWN)
    assert probing.wait(5)
    stopper = threading.Thread(target=made.stop)
    stopper.start()
    time.sleep(0.05)
    answer.set()
    stopper.join(5)
    assert made.failure() is DOWN
    assert probe.closed == 0


def test_a_probe_that_raises_is_logged_and_probing_goes_on(
    breaker: Breaker, probe: Probe, caplog: pytest.LogCaptureFixture
) -> None:
    raised: list[int] = []

    def buggy() -> StoreUnavailable | None:
        if not raised:
            raised.append(1)
            raise RuntimeError("a bug")
        return probe()

    made = Breaker(buggy, probe_every=0.01)
    try:
        probe.down = False
        made.trip(DOWN)
        eventually(lambda: made.failure() is None)
    finally:
        made.stop()
    assert "a bug" in caplog.text


def test_stop_ends_the_probing(breaker: Breaker, probe: Probe) -> None:
    breaker.trip(DOWN)
    eventually(lambda: probe.calls >= 1)
    breaker.stop()
    calls = probe.calls
    time.sleep(0.05)
    assert probe.calls == calls
    breaker.trip(DOWN)  # after stop (a write failing during the shutdown): no new thread
    time.sleep(0.05)
    assert probe.calls == calls


# --- in the app --------------------------------------------------------------------------------


class CountingStore:
    """Counts the calls the app makes to the store's writes (while the breaker is open, none)."""

    def __init__(self, store: RecordStore) -> None:
        self.store = store
        self.calls: list[str] = []
        for name in ("receive_message", "is_opted_out", "record_call", "transaction"):
            real = getattr(store, name)
            setattr(store, name, self._counted(name, real))

    def _counted(self, name: str, real: Callable[..., object]) -> Callable[..., object]:
        def counted(*args: object, **kwargs: object) -> object:
            self.calls.append(name)
            return real(*args, **kwargs)

        return counted


@pytest.fixture
def slow_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    """The app's breaker probes every 10 s: the test sees it open, with nothing probing yet."""
    monkeypatch.setattr(breaker_module, "PROBE_EVERY", 10.0)


def trip(app: webtest.TestApp, failing: Callable[[], None]) -> None:
    """Make the next write fail (`failing` breaks the record), through a webhook."""
    failing()
    signed_post(app, AUTH_TOKEN)("/sms_url", numbered_sms(1), status=200)


@pytest.mark.usefixtures("slow_probe")
def test_while_open_webhooks_answer_without_trying_the_record(
    store: RecordStore,
    settings: Settings,
    make_app: Callable[..., webtest.TestApp],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = make_app(settings, store=store)

    def receive_fails(*args: object, **kwargs: object) -> object:
        raise DOWN

    monkeypatch.setattr(store, "receive_message", receive_fails)
    signed_post(app, AUTH_TOKEN)("/sms_url", numbered_sms(1), status=200)
    counting = CountingStore(store)
    post = signed_post(app, AUTH_TOKEN)
    with caplog.at_level(logging.WARNING, logger="dialtone.record"):
        assert "<Message>" in post("/sms_url", numbered_sms(2), status=200).text
        post("/sms_url", numbered_sms(3, body="STOP"), status=200)
        post("/voice_url", {"CallSid": "CA1", "From": CALLER, "To": PHONE_NUMBER}, status=200)
        assert app.get("/healthz", status=503).json["record"] == "cannot be written: down"
        app.post_json("/send_sms", {"to": CALLER, "body": "hi"}, headers=AUTH, status=503)
    # Nothing waited on the record; SQLite's opt-out list is still read (a local file).
    assert set(counting.calls) <= (set() if store.shared else {"is_opted_out"})
    lines = [r.getMessage() for r in caplog.records]
    for n in (2, 3):  # each lost record still logged once, with its SID
        assert len([line for line in lines if f"SM{n:032x}" in line]) == 1
    assert len([line for line in lines if "CA1" in line]) == 1
    kept = [line for line in lines if line.startswith("Kept the opt-out change")]
    assert len(kept) == 1  # the STOP kept, to be applied once the record takes writes
    assert CALLER in kept[0]


def test_sends_wait_the_settling_time_after_the_record_is_back(
    store: RecordStore,
    settings: Settings,
    make_app: Callable[..., webtest.TestApp],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another instance may hold a STOP it kept meanwhile: a send is refused (503, with
    Retry-After) until it has had the time to apply it."""
    monkeypatch.setattr(breaker_module, "PROBE_EVERY", 0.01)
    monkeypatch.setattr(breaker_module, "SETTLE", 30.0)
    app = make_app(settings, store=store)
    real = store.receive_message
    calls = 0

    def fails_once(*args: Any, **kwargs: Any) -> object:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise DOWN
        return real(*args, **kwargs)

    monkeypatch.setattr(store, "receive_message", fails_once)
    signed_post(app, AUTH_TOKEN)("/sms_url", numbered_sms(1), status=200)
    eventually(lambda: app.get("/healthz", status="*").status_int == 200)
    signed_post(app, AUTH_TOKEN)("/sms_url", numbered_sms(2), status=200)
    assert store.message(f"SM{2:032x}") is not None  # webhooks are recorded again at once
    refused = app.post_json("/send_sms", {"to": CALLER, "body": "hi"}, headers=AUTH, status=503)
    assert 25 <= int(refused.headers["Retry-After"]) <= 30
    assert "another instance" in refused.json["error"]["message"]


@pytest.mark.postgres
def test_postgresql_down_costs_each_webhook_no_wait(
    settings: Settings,
    make_app: Callable[..., webtest.TestApp],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Found by a reliability attack: each webhook waited about 1.5 s for a PostgreSQL that was
    down (a pool wait, a retry, the opt-out read), so with THREADS=2 at 5 a second the queue
    grew past Twilio's 15 s. Now the first one waits and the rest do not."""
    with own_server() as server, PostgresStore(server.fresh_database()) as store:
        app = make_app(settings, store=store)
        post = signed_post(app, AUTH_TOKEN)
        server.stop()
        post("/sms_url", numbered_sms(1), status=200)  # this one finds out
        started = time.monotonic()
        for n in range(2, 22):
            post("/sms_url", numbered_sms(n), status=200)
        took = time.monotonic() - started
        assert took < 3, f"20 webhooks took {took:.1f} s while the record was down"
        server.start()
        eventually(lambda: app.get("/healthz", status="*").status_int == 200, within=30)
        post("/sms_url", numbered_sms(99), status=200)
        assert store.message(f"SM{99:032x}") is not None


@pytest.mark.skipif(sys.platform == "win32", reason="flock")
def test_sqlite_locked_by_another_process_costs_each_webhook_no_wait(
    settings: Settings,
    make_app: Callable[..., webtest.TestApp],
) -> None:
    """Found in review: the probe waited the whole lock timeout for the writer lock, holding the
    store's own lock, which the opt-out read needs too; most texts then waited almost as long.
    The probe now waits briefly."""
    import fcntl
    import os

    from dialtone.record.store import Store

    path = settings.database_path
    with Store(path, lock_timeout=2.0) as store:
        app = make_app(settings, store=store)
        post = signed_post(app, AUTH_TOKEN)
        fd = os.open(f"{path}-writer.lock", os.O_RDWR)  # another process's, as flock sees it
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            post("/sms_url", numbered_sms(1), status=200)  # this one waits the 2 s, and finds out
            took = []
            for n in range(2, 22):
                started = time.monotonic()
                post("/sms_url", numbered_sms(n), status=200)
                took.append(time.monotonic() - started)
                time.sleep(0.05)
            assert max(took) < 1, took
        finally:
            os.close(fd)  # the lock goes with it
        eventually(lambda: app.get("/healthz", status="*").status_int == 200)
        post("/sms_url", numbered_sms(99), status=200)
        assert store.message(f"SM{99:032x}") is not None


@pytest.mark.postgres
def test_sends_settle_after_an_outage_this_instance_only_met_as_dead_connections(
    tmp_path: Path,
) -> None:
    """Found by a reliability attack: PostgreSQL restarted while this instance had no traffic,
    so no write of it failed (its first write after met a dead connection and wrote on through
    a new one) and it sent at once, past a STOP another instance had kept meanwhile."""
    from dialtone.record.recorder import Recorder, Settling
    from dialtone.record.spool import OptOutSpool

    with own_server() as server, PostgresStore(server.fresh_database()) as store:
        recorder = Recorder(store, OptOutSpool.beside(tmp_path / "dialtone.db"))
        try:
            assert recorder.opted_out_before_sending(CALLER) is False
            server.stop()
            server.start()
            with pytest.raises(Settling):
                recorder.opted_out_before_sending(CALLER)
            assert recorder.breaker.failure() is None  # no write failed
        finally:
            recorder.close()


@pytest.mark.usefixtures("slow_probe")
def test_while_open_kept_changes_wait_for_the_probe_not_the_record(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The thread that retries kept opt-out changes does not write while the breaker is open
    (each try would wait out the failure, holding the store's lock the opt-out read needs)."""
    from dialtone.record.recorder import Recorder
    from dialtone.record.spool import KeptOptOuts, OptOutChange, OptOutSpool
    from dialtone.record.store import Store

    monkeypatch.setattr(KeptOptOuts, "RETRY", 0.01)
    with Store(settings.database_path) as store:
        writes = []
        real = store.set_opt_out

        def counted(*args: Any, **kwargs: Any) -> bool:
            writes.append(1)
            return real(*args, **kwargs)

        monkeypatch.setattr(store, "set_opt_out", counted)
        recorder = Recorder(store, OptOutSpool.beside(tmp_path / "dialtone.db"))
        try:
            recorder.breaker.trip(DOWN)
            recorder.kept.keep(OptOutChange(CALLER, True, "STOP", store.now()))
            time.sleep(0.2)  # the retry thread runs about 20 times meanwhile
            assert writes == []
            assert recorder.kept.pending()
        finally:
            recorder.close()


def test_the_probe_that_passes_applies_what_was_kept_at_once(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even when the retry thread is at it just then: SETTLE counts on this instance applying
    its kept STOP as soon as its probe passes, not at the thread's next try."""
    from dialtone.record.recorder import Recorder
    from dialtone.record.spool import KeptOptOuts, OptOutChange, OptOutSpool
    from dialtone.record.store import Store

    monkeypatch.setattr(KeptOptOuts, "RETRY", 30.0)
    monkeypatch.setattr(breaker_module, "PROBE_EVERY", 0.3)
    with Store(settings.database_path) as store:
        recorder = Recorder(store, OptOutSpool.beside(tmp_path / "dialtone.db"))
        try:
            recorder.breaker.trip(DOWN)
            recorder.kept.keep(OptOutChange(CALLER, True, "STOP", store.now()))
            with recorder.kept._applying:  # the retry thread, mid-try, as the probe passes
                eventually(lambda: recorder.breaker.failure() is None)
                time.sleep(0.2)
            eventually(lambda: store.is_opted_out(CALLER), within=2.0)
        finally:
            recorder.close()


def test_while_open_the_sqlite_opt_out_read_waits_little_for_a_stuck_write(
    settings: Settings, make_app: Callable[..., webtest.TestApp]
) -> None:
    """Found in review: a write stuck on a slow disk holds the store's lock; each text's
    opt-out read waited the whole lock timeout for it, even with the breaker open."""
    from dialtone.record.store import Store

    with Store(settings.database_path, lock_timeout=1.0) as store:
        app = make_app(settings, store=store)
        post = signed_post(app, AUTH_TOKEN)
        with stuck_write(store):
            started = time.monotonic()
            post("/sms_url", numbered_sms(1), status=200)  # waits its lock timeout, and finds out
            first = time.monotonic() - started
            took = []
            for n in range(2, 8):
                started = time.monotonic()
                post("/sms_url", numbered_sms(n), status=200)
                took.append(time.monotonic() - started)
        assert first < 1.8, first
        assert max(took) < 0.6, took


@pytest.mark.postgres
def test_a_read_that_fails_counts_as_an_outage_for_sends() -> None:
    """Found in review: only writes noted a disruption, so an instance that only read during
    the outage (GET /messages, say) could send at once after it. Every failure notes one now,
    and sends settle after it (test_sends_settle_after_an_outage_this_instance_only_met...)."""
    with own_server() as server, PostgresStore(server.fresh_database()) as store:
        server.stop()
        before = time.monotonic()
        with pytest.raises(StoreUnavailable):
            store.messages()
        assert store.disrupted_at >= before
