"""WORKERS > 1: worker processes share the port over real loopback and stop cleanly."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import AUTH_TOKEN
from tests.support.twilio_signing import sign

ROOT = Path(__file__).resolve().parents[2]
WAIT = 15.0  # seconds; generous for a loaded CI machine, never slept


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """A server started as a real process; its stderr collected line by line."""

    def __init__(self, args: list[str], tmp: Path, env: dict[str, str] | None = None) -> None:
        # The record goes to the test's directory, never the repository's var/ (the user's).
        database = {"DATABASE_PATH": str(tmp / "var" / "dialtone.db")}
        self.proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=ROOT,
            env={**os.environ, **database, **(env or {})},
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self.changed = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self.changed:
                self.lines.append(line)
                self.changed.notify_all()

    def wait_for(self, text: str) -> None:
        """Block until a line containing `text` appears (fails after WAIT seconds)."""
        with self.changed:
            found = self.changed.wait_for(lambda: any(text in line for line in self.lines), WAIT)
        assert found, f"no {text!r} in the server's output:\n{self.output}"

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def children(self) -> set[int]:
        """The pids of the server's child processes, from /proc."""
        pid = self.proc.pid
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
        return {int(word) for word in text.split()}

    def stop(self) -> int:
        """SIGTERM, and the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        return self.finish()

    def finish(self) -> int:
        """Wait for the process to end (killing it after WAIT) and close its pipe; exit code."""
        try:
            code = self.proc.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.reader.join(timeout=WAIT)
        assert self.proc.stderr is not None
        self.proc.stderr.close()
        return code


@pytest.fixture
def target(tmp_path: Path) -> Iterator[tuple[ServerProcess, int]]:
    """tests/prefork_target.py serving on two workers; yields it and its port."""
    port = free_port()
    server = ServerProcess(["-m", "tests.support.prefork_target", str(port)], tmp_path)
    try:
        server.wait_for("with 2 worker processes")
        yield server, port
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
        server.finish()


def get(port: int, path: str, sent: threading.Semaphore | None = None) -> tuple[int, str]:
    """GET on a new connection, releasing `sent` once the request is out; (status, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
    try:
        conn.request("GET", path)
        if sent is not None:
            sent.release()
        answer = conn.getresponse()
        return answer.status, answer.read().decode()
    finally:
        conn.close()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_two_workers_share_the_port(target: tuple[ServerProcess, int]) -> None:
    server, port = target
    workers = server.children()
    assert len(workers) == 2
    seen: set[int] = set()
    with ThreadPoolExecutor(max_workers=10) as pool:
        for _ in range(20):  # the kernel picks a worker per connection; both soon show up
            answers = list(pool.map(lambda _: get(port, "/pid"), range(10)))
            assert all(status == 200 for status, _ in answers)
            seen |= {int(body) for _, body in answers}
            if seen == workers:
                break
    assert seen == workers
    assert server.stop() == 0
    assert not any(alive(pid) for pid in workers)


def test_sigterm_lets_the_requests_in_flight_finish(target: tuple[ServerProcess, int]) -> None:
    # Two workers of two threads each: six slow requests keep all four threads busy and leave
    # two waiting in a queue; waitress's own shutdown would cancel those two.
    server, port = target
    workers = server.children()
    sent = threading.Semaphore(0)
    with ThreadPoolExecutor(max_workers=6) as pool:
        slow = [pool.submit(get, port, "/slow", sent) for _ in range(6)]
        assert all(sent.acquire(timeout=WAIT) for _ in range(6))
        with server.changed:
            server.changed.wait_for(lambda: server.output.count("slow request started") >= 4, WAIT)
        assert server.stop() == 0
        answers = [future.result(timeout=WAIT) for future in slow]
    assert [status for status, _ in answers] == [200] * 6
    assert {int(body) for _, body in answers} <= workers
    assert not any(alive(pid) for pid in workers)
    with pytest.raises(ConnectionRefusedError):
        get(port, "/pid")


def test_a_dead_worker_is_logged_and_replaced(target: tuple[ServerProcess, int]) -> None:
    server, port = target
    first = server.children()
    victim = min(first)
    os.kill(victim, signal.SIGKILL)
    server.wait_for(f"(pid {victim}) was killed by SIGKILL; starting a new one")
    with server.changed:  # the replacement's "started" line comes after the fork
        server.changed.wait_for(lambda: server.output.count(" started (pid ") == 3, WAIT)
    replacement = server.children() - first
    assert len(replacement) == 1
    assert get(port, "/pid")[0] == 200
    assert server.stop() == 0
    assert not any(alive(pid) for pid in first | replacement)


def test_a_worker_that_cannot_start_stops_the_server(tmp_path: Path) -> None:
    server = ServerProcess(
        ["-m", "tests.support.prefork_target", str(free_port()), "--fail"], tmp_path
    )
    assert server.finish() == 2
    server.wait_for("could not start")
    assert "this worker was told to fail" in server.output


def test_server_py_with_two_workers_answers_signed_webhooks(tmp_path: Path) -> None:
    port = free_port()
    public_url = "https://bot.example.com"
    server = ServerProcess(
        ["server.py"],
        tmp_path,
        env={
            "WORKERS": "2",
            "PORT": str(port),
            "PUBLIC_URL": public_url,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "API_TOKEN": "",
        },
    )
    try:
        server.wait_for("with 2 worker processes")
        workers = server.children()
        form = {"MessageSid": "SM" + "3" * 32, "MessageStatus": "delivered"}
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
        for signature, expected in (
            (sign(AUTH_TOKEN, public_url + "/status", form), 204),
            ("bad", 403),
        ):
            conn.request(
                "POST",
                "/status",
                body=urllib.parse.urlencode(form),
                headers={
                    "Content-Type": "application/x-www-form-urlencoded",
                    "X-Twilio-Signature": signature,
                },
            )
            answer = conn.getresponse()
            answer.read()
            assert answer.status == expected
        conn.close()
        assert server.stop() == 0
        assert not any(alive(pid) for pid in workers)
        server.wait_for("POST /status 204")
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
        server.finish()
