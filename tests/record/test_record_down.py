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

from dialtone.record.base import RecordStore
from dialtone.record.errors import StoreUnavailable
from dialtone.record.postgres import PostgresStore
from dialtone.record.recorder import Recorder
from dialtone.record.spool import OptOutSpool
from dialtone.record.store import Store
from dialtone.settings import Settings
from tests.conftest import API_TOKEN, AUTH_TOKEN, CALLER, PHONE_NUMBER, signed_post
from tests.support.postgres import own_server

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


def text(n: int, body: str = "hours") -> dict[str, str]:
    return {"MessageSid": f"SM{n:032x}", "From": CALLER, "To": PHONE_NUMBER, "Body": body}


def check_down(app: webtest.TestApp, caplog: pytest.LogCaptureFixture, n: int) -> None:
    """What must hold while the record cannot be written."""
    post = signed_post(app, AUTH_TOKEN)
    with caplog.at_level(logging.ERROR, logger="dialtone.record"):
        answer = post("/sms_url", text(n), status=None)
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
        signed_post(app, AUTH_TOKEN)("/sms_url", text(n, body="STOP"), status=None)
    lost = [r.getMessage() for r in caplog.records if f"SM{n:032x}" in r.getMessage()]
    assert len(lost) == 1
    assert "NOT RECORDED" in lost[0]
    assert f"the opt-out of {CALLER} (STOP)" in lost[0]


def check_stop_kept(app: webtest.TestApp) -> None:
    """Once the record is back, the STOP it could not take is applied before the next send."""
    refused = app.post_json("/send_sms", {"to": CALLER, "body": "hi"}, headers=AUTH, status=409)
    assert refused.json["error"]["opted_out"] is True


def check_back(app: webtest.TestApp, store: Store | PostgresStore, n: int) -> None:
    """What must hold once the record takes writes again (no restart)."""
    health = app.get("/healthz").json
    assert (health["status"], health["record"]) == ("ok", "ok")
    signed_post(app, AUTH_TOKEN)("/sms_url", text(n, body="STOP"), status=None)
    assert store.message(f"SM{n:032x}") is not None
    refused = app.post_json("/send_sms", {"to": CALLER, "body": "hi"}, headers=AUTH, status=409)
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
            post("/sms_url", text(n, body="x" * 30_000), status=None)
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
        time.sleep(1.1)  # a reconnection is tried at most once a second: it learns why
        with caplog.at_level(logging.ERROR, logger="dialtone.record"):
            signed_post(app, AUTH_TOKEN)("/sms_url", text(4), status=None)
        lines = "\n".join(
            r.getMessage() for r in caplog.records if "NOT RECORDED" in r.getMessage()
        )
        assert "couldn't get a connection" not in lines  # the pool's words, not the cause
        assert "Connection refused" in lines.splitlines()[-1]
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

    def counted() -> StoreUnavailable | None:
        probes.append(1)
        return real()

    monkeypatch.setattr(store, "health", counted)
    recorder = Recorder(store, OptOutSpool.beside(tmp_path / "dialtone.db"))
    for _ in range(50):
        assert recorder.health() is None
    assert len(probes) == 1

    def fails() -> None:
        raise StoreUnavailable("down", path="x")

    recorder._attempt("inbound message", "SM1", fails)
    recorder.health()
    assert len(probes) == 2
