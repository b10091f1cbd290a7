"""The app while its record cannot be written (issues 9.4 and 12.4): webhooks still answered
and each lost record logged once with its SID, GET /healthz 503 naming the cause, /send_sms and
/make_call refused with 503 (fail closed), and all of it back by itself.

SQLite is made unwritable for real (a full tmpfs, as root) and by an injected SQLITE_READONLY
(`PRAGMA query_only`, where the test cannot mount); PostgreSQL is stopped and started for real.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import webtest

from dialtone.record import breaker
from dialtone.record.base import RecordStore
from dialtone.record.errors import StoreUnavailable
from dialtone.record.postgres import PostgresStore
from dialtone.record.recorder import Recorder
from dialtone.record.spool import OptOutSpool
from dialtone.record.store import Store
from dialtone.settings import Settings
from tests.conftest import API_TOKEN, AUTH_TOKEN, CALLER, PHONE_NUMBER, signed_post
from tests.support.forms import numbered_sms
from tests.support.postgres import own_server

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


def check_down(app: webtest.TestApp, caplog: pytest.LogCaptureFixture, n: int) -> None:
    """What must hold while the record cannot be written."""
    post = signed_post(app, AUTH_TOKEN)
    with caplog.at_level(logging.ERROR, logger="dialtone.record"):
        answer = post("/sms_url", numbered_sms(n), status=None)
    assert answer.status_int == 200  # the texter still gets the reply
    lost = [r.getMessage() for r in caplog.records if f"SM{n:032x}" in r.getMessage()]
    assert len(lost) == 1  # logged once, with its SID
    assert "NOT RECORDED" in lost[0]
    # ... and nothing else for it: not a second line for the opt-out that could not be read.
    assert [r for r in caplog.records if CALLER in r.getMessage()] == []
    health = app.get("/healthz", status=503)
    assert health.json["status"] == "unavailable"
    assert "cannot be written" in health.json["record"]
    sms = app.post_json("/send_sms", {"to": CALLER, "body": "hi"}, headers=AUTH, status=503)
    assert "opt-outs" in sms.json["error"]["message"]
    call = app.post_json("/make_call", {"to": CALLER, "message": "hi"}, headers=AUTH, status=503)
    assert "nothing was sent" in call.json["error"]["message"]


def check_lost_stop_named(app: webtest.TestApp, caplog: pytest.LogCaptureFixture, n: int) -> None:
    """A STOP that could not be recorded: its line names the number and the keyword, so that
    an operator can redo the opt-out."""
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="dialtone.record"):
        signed_post(app, AUTH_TOKEN)("/sms_url", numbered_sms(n, body="STOP"), status=None)
    lost = [r.getMessage() for r in caplog.records if f"SM{n:032x}" in r.getMessage()]
    assert len(lost) == 1
    assert "NOT RECORDED" in lost[0]
    assert f"the opt-out of {CALLER} (STOP)" in lost[0]


@pytest.fixture(autouse=True)
def short_settling(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sends wait 0.5 s after the record is back, not 3 (test_breaker.py tests the wait)."""
    monkeypatch.setattr(breaker, "SETTLE", 0.5)


def wait_until_back(app: webtest.TestApp) -> None:
    """Until GET /healthz says 200: the breaker's probe found the record back."""
    deadline = time.monotonic() + 30
    while app.get("/healthz", status="*").status_int != 200:
        assert time.monotonic() < deadline, "the record did not come back by itself"
        time.sleep(0.05)


def send_once_settled(app: webtest.TestApp) -> webtest.TestResponse:
    """/send_sms to CALLER, again while it is refused (503) for the settling time after the
    record came back; the first other answer."""
    deadline = time.monotonic() + 10
    while True:
        answer = app.post_json("/send_sms", {"to": CALLER, "body": "hi"}, headers=AUTH, status="*")
        if answer.status_int != 503:
            return answer
        assert "Retry-After" in answer.headers
        assert time.monotonic() < deadline, "sends stayed refused after the record was back"
        time.sleep(0.1)


def check_stop_kept(app: webtest.TestApp) -> None:
    """Once the record is back, the STOP it could not take is applied before the next send:
    refused while sends settle, then as opted out, never sent."""
    wait_until_back(app)
    refused = send_once_settled(app)
    assert refused.status_int == 409
    assert refused.json["error"]["opted_out"] is True


def check_back(app: webtest.TestApp, store: Store | PostgresStore, n: int) -> None:
    """What must hold once the record takes writes again (no restart)."""
    wait_until_back(app)
    health = app.get("/healthz").json
    assert (health["status"], health["record"]) == ("ok", "ok")
    signed_post(app, AUTH_TOKEN)("/sms_url", numbered_sms(n, body="STOP"), status=None)
    assert store.message(f"SM{n:032x}") is not None
    refused = send_once_settled(app)
    assert refused.status_int == 409
    assert refused.json["error"]["opted_out"] is True  # the STOP after the outage was kept


def test_an_injected_read_only_record(
    settings: Settings, make_app: Callable[..., webtest.TestApp], caplog: pytest.LogCaptureFixture
) -> None:
    with Store(settings.database_path) as store:
        app = make_app(settings, store=store)
        assert app.get("/healthz").json["record"] == "ok"
        store._connection().execute("PRAGMA query_only = 1")  # SQLITE_READONLY from now on
        check_down(app, caplog, 1)
        check_lost_stop_named(app, caplog, 3)
        assert "SQLITE_READONLY" in app.get("/healthz", status=503).json["record"]
        assert str(settings.database_path) not in app.get("/healthz", status=503).text
        store._connection().execute("PRAGMA query_only = 0")
        check_stop_kept(app)
        check_back(app, store, 2)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MB tmpfs of its own (root only, as CI runs), unmounted afterwards."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mount = shutil.which("mount") or "/bin/mount"
    made = subprocess.run(
        [mount, "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)],
        capture_output=True,
        check=False,
    )
    if os.geteuid() != 0 or made.returncode:
        pytest.skip("needs root and mount (as CI runs) to make a small filesystem")
    try:
        yield mount_point
    finally:
        subprocess.run(
            [shutil.which("umount") or "/bin/umount", "-l", str(mount_point)], check=False
        )


def test_a_disk_that_fills_up_and_is_freed(
    small_disk: Path,
    settings: Settings,
    make_app: Callable[..., webtest.TestApp],
    caplog: pytest.LogCaptureFixture,
) -> None:
    from tests.record.test_unwritable import fill_after_emptying_the_wal

    settings = settings.with_overrides(database_path=small_disk / "dialtone.db")
    with Store(settings.database_path) as store:
        app = make_app(settings, store=store)
        filler = fill_after_emptying_the_wal(small_disk, store)
        post = signed_post(app, AUTH_TOKEN)
        for n in range(100, 160):  # big texts until the WAL must grow and cannot
            post("/sms_url", numbered_sms(n, body="x" * 30_000), status=None)
            if store.message(f"SM{n:032x}") is None:
                break
        else:
            pytest.fail("the record kept taking writes on a full disk")
        check_down(app, caplog, 1)
        filler.unlink()
        check_back(app, store, 2)


@pytest.mark.postgres
def test_postgresql_stopped_and_started(
    settings: Settings, make_app: Callable[..., webtest.TestApp], caplog: pytest.LogCaptureFixture
) -> None:
    with own_server() as server, PostgresStore(server.fresh_database()) as store:
        app = make_app(settings, store=store)
        assert app.get("/healthz").json["record"] == "ok"
        server.stop()
        check_down(app, caplog, 1)
        check_lost_stop_named(app, caplog, 3)
        # The breaker's probe tries a reconnection (at most once a second): it learns why,
        # and the lines of the webhooks after it say so.
        deadline = time.monotonic() + 10
        for n in range(4, 100):
            with caplog.at_level(logging.ERROR, logger="dialtone.record"):
                signed_post(app, AUTH_TOKEN)("/sms_url", numbered_sms(n), status=None)
            lines = [r.getMessage() for r in caplog.records if "NOT RECORDED" in r.getMessage()]
            assert not any("couldn't get a connection" in line for line in lines)  # pool's words
            if "Connection refused" in lines[-1] or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert "Connection refused" in lines[-1]
        assert app.get("/healthz", status=503).json["record"] == (
            "cannot be written: PostgreSQL unreachable"
        )
        server.start()
        check_stop_kept(app)
        check_back(app, store, 2)


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("table", "mode"),
    [
        ("messages", "ACCESS EXCLUSIVE"),  # an ALTER TABLE in a migration
        ("messages", "SHARE"),  # a CREATE INDEX without CONCURRENTLY
        ("opt_outs", "ACCESS EXCLUSIVE"),  # also holds the opt-out read after the write
    ],
)
def test_a_locked_table_holds_no_webhook_past_the_statement_timeout(
    table: str,
    mode: str,
    postgres_url: str,
    settings: Settings,
    make_app: Callable[..., webtest.TestApp],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A migration or a LOCK TABLE by hand holds the messages table: each webhook is answered
    after STATEMENT_TIMEOUT, unrecorded and logged; /healthz says why; all back once the lock
    goes, with no reconnection (the server was up all along)."""
    import psycopg

    from dialtone.record import postgres

    monkeypatch.setattr(postgres, "STATEMENT_TIMEOUT", 0.3)
    with PostgresStore(postgres_url) as store:
        app = make_app(settings, store=store)
        assert app.get("/healthz").json["record"] == "ok"
        with psycopg.connect(postgres_url) as locker:
            locker.execute(f"LOCK TABLE {table} IN {mode} MODE")
            started = time.monotonic()
            check_down(app, caplog, 1)
            assert time.monotonic() - started < 10  # not held until the lock goes
            record = app.get("/healthz", status=503).json["record"]
            assert "statement timeout" in record
        with caplog.at_level(logging.WARNING, logger="dialtone.record"):
            check_back(app, store, 2)
        assert not [r for r in caplog.records if "Reconnected" in r.getMessage()]


def test_a_health_success_stands_for_a_second_unless_a_write_fails(
    store: RecordStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flood of GET /healthz costs the database one probe write a second; a failed write
    ends the second at once, so /healthz says so."""
    probes = []
    real = store.health

    def counted(wait: float | None = None) -> StoreUnavailable | None:
        probes.append(1)
        return real(wait)

    monkeypatch.setattr(store, "health", counted)
    recorder = Recorder(store, OptOutSpool.beside(tmp_path / "dialtone.db"))
    for _ in range(50):
        assert recorder.health() is None
    assert len(probes) == 1

    def fails() -> None:
        raise StoreUnavailable("down", path="x")

    recorder._attempt("inbound message", "SM1", fails)
    assert recorder.health() is not None  # the failed write's, at once
    deadline = time.monotonic() + 10
    while recorder.health() is not None:  # until the breaker's probe finds the record fine
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert len(probes) == 2
    recorder.close()


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_record_file_deleted_or_replaced_while_running(
    how: str,
    settings: Settings,
    make_app: Callable[..., webtest.TestApp],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Found by a reliability attack: SQLite went on writing into the deleted file, so the
    STOPs it acknowledged were lost at the next start, with /healthz 200 all along. Now the
    writes stop (the breaker opens), STOPs are kept, and a restart applies them."""
    path = settings.database_path
    with Store(path) as store:
        app = make_app(settings, store=store)
        assert app.get("/healthz").json["record"] == "ok"
        if how == "deleted":
            for file in path.parent.glob(path.name + "*"):
                if file.suffix in (".db", ".db-wal", ".db-shm"):
                    file.unlink()
        else:  # a backup put back by hand while the server runs
            shutil.copy(path, path.with_name("backup.db"))
            os.replace(path.with_name("backup.db"), path)
        check_down(app, caplog, 1)
        assert "deleted or replaced" in app.get("/healthz", status=503).json["record"]
        check_lost_stop_named(app, caplog, 3)
    restarted = make_app(settings)  # the record at the path now, and what was kept applied
    check_stop_kept(restarted)


def test_a_spool_that_cannot_be_read_says_so(
    settings: Settings, make_app: Callable[..., webtest.TestApp]
) -> None:
    """Found by an outsider: sends were refused with a garbled 503 ("The record opt-out
    changes kept...") while /healthz said nothing. Webhooks are fine, so /healthz stays 200
    (a load balancer must not take the instance out), and says that sends are refused."""
    spool = settings.database_path.with_name(settings.database_path.name + "-opt-outs.jsonl")
    spool.mkdir(parents=True)  # there, and no file: every read of it fails
    app = make_app(settings)
    deadline = time.monotonic() + 10
    while "opt_outs" not in (health := app.get("/healthz").json):
        assert time.monotonic() < deadline, health
        time.sleep(0.05)
    assert health["record"] == "ok"
    assert "sends are refused" in health["opt_outs"]
    refused = app.post_json("/send_sms", {"to": CALLER, "body": "hi"}, headers=AUTH, status=503)
    message = refused.json["error"]["message"]
    assert message.startswith("The record has opt-out changes kept while it was down that")
    assert "mend or move the file" in message
    signed_post(app, AUTH_TOKEN)("/sms_url", numbered_sms(1), status=200)


@pytest.mark.postgres
@pytest.mark.parametrize("table", ["messages", "calls", "events", "opt_outs"])
def test_a_probe_does_not_pass_while_a_table_webhooks_write_is_locked(
    table: str,
    postgres_url: str,
    settings: Settings,
    make_app: Callable[..., webtest.TestApp],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Found by a reliability attack: the probe did not take the lock on `calls`, so with that
    table locked /healthz said 200 while every call webhook still waited and was lost."""
    import psycopg

    from dialtone.record import postgres

    monkeypatch.setattr(postgres, "STATEMENT_TIMEOUT", 0.3)
    with PostgresStore(postgres_url) as store:
        app = make_app(settings, store=store)
        with psycopg.connect(postgres_url) as locker:
            locker.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
            call = {"CallSid": "CA" + "1" * 32, "From": CALLER, "To": PHONE_NUMBER}
            signed_post(app, AUTH_TOKEN)("/voice_url", call, status=200)  # opens the breaker
            signed_post(app, AUTH_TOKEN)("/sms_url", numbered_sms(1), status=200)
            app.get("/healthz", status=503)
            time.sleep(1.5)  # several probes, each held by the lock
            app.get("/healthz", status=503)
        wait_until_back(app)
