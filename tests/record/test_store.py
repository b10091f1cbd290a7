"""The record: idempotency, status order, restarts, threads, migrations and a failing disk."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dialtone.errors import SettingsError
from dialtone.record.base import RecordStore
from dialtone.record.forms import clean_form
from dialtone.record.schema import (
    MIGRATIONS,
    call_status_rank,
    message_status_rank,
    migrate,
)
from dialtone.record.store import (
    BadRecord,
    Outcome,
    SchemaMismatch,
    Store,
    StoreUnavailable,
    open_store,
)
from dialtone.settings import Settings
from tests.conftest import CALLER, PHONE_NUMBER
from tests.support.forms import inbound_sms
from tests.support.postgres import BACKENDS, count_rows, open_backend

REPO = Path(__file__).resolve().parents[2]
OTHER = "+15559990000"


class Clock:
    """A clock that moves one millisecond each time it is read, so order is deterministic."""

    def __init__(self, start: datetime = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)) -> None:
        self.now = start

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "var" / "dialtone.db"


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, db_path: Path) -> Iterator[RecordStore]:
    """A fresh record in SQLite, then in PostgreSQL: every test using it runs on both."""
    with open_backend(request, request.param, db_path, clock=Clock()) as opened:
        yield opened


def inbound(sid: str, **fields: str) -> dict[str, str]:
    """An inbound SMS webhook form with this SID."""
    return inbound_sms(sid=sid, **fields)


def status(sid: str, value: str, **extra: str) -> dict[str, str]:
    """A message status callback form."""
    return {"MessageSid": sid, "MessageStatus": value, "From": PHONE_NUMBER, "To": CALLER} | extra


def call_form(sid: str, value: str, direction: str = "inbound", **extra: str) -> dict[str, str]:
    """A voice webhook or call status callback form."""
    form = {"CallSid": sid, "CallStatus": value, "Direction": direction}
    return form | {"From": CALLER, "To": PHONE_NUMBER} | extra


def count(store: RecordStore, table: str) -> int:
    """Rows in `table` of the record."""
    return count_rows(store, table)


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter that can import dialtone."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


# --- schema and opening ------------------------------------------------------------------


def test_first_start_creates_directory_schema_and_wal(db_path: Path) -> None:
    assert not db_path.parent.exists()
    with Store(db_path) as store:
        assert store.schema_version == len(MIGRATIONS)
    assert db_path.is_file()
    with sqlite3.connect(db_path) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        assert {"messages", "calls", "events", "opt_outs"} <= tables
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_open_store_uses_the_database_path_setting(tmp_path: Path) -> None:
    settings = Settings.from_env({"DATABASE_PATH": str(tmp_path / "here.db")})
    assert Settings.from_env({}).database_path == Path("var/dialtone.db")
    with open_store(settings) as store:
        assert isinstance(store, Store)
        store.set_opt_out(CALLER, True)
    with Store(tmp_path / "here.db") as store:
        assert count(store, "opt_outs") == 1


def test_open_store_uses_postgresql_when_database_url_is_set(
    tmp_path: Path, postgres_url: str
) -> None:
    from dialtone.record.postgres import PostgresStore

    settings = Settings.from_env(
        {"DATABASE_URL": postgres_url, "DATABASE_PATH": str(tmp_path / "unused.db")}
    )
    assert postgres_url not in repr(settings)
    with open_store(settings) as store:
        assert isinstance(store, PostgresStore)
        assert store.schema_version == 3
        store.set_opt_out(CALLER, True)
    with open_store(settings) as store:  # a second start finds nothing to migrate
        assert store.is_opted_out(CALLER)
    assert not (tmp_path / "unused.db").exists()


def test_a_database_url_that_is_not_postgresql_is_refused() -> None:
    with pytest.raises(SettingsError, match="DATABASE_URL") as caught:
        Settings.from_env({"DATABASE_URL": "mysql://root:hunter2@db/x"})
    assert "hunter2" not in str(caught.value)


def test_the_record_its_wal_and_shm_are_private(tmp_path: Path) -> None:
    db_path = tmp_path / "var" / "dialtone.db"
    with Store(db_path) as store:
        store.set_opt_out(CALLER, True)
        modes = {
            path.name: stat.S_IMODE(path.stat().st_mode)
            for path in db_path.parent.iterdir()
            if not path.name.endswith(".lock")
        }
        assert set(modes) == {"dialtone.db", "dialtone.db-wal", "dialtone.db-shm"}
        assert set(modes.values()) == {0o600}
    assert stat.S_IMODE(db_path.parent.stat().st_mode) == 0o700


def test_an_existing_world_readable_record_is_made_private(tmp_path: Path) -> None:
    db_path = tmp_path / "dialtone.db"
    Store(db_path).close()
    db_path.chmod(0o644)
    with Store(db_path):
        assert stat.S_IMODE(db_path.stat().st_mode) == 0o600
        assert stat.S_IMODE(db_path.with_name("dialtone.db-wal").stat().st_mode) == 0o600


def test_a_migration_from_an_older_version_keeps_the_data(db_path: Path) -> None:
    with Store(db_path) as store:
        store.record_inbound_message(inbound("SM1"))
    newer = (*MIGRATIONS, "CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL)")
    with Store(db_path, migrations=newer) as store:
        assert store.schema_version == len(MIGRATIONS) + 1
        message = store.message("SM1")
        assert message is not None
        assert message.body == "hello"
    with sqlite3.connect(db_path) as conn:
        conn.execute("INSERT INTO notes (text) VALUES ('the new table is there')")


def test_a_failed_migration_leaves_the_previous_version_whole(db_path: Path) -> None:
    Store(db_path).close()
    broken = (*MIGRATIONS, "CREATE TABLE half (id INTEGER); THIS IS NOT SQL")
    with pytest.raises(StoreUnavailable):
        Store(db_path, migrations=broken)
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert "half" not in tables


def test_migrate_walks_every_step_from_an_empty_database() -> None:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    steps = ("CREATE TABLE a (x)", "CREATE TABLE b (y)", "INSERT INTO a VALUES (1)")
    assert migrate(conn, steps) == 3
    assert migrate(conn, steps) == 3  # nothing left to do
    assert conn.execute("SELECT count(*) FROM a").fetchone()[0] == 1


def test_a_database_from_a_newer_dialtone_is_refused(db_path: Path) -> None:
    newer = (*MIGRATIONS, "CREATE TABLE future (x)")
    Store(db_path, migrations=newer).close()
    with pytest.raises(SchemaMismatch, match="newer Dialtone"):
        Store(db_path)


# --- messages ------------------------------------------------------------------------------


def test_inbound_message_is_recorded_with_media(store: RecordStore) -> None:
    form = inbound(
        "SM1",
        body="Grüße 👋 مرحبا",
        NumMedia="2",
        MediaUrl0="https://api.twilio.com/media/ME1",
        MediaContentType0="image/jpeg",
        MediaUrl1="https://api.twilio.com/media/ME2",
        MediaContentType1="video/mp4",
    )
    assert store.record_inbound_message(form, "token-1") is Outcome.NEW
    message = store.message("SM1")
    assert message is not None
    assert (message.direction, message.from_number, message.to_number) == (
        "inbound",
        CALLER,
        PHONE_NUMBER,
    )
    assert message.peer == CALLER
    assert message.body == "Grüße 👋 مرحبا"
    assert [(m.url, m.content_type) for m in message.media] == [
        ("https://api.twilio.com/media/ME1", "image/jpeg"),
        ("https://api.twilio.com/media/ME2", "video/mp4"),
    ]
    assert message.status == "received"
    assert message.as_dict()["media"][1]["content_type"] == "video/mp4"
    assert message.as_dict()["created_at"].endswith("Z")


def test_same_idempotency_token_is_stored_once(store: RecordStore) -> None:
    assert store.record_inbound_message(inbound("SM1"), "token-1") is Outcome.NEW
    assert store.record_inbound_message(inbound("SM1"), "token-1") is Outcome.DUPLICATE
    assert count(store, "messages") == 1
    assert count(store, "events") == 1


def test_same_sid_and_status_without_a_token_is_stored_once(store: RecordStore) -> None:
    store.record_outbound_message("SM2", CALLER, PHONE_NUMBER, "hi")
    assert store.record_message_status(status("SM2", "sent")) is Outcome.UPDATED
    assert store.record_message_status(status("SM2", "sent")) is Outcome.DUPLICATE
    assert store.record_inbound_message(inbound("SM1")) is Outcome.NEW
    assert store.record_inbound_message(inbound("SM1")) is Outcome.DUPLICATE
    assert [e.status for e in store.events("SM2")] == ["queued", "sent"]
    assert count(store, "events") == 3


def test_late_sent_after_delivered_is_kept_as_an_event_only(store: RecordStore) -> None:
    store.record_outbound_message("SM2", CALLER, PHONE_NUMBER, "hi")
    assert store.record_message_status(status("SM2", "delivered"), "t-1") is Outcome.UPDATED
    assert store.record_message_status(status("SM2", "sent"), "t-2") is Outcome.STALE
    message = store.message("SM2")
    assert message is not None
    assert message.status == "delivered"
    events = store.events("SM2")
    assert [(e.status, e.applied) for e in events] == [
        ("queued", True),
        ("delivered", True),
        ("sent", False),
    ]
    assert events[2].payload["MessageStatus"] == "sent"


def test_a_second_final_status_or_a_repeat_does_not_replace_the_first(store: RecordStore) -> None:
    store.record_outbound_message("SM2", CALLER, PHONE_NUMBER, "hi")
    assert store.record_message_status(status("SM2", "delivered"), "t-1") is Outcome.UPDATED
    assert store.record_message_status(status("SM2", "delivered"), "t-2") is Outcome.STALE
    assert store.record_message_status(status("SM2", "undelivered"), "t-3") is Outcome.STALE
    message = store.message("SM2")
    assert message is not None
    assert message.status == "delivered"
    assert [e.applied for e in store.events("SM2")] == [True, True, False, False]


def test_statuses_move_forward_in_twilio_order(store: RecordStore) -> None:
    store.record_outbound_message("SM2", CALLER, PHONE_NUMBER, "hi", status="accepted")
    for value in ("queued", "sending", "sent", "delivered", "read"):
        assert store.record_message_status(status("SM2", value)) is Outcome.UPDATED
    # A second final status does not replace the first.
    assert store.record_message_status(status("SM2", "failed")) is Outcome.STALE
    message = store.message("SM2")
    assert message is not None
    assert message.status == "read"


def test_status_ranks_follow_the_brief() -> None:
    rank = message_status_rank
    assert rank("accepted") < rank("queued") < rank("sending") < rank("sent") < rank("delivered")
    assert rank("delivered") == rank("undelivered") == rank("failed") < rank("read")
    assert rank("no-such-status") < rank("accepted")
    crank = call_status_rank
    assert crank("queued") < crank("initiated") < crank("ringing") < crank("in-progress")
    finals = {crank(s) for s in ("completed", "busy", "failed", "no-answer", "canceled")}
    assert finals == {crank("completed")}
    assert crank("completed") > crank("in-progress")


def test_a_failure_keeps_its_error_code(store: RecordStore) -> None:
    store.record_outbound_message("SM2", CALLER, PHONE_NUMBER, "hi")
    form = status("SM2", "undelivered", ErrorCode="30003", ErrorMessage="Unreachable")
    store.record_message_status(form)
    store.record_message_status(status("SM2", "sent"))  # late, and without an error code
    message = store.message("SM2")
    assert message is not None
    assert (message.status, message.error_code, message.error_message) == (
        "undelivered",
        30003,
        "Unreachable",
    )


def test_a_status_callback_that_beats_the_api_response_is_merged(store: RecordStore) -> None:
    assert store.record_message_status(status("SM3", "sent")) is Outcome.NEW
    outcome = store.record_outbound_message(
        "SM3", CALLER, PHONE_NUMBER, "the body", ["https://x/1"]
    )
    assert outcome is Outcome.STALE  # queued is older than sent ...
    message = store.message("SM3")
    assert message is not None
    assert message.status == "sent"  # ... so the status stays ...
    assert message.body == "the body"  # ... and the blanks are filled in.
    assert [m.url for m in message.media] == ["https://x/1"]
    assert message.direction == "outbound"
    assert message.peer == CALLER


def test_a_send_twilio_refused_is_recorded_with_its_code(store: RecordStore) -> None:
    outcome = store.record_outbound_message(
        None, CALLER, PHONE_NUMBER, "hi", status="failed", error_code=21610, error_message="STOP"
    )
    assert outcome is Outcome.NEW
    [message] = store.messages()
    assert message.sid.startswith("local-")
    assert (message.status, message.error_code) == ("failed", 21610)


def test_a_webhook_without_a_sid_or_status_is_refused_and_writes_nothing(
    store: RecordStore,
) -> None:
    with pytest.raises(BadRecord, match="MessageSid"):
        store.record_inbound_message({"From": CALLER, "Body": "hi"})
    with pytest.raises(BadRecord, match="MessageStatus"):
        store.record_message_status({"MessageSid": "SM1"})
    with pytest.raises(BadRecord, match="CallSid"):
        store.record_call({"CallStatus": "ringing"})
    with pytest.raises(BadRecord, match="CallSid"):
        store.record_digits("", "1")
    assert count(store, "messages") == count(store, "events") == count(store, "calls") == 0


def test_odd_text_is_stored_without_error(store: RecordStore) -> None:
    store.record_inbound_message(inbound("SM1", body="a\x00b"))
    store.record_inbound_message(inbound("SM2", body="lone \ud800 surrogate"))
    store.record_inbound_message(inbound("SM3", body="x" * 100_000))
    # NUL becomes U+FFFD in both backends (PostgreSQL's text cannot hold it).
    assert [m.body for m in store.messages()] == ["x" * 100_000, "lone ? surrogate", "a\ufffdb"]


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["MessageSid", "From", "To", "Body", "MediaUrl0", "SmsStatus", "X"])
        | st.text(max_size=20),
        st.text(max_size=200),
        max_size=8,
    )
)
def test_any_form_is_recorded_whole_or_refused(form: dict[str, str]) -> None:
    with Store(":memory:") as store:
        try:
            outcome = store.record_inbound_message(form)
        except BadRecord:
            assert not form.get("MessageSid")
            assert store.messages() == []
            return
        assert outcome is Outcome.NEW
        [message] = store.messages()
        [event] = store.events(message.sid)
        values = clean_form(form)
        assert message.body == values.get("Body", "")
        assert event.payload == values


# --- calls ---------------------------------------------------------------------------------


def test_a_call_with_digits_and_a_late_status(store: RecordStore) -> None:
    assert store.record_call(call_form("CA1", "ringing"), "t-1") is Outcome.NEW
    assert store.record_digits("CA1", "1", "t-2") is Outcome.UPDATED
    assert store.record_digits("CA1", "1", "t-2") is Outcome.DUPLICATE
    assert store.record_digits("CA1", "3#") is Outcome.UPDATED
    done = call_form("CA1", "completed", CallDuration="42")
    assert store.record_call_status(done, "t-3") is Outcome.UPDATED
    assert store.record_call_status(call_form("CA1", "in-progress"), "t-4") is Outcome.STALE
    call = store.call("CA1")
    assert call is not None
    assert (call.status, call.duration, call.digits) == ("completed", 42, ("1", "3#"))
    assert (call.direction, call.peer) == ("inbound", CALLER)
    assert [e.kind for e in store.events("CA1")] == [
        "call",
        "digits",
        "digits",
        "call-status",
        "call-status",
    ]


def test_an_outbound_call_and_its_callbacks(store: RecordStore) -> None:
    assert store.record_outbound_call("CA2", OTHER, PHONE_NUMBER) is Outcome.NEW
    form = {"CallSid": "CA2", "CallStatus": "ringing", "Direction": "outbound-api"}
    assert store.record_call_status(form) is Outcome.UPDATED
    call = store.call("CA2")
    assert call is not None
    assert (call.direction, call.peer, call.status) == ("outbound", OTHER, "ringing")
    assert call.as_dict()["to"] == OTHER


# --- opt-outs ------------------------------------------------------------------------------


def test_opt_out_and_back_in(store: RecordStore) -> None:
    assert not store.is_opted_out(CALLER)
    store.set_opt_out(CALLER, True, keyword="STOP")
    assert store.is_opted_out(CALLER)
    store.set_opt_out(CALLER, False, keyword="START")
    assert not store.is_opted_out(CALLER)
    [entry] = store.opt_outs()
    assert (entry.number, entry.opted_out, entry.keyword) == (CALLER, False, "START")
    assert entry.updated_at > entry.created_at


def test_a_retried_stop_does_not_undo_a_later_start(store: RecordStore) -> None:
    stop = inbound("SM1", body="STOP")
    store.record_inbound_message(stop, "t-stop", opted_out=True, keyword="STOP")
    assert store.is_opted_out(CALLER)
    store.record_inbound_message(inbound("SM2", body="START"), "t-start", opted_out=False)
    outcome = store.record_inbound_message(stop, "t-stop", opted_out=True, keyword="STOP")
    assert outcome is Outcome.DUPLICATE
    assert not store.is_opted_out(CALLER)


def test_a_replayed_keyword_under_a_new_token_changes_nothing(store: RecordStore) -> None:
    # Issue 9.5: a MessageSid already recorded changes nothing, whatever the token says.
    start = inbound("SM1", body="START")
    store.record_inbound_message(start, "t-start", opted_out=False, keyword="START")
    store.record_inbound_message(inbound("SM2", body="STOP"), "t-stop", opted_out=True)
    replay = store.record_inbound_message(start, "a-new-token", opted_out=False, keyword="START")
    assert replay is Outcome.DUPLICATE
    assert store.is_opted_out(CALLER)
    assert [e.idempotency_key for e in store.events("SM1")] == ["token:t-start"]


def test_a_token_already_recorded_for_another_sid_writes_nothing(store: RecordStore) -> None:
    store.record_inbound_message(inbound("SM1"), "t-1")
    assert store.record_inbound_message(inbound("SM9"), "t-1") is Outcome.DUPLICATE
    assert store.message("SM9") is None
    assert count(store, "events") == 1


def test_the_same_message_under_two_tokens_at_once_is_recorded_once(
    store: RecordStore,
) -> None:
    barrier = threading.Barrier(8)
    outcomes: list[Outcome] = []

    def deliver(n: int) -> None:
        barrier.wait()
        outcomes.append(store.record_inbound_message(inbound("SM1", body="STOP"), f"t-{n}"))

    threads = [threading.Thread(target=deliver, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == sorted([Outcome.NEW] + [Outcome.DUPLICATE] * 7)
    assert count(store, "messages") == count(store, "events") == 1


# --- reading -------------------------------------------------------------------------------


def test_messages_filters_and_pages(store: RecordStore) -> None:
    for n in range(5):
        store.record_inbound_message(inbound(f"SM{n}", body=f"m{n}"))
    store.record_inbound_message(inbound("SMx", sender=OTHER))
    store.record_outbound_message("SMo", CALLER, PHONE_NUMBER, "out")
    assert [m.sid for m in store.messages(number=OTHER)] == ["SMx"]
    assert [m.sid for m in store.messages(direction="outbound")] == ["SMo"]
    assert [m.sid for m in store.messages(status="queued")] == ["SMo"]
    first = store.messages(number=CALLER, limit=4)
    assert [m.sid for m in first] == ["SMo", "SM4", "SM3", "SM2"]
    rest = store.messages(number=CALLER, limit=4, before=first[-1].id)
    assert [m.sid for m in rest] == ["SM1", "SM0"]
    assert [m.sid for m in store.messages(after=rest[0].id, limit=2)] == ["SMo", "SMx"]
    since = store.messages(number=CALLER)[1].created_at
    assert [m.sid for m in store.messages(number=CALLER, since=since)] == ["SMo", "SM4"]
    assert len(store.messages(limit=0)) == 1  # limits are clamped to 1..500


def test_calls_filters(store: RecordStore) -> None:
    store.record_call(call_form("CA1", "ringing"))
    store.record_outbound_call("CA2", OTHER, PHONE_NUMBER)
    assert [c.sid for c in store.calls()] == ["CA2", "CA1"]
    assert [c.sid for c in store.calls(number=OTHER)] == ["CA2"]
    assert [c.sid for c in store.calls(direction="inbound", status="ringing")] == ["CA1"]


def test_conversations_group_by_the_other_party(store: RecordStore) -> None:
    store.record_inbound_message(inbound("SM1", body="first"))
    store.record_outbound_message("SM2", CALLER, PHONE_NUMBER, "reply")
    store.record_call(call_form("CA1", "ringing", From=OTHER))
    store.record_inbound_message(inbound("SM3", body="again"))
    store.set_opt_out(OTHER, True)
    first, second = store.conversations()
    assert (first.number, first.message_count, first.call_count) == (CALLER, 3, 0)
    assert [m.body for m in first.messages] == ["first", "reply", "again"]
    assert not first.opted_out
    assert (second.number, second.call_count, second.opted_out) == (OTHER, 1, True)
    assert [c.sid for c in second.calls] == ["CA1"]
    [only] = store.conversations(number=OTHER)
    assert only.number == OTHER
    [latest] = store.conversations(limit=1, per_number=1)
    assert [m.body for m in latest.messages] == ["again"]


# --- durability ----------------------------------------------------------------------------


def test_a_restart_keeps_everything(db_path: Path) -> None:
    with Store(db_path) as store:
        store.record_inbound_message(inbound("SM1"), "t-1")
        store.record_outbound_message("SM2", CALLER, PHONE_NUMBER, "hi")
        store.record_message_status(status("SM2", "delivered"))
        store.record_call(call_form("CA1", "ringing"))
        store.set_opt_out(OTHER, True)
    wal = db_path.with_name(db_path.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0  # close() checkpointed
    with Store(db_path) as store:
        assert store.record_inbound_message(inbound("SM1"), "t-1") is Outcome.DUPLICATE
        message = store.message("SM2")
        assert message is not None
        assert message.status == "delivered"
        assert store.call("CA1") is not None
        assert store.is_opted_out(OTHER)


def test_a_killed_process_loses_nothing_it_committed(db_path: Path) -> None:
    result = run_python(
        f"""
        import os
        from dialtone.record.store import Store
        store = Store({str(db_path)!r})
        for n in range(50):
            store.record_inbound_message({{"MessageSid": f"SM{{n}}", "From": "+15550000000"}})
        print("recorded", flush=True)
        os._exit(9)  # no close(), no checkpoint: like kill -9
        """
    )
    assert result.stdout.strip() == "recorded", result.stderr
    with Store(db_path) as store:
        assert len(store.messages(limit=500)) == 50


def test_concurrent_writes_from_many_threads(store: RecordStore) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def worker(n: int) -> None:
        try:
            barrier.wait()
            for i in range(40):
                sid = f"SM{n:02d}{i:03d}"
                store.record_inbound_message(inbound(sid), f"token-{sid}")
                store.record_inbound_message(inbound(sid), f"token-{sid}")  # Twilio's retry
                # Every thread also reports statuses for one shared message, in any order.
                store.record_message_status(status("SMshared", ("sent", "delivered")[i % 2]))
        except BaseException as exc:  # the assertion below reports it
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert count(store, "messages") == 8 * 40 + 1
    assert count(store, "events") == 8 * 40 + 2
    shared = store.message("SMshared")
    assert shared is not None
    assert shared.status == "delivered"


def test_several_processes_share_one_record(db_path: Path) -> None:
    # `make bench` runs servers in several processes on one socket; they share the file.
    Store(db_path).close()
    code = """
        import sys
        from dialtone.record.store import Store
        name = sys.argv[1]
        with Store({path!r}) as store:
            for i in range(100):
                store.record_inbound_message({{"MessageSid": f"SM{{name}}-{{i}}", "From": "+1"}})
                store.record_inbound_message({{"MessageSid": f"SMboth-{{i}}", "From": "+1"}})
        """
    script = textwrap.dedent(code.format(path=str(db_path)))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    workers = [
        subprocess.Popen([sys.executable, "-c", script, name], env=env, stderr=subprocess.PIPE)
        for name in ("a", "b", "c")
    ]
    for worker in workers:
        _, stderr = worker.communicate(timeout=60)
        assert worker.returncode == 0, stderr.decode()
    with Store(db_path) as store:
        assert count(store, "messages") == 3 * 100 + 100
        assert count(store, "events") == 3 * 100 + 100


# --- a database that cannot be written ------------------------------------------------------


def test_a_path_that_cannot_be_created_raises_store_unavailable(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    with pytest.raises(StoreUnavailable, match="DATABASE_PATH") as caught:
        Store(tmp_path / "a-file" / "dialtone.db")
    assert "a-file" in str(caught.value)


def test_a_file_that_is_not_a_database_raises_store_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "dialtone.db"
    path.write_bytes(b"this is not SQLite " * 100)
    with pytest.raises(StoreUnavailable, match="not a SQLite database") as caught:
        Store(path)
    assert caught.value.code == "SQLITE_NOTADB"


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write read-only files")
def test_a_read_only_database_raises_store_unavailable(db_path: Path) -> None:
    # A chmod takes effect at the next open (an open file stays writable), i.e. a restart.
    Store(db_path).close()
    db_path.chmod(0o444)
    db_path.parent.chmod(0o555)
    try:
        with pytest.raises(StoreUnavailable, match="writable"):
            Store(db_path).close()
    finally:
        db_path.parent.chmod(0o755)
        db_path.chmod(0o644)


def test_a_disk_that_refuses_writes_mid_run(db_path: Path) -> None:
    # RLIMIT_FSIZE makes the kernel refuse to grow files, as a full disk does, even for root.
    # It is per process, so the failing store runs in its own interpreter.
    result = run_python(
        f"""
        import json, os, resource, signal
        from dialtone.record.store import Store, StoreUnavailable
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        store = Store({str(db_path)!r})
        def form(sid):
            return {{"MessageSid": sid, "From": "+15550000000", "Body": "x" * 50000}}
        store.record_inbound_message(form("SM1"), "t-1")
        wal = {str(db_path)!r} + "-wal"
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (os.path.getsize(wal), hard))
        try:
            store.record_inbound_message(form("SM2"), "t-2")
            failed = None
        except StoreUnavailable as exc:
            failed = {{"code": exc.code, "message": str(exc)}}
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        retried = store.record_inbound_message(form("SM2"), "t-2")
        store.close()
        print(json.dumps({{"failed": failed, "retried": retried}}))
        """
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["failed"] is not None, "the write past the limit should have failed"
    assert report["failed"]["code"].startswith(("SQLITE_IOERR", "SQLITE_FULL"))
    assert str(db_path) in report["failed"]["message"]
    # The failed delivery left nothing behind, so Twilio's retry is recorded as new.
    assert report["retried"] == "new"
    with Store(db_path) as store:
        assert [m.sid for m in store.messages()] == ["SM2", "SM1"]
        assert len(store.events("SM2")) == 1


def test_a_closed_store_raises_store_unavailable(db_path: Path) -> None:
    store = Store(db_path)
    store.close()
    store.close()  # twice is fine
    with pytest.raises(StoreUnavailable, match="closed"):
        store.record_inbound_message(inbound("SM1"))
    with pytest.raises(StoreUnavailable, match="closed"):
        store.messages()


def test_read_only_opening_never_creates_or_writes(db_path: Path) -> None:
    with pytest.raises(StoreUnavailable, match="no record"):
        Store(db_path, readonly=True)
    assert not db_path.exists()
    with Store(db_path) as store:
        store.record_inbound_message(inbound("SM1"))
    with Store(db_path, readonly=True) as reader:
        assert [m.sid for m in reader.messages()] == ["SM1"]
        with pytest.raises(StoreUnavailable, match="read-only"):
            reader.set_opt_out(CALLER, True)
    with pytest.raises(SchemaMismatch, match="migrate"):
        Store(db_path, readonly=True, migrations=(*MIGRATIONS, "CREATE TABLE later (x)"))


def test_the_start_up_line_names_the_sqlite_file_by_its_full_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Two instances sharing a port from different directories must not both say var/dialtone.db.
    monkeypatch.chdir(tmp_path)
    with caplog.at_level("INFO", logger="dialtone.record.store"):
        open_store(Settings(database_path=Path("var/dialtone.db"))).close()
    assert f"The record: SQLite file {tmp_path / 'var' / 'dialtone.db'}," in caplog.text
