"""Two instances of the real server on loopback sharing one PostgreSQL (issue 12)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from dialtone.record.postgres import PostgresStore
from tests.conftest import CALLER, PHONE_NUMBER, REPO
from tests.support.instances import Instance, free_port, server_env, start_instance
from tests.support.postgres import PostgresServer, require_postgres

pytestmark = pytest.mark.timeout(180)


def text(n: int, body: str = "hello", sender: str = CALLER) -> dict[str, str]:
    return {
        "MessageSid": f"SM{n:032x}",
        "From": sender,
        "To": PHONE_NUMBER,
        "Body": body,
        "NumMedia": "0",
    }


@pytest.fixture
def pair(tmp_path: Path, postgres_url: str) -> Iterator[tuple[Instance, Instance]]:
    """Two instances, each on its own port, sharing the test's PostgreSQL database."""
    started: list[Instance] = []
    try:
        for _ in range(2):
            env = server_env(tmp_path, free_port(), DATABASE_URL=postgres_url, THREADS="4")
            started.append(start_instance(env, tmp_path))
        yield started[0], started[1]
    finally:
        for instance in started:
            instance.stop()


def test_the_same_webhook_at_both_instances_at_once_is_recorded_once(
    pair: tuple[Instance, Instance], postgres_url: str
) -> None:
    one, two = pair
    barrier = threading.Barrier(2)

    def deliver(instance: Instance, n: int) -> int:
        barrier.wait()
        return instance.post("/sms_url", text(n), token=f"token-{n}")

    with ThreadPoolExecutor(2) as pool:
        for n in range(200):
            answers = list(pool.map(deliver, (one, two), (n, n)))
            assert answers == [200, 200]
    with PostgresStore(postgres_url) as record:
        assert len(record.messages(limit=500)) == 200
        for n in range(200):
            assert len(record.events(f"SM{n:032x}")) == 1


def test_stop_through_one_instance_refuses_sends_through_the_other(
    pair: tuple[Instance, Instance],
) -> None:
    one, two = pair
    assert one.post("/sms_url", text(1, body="STOP"), token="stop-1") == 200
    status, body = two.api("/send_sms", {"to": CALLER, "body": "still there?"})
    assert status == 409
    assert body["error"]["opted_out"] is True


def test_an_instance_killed_mid_burst_loses_no_acknowledged_webhook(
    pair: tuple[Instance, Instance], postgres_url: str
) -> None:
    one, two = pair
    acknowledged: list[int] = []
    lock = threading.Lock()

    def deliver(n: int) -> None:
        try:
            status = (one if n % 2 else two).post("/sms_url", text(n), token=f"burst-{n}")
        except OSError:
            return  # the killed instance never answered: Twilio would retry or log it
        if status == 200:
            with lock:
                acknowledged.append(n)

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(deliver, n) for n in range(400)]
        while len(acknowledged) < 100:
            threading.Event().wait(0.01)
        one.kill()
        for future in futures:
            future.result()
    assert len(acknowledged) >= 100
    with PostgresStore(postgres_url) as record:
        recorded = {m.sid for m in record.messages(limit=500)}
    missing = [n for n in acknowledged if f"SM{n:032x}" not in recorded]
    assert missing == []


def test_an_unreachable_database_at_start_is_one_paragraph_and_exit_2(tmp_path: Path) -> None:
    url = f"postgresql://dialtone:pw-never-shown@127.0.0.1:{free_port()}/dialtone"
    env = server_env(tmp_path, free_port(), DATABASE_URL=url)
    result = subprocess.run(
        [sys.executable, str(REPO / "server.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "pw-never-shown" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr
    paragraph = result.stderr.strip().split("\n\n")[-1]  # after the log lines before it
    assert "\n" not in paragraph
    assert "cannot be reached" in paragraph
    assert "DATABASE_URL" in paragraph


@pytest.mark.postgres
def test_postgresql_stopped_and_started_during_a_run(tmp_path: Path) -> None:
    server = PostgresServer(require_postgres()).init()
    server.start()
    instances: list[Instance] = []
    try:
        url = server.fresh_database()
        for _ in range(2):
            env = server_env(tmp_path, free_port(), DATABASE_URL=url, THREADS="4")
            instances.append(start_instance(env, tmp_path))
        one, two = instances
        assert [one.post("/sms_url", text(n), token=f"before-{n}") for n in (1, 2)] == [200, 200]
        server.stop()
        # Answers continue: Twilio does not retry a webhook, so it is answered regardless.
        assert [
            i.post("/sms_url", text(n), token=f"down-{n}") for n, i in ((3, one), (4, two))
        ] == [
            200,
            200,
        ]
        for instance in instances:
            status, body = instance.health()
            assert status == 503
            assert body["record"] == "cannot be written: PostgreSQL unreachable"
        server.start()
        deadline = time.monotonic() + 30
        while any(i.health()[0] != 200 for i in instances):
            assert time.monotonic() < deadline, "an instance did not recover by itself"
            time.sleep(0.2)
        acknowledged = []
        for n in range(100, 160):
            instance = one if n % 2 else two
            if instance.post("/sms_url", text(n), token=f"after-{n}") == 200:
                acknowledged.append(n)
        assert len(acknowledged) == 60
        with PostgresStore(url) as record:
            recorded = {m.sid for m in record.messages(limit=500)}
        assert {f"SM{n:032x}" for n in acknowledged} <= recorded
        assert {f"SM{n:032x}" for n in (1, 2)} <= recorded
    finally:
        for instance in instances:
            instance.stop()
        server.destroy()


@pytest.mark.postgres
def test_a_stop_kept_during_an_outage_is_never_sent_past_by_another_instance(
    tmp_path: Path,
) -> None:
    """Found by a reliability attack: a STOP that instance A kept in its spool while PostgreSQL
    was down is applied when A sees the database back; instance B, on another machine (its own
    spool), answered 14 sends with 201 in the 0.9 s before that. B now refuses sends for a
    settling time after the record is back: every answer is 503 until A has applied the STOP,
    then 409, and never an attempt to send (502 here: nothing answers at TWILIO_API_URL)."""
    server = PostgresServer(require_postgres()).init()
    server.start()
    instances: list[Instance] = []
    try:
        url = server.fresh_database()
        for machine in ("a", "b"):
            (tmp_path / machine).mkdir()
            env = server_env(
                tmp_path / machine,
                free_port(),
                DATABASE_URL=url,
                THREADS="4",
                RATE_LIMIT_PER_MINUTE="100000",
            )
            instances.append(start_instance(env, tmp_path / machine))
        a, b = instances
        assert a.post("/sms_url", text(1, body="hello"), token="before") == 200
        server.stop()
        assert a.post("/sms_url", text(2, body="STOP"), token="stop") == 200  # kept by A
        assert b.api("/send_sms", {"to": CALLER, "body": "hi"})[0] == 503  # B sees it down
        server.start()
        answers: list[int] = []
        deadline = time.monotonic() + 30
        while not answers or answers[-1] == 503:
            assert time.monotonic() < deadline, "B kept refusing sends"
            answers.append(b.api("/send_sms", {"to": CALLER, "body": "hi"})[0])
            time.sleep(0.02)
        assert set(answers) == {503, 409}, answers
    finally:
        for instance in instances:
            instance.stop()
        server.destroy()
