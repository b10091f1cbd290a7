"""Staying up: a record that fails or stalls mid-run, and a SIGTERM restart that loses nothing."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
import webtest

from dialtone.record.store import IDEMPOTENCY_HEADER, Store
from dialtone.settings import Settings
from tests.conftest import (
    ACCOUNT_SID,
    API_TOKEN,
    AUTH_TOKEN,
    CALLER,
    PHONE_NUMBER,
    PUBLIC_URL,
    REPO,
    signed_post,
)
from tests.support.live_server import urlopen
from tests.support.stuck_write import stuck_write
from tests.support.twilio_signing import sign

SID = "SM" + "7" * 32


def webhook(app: webtest.TestApp, path: str, form: Mapping[str, str]) -> webtest.TestResponse:
    return signed_post(app, AUTH_TOKEN)(path, form, status=None)


def text(body: str, sid: str = SID) -> dict[str, str]:
    return {"MessageSid": sid, "From": CALLER, "To": PHONE_NUMBER, "Body": body, "NumMedia": "0"}


def replies(response: webtest.TestResponse) -> list[str]:
    assert response.status_int == 200
    root = ET.fromstring(response.body)
    assert root.tag == "Response"
    return [child.text or "" for child in root]


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    with Store(settings.database_path, lock_timeout=0.2) as store:
        yield store


def make_unwritable(store: Store) -> None:
    """The database refuses writes from now on (SQLITE_READONLY), as a remounted disk would."""
    store._connection().execute("PRAGMA query_only = 1")


def test_an_unwritable_record_mid_run_still_answers_every_webhook(
    app: webtest.TestApp, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    before = replies(webhook(app, "/sms_url", text("hours", sid="SM" + "1" * 32)))
    make_unwritable(store)
    with caplog.at_level(logging.ERROR, logger="dialtone.record"):
        reply = webhook(app, "/sms_url", text("hours"))
        status = webhook(app, "/status", {"MessageSid": SID, "MessageStatus": "delivered"})
        call = webhook(app, "/voice_url", {"CallSid": "CA" + "1" * 32, "CallStatus": "ringing"})
    # The sender still gets the reply, Twilio a 204, the caller the menu ...
    assert replies(reply) == before != []
    assert status.status_int == 204
    assert ET.fromstring(call.body).tag == "Response"
    # ... and each lost record is one ERROR line naming its SID.
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert "Until it takes writes again" in errors.pop(0)  # the outage, once
    assert len(errors) == 3, errors
    assert SID in errors[0]
    assert "inbound message" in errors[0]
    assert "SQLITE_READONLY" in errors[0] or "readonly" in errors[0]
    # What was recorded before the failure is still there; what came after is not.
    assert [m.sid for m in store.messages()] == ["SM" + "1" * 32]


def test_a_stop_that_cannot_be_recorded_is_still_not_answered(
    settings: Settings, store: Store, make_app: Callable[..., webtest.TestApp]
) -> None:
    app = make_app(settings.with_overrides(send_opt_out_confirmations=True), store=store)
    make_unwritable(store)
    assert replies(webhook(app, "/sms_url", text("STOP"))) == [
        "You have successfully been unsubscribed. You will not receive any more messages from "
        "this number. Reply START to resubscribe."
    ]
    assert not store.is_opted_out(CALLER)  # lost: Twilio's own opt-out list still blocks


def test_an_opted_out_sender_whose_text_cannot_be_recorded_still_gets_no_reply(
    app: webtest.TestApp, store: Store
) -> None:
    # The opt-out is read inside the write; when the write fails it is read on its own.
    store.set_opt_out(CALLER, True, keyword="STOP")
    make_unwritable(store)
    assert replies(webhook(app, "/sms_url", text("hours"))) == []


def test_a_closed_record_still_answers(app: webtest.TestApp, store: Store) -> None:
    store.close()
    assert replies(webhook(app, "/sms_url", text("hello")))


def test_a_stalled_record_gives_up_and_answers(
    app: webtest.TestApp, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    # Another thread holds the record (a write stuck on a slow disk): the webhook waits at most
    # the store's lock timeout, then answers without recording.
    with stuck_write(store), caplog.at_level(logging.ERROR, logger="dialtone.record"):
        assert replies(webhook(app, "/sms_url", text("hello")))
    assert "busy" in caplog.text
    assert SID in caplog.text


# --- SIGTERM and restart, on a real server process -------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(database: Path, port: int) -> subprocess.Popen[bytes]:
    """`python server.py` with a test account, as `make serve` runs it."""
    env = {
        **os.environ,
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_PHONE_NUMBER": PHONE_NUMBER,
        "PUBLIC_URL": PUBLIC_URL,
        "API_TOKEN": API_TOKEN,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "DATABASE_PATH": str(database),
        "RULES_FILE": str(REPO / "rules.toml"),
        "ROUTES_DIR": str(REPO / "routes"),
    }
    process = subprocess.Popen(
        [sys.executable, str(REPO / "server.py")],
        cwd=database.parent.parent,  # no .env there
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(process.stdout.read().decode() if process.stdout else "exited")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise AssertionError("the server did not start listening")


def post_text(port: int, form: Mapping[str, str], token: str) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/sms_url",
        data=urllib.parse.urlencode(form).encode(),
        headers={
            "X-Twilio-Signature": sign(AUTH_TOKEN, PUBLIC_URL + "/sms_url", form),
            IDEMPOTENCY_HEADER: token,
        },
    )
    with urlopen(request, timeout=10) as answer:
        return int(answer.status)


def get_messages(port: int) -> list[str]:
    import json

    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/messages", headers={"Authorization": f"Bearer {API_TOKEN}"}
    )
    with urlopen(request, timeout=10) as answer:
        return [m["sid"] for m in json.load(answer)["messages"]]


def stop(process: subprocess.Popen[bytes]) -> str:
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=20)
    assert process.returncode == 0, output.decode()
    return output.decode()


def test_sigterm_closes_the_record_and_a_restart_keeps_it(tmp_path: Path) -> None:
    database = tmp_path / "var" / "dialtone.db"
    port = free_port()
    server = start_server(database, port)
    try:
        assert post_text(port, text("first", sid="SM" + "1" * 32), "tok-1") == 200
        assert post_text(port, text("second", sid="SM" + "2" * 32), "tok-2") == 200
    finally:
        output = stop(server)
    assert "the record is closed" in output
    # Closed cleanly: the WAL was checkpointed into the database file and truncated.
    wal = Path(str(database) + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0

    server = start_server(database, port)
    try:
        assert get_messages(port) == ["SM" + "2" * 32, "SM" + "1" * 32]
        assert post_text(port, text("first", sid="SM" + "1" * 32), "tok-1") == 200  # a retry
        assert len(get_messages(port)) == 2
    finally:
        stop(server)
