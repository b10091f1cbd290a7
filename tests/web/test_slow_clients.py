"""Slow clients on real loopback sockets cannot take the server offline (issue 9.1)."""

from __future__ import annotations

import http.client
import resource
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dialtone.errors import SettingsError
from dialtone.settings import Settings
from dialtone.web import connections
from dialtone.web.connections import FileLimitTooLow, ensure_file_limit
from tests.conftest import AUTH_TOKEN
from tests.support.server_process import WAIT, ServerProcess, free_port

SLOW_CLIENTS = 1000
HALF_REQUEST = b"GET /healthz HTTP/1.1\r\nHost: bot.example.com\r\nX-Slow: "


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def start(tmp_path: Path, **env: str) -> tuple[ServerProcess, int]:
    """server.py on a free port, ready; (the process, its port)."""
    port = free_port()
    base = {"PORT": str(port), "TWILIO_AUTH_TOKEN": AUTH_TOKEN, "API_TOKEN": "", "WORKERS": "1"}
    server = ServerProcess(["server.py"], tmp_path, env={**base, **env})
    server.wait_for("Dialtone listening on")
    return server, port


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., tuple[ServerProcess, int]]]:
    """Start server.py with extra settings; every server started is stopped afterwards."""
    started: list[ServerProcess] = []

    def run(**env: str) -> tuple[ServerProcess, int]:
        server, port = start(tmp_path, **env)
        started.append(server)
        return server, port

    yield run
    for server in started:
        if server.proc.poll() is None:
            server.proc.kill()
        server.finish()


def healthz(port: int) -> int:
    """GET /healthz on a new connection; its status."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status
    finally:
        conn.close()


def test_a_thousand_slow_clients_do_not_stop_healthz(
    serve: Callable[..., tuple[ServerProcess, int]],
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < SLOW_CLIENTS + 100:  # this test's own end of each connection
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    server, port = serve()
    assert healthz(port) == 200
    before = rss_mb(server.proc.pid)
    slow = []
    try:
        for _ in range(SLOW_CLIENTS):
            client = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
            client.sendall(HALF_REQUEST)
            slow.append(client)
        for byte in b"abc":  # a byte at a time, on every connection
            for client in slow:
                client.sendall(bytes([byte]))
        assert healthz(port) == 200
        during = rss_mb(server.proc.pid)
        # Every slow connection is still open and unanswered: the server did not just drop them.
        for client in slow[:: SLOW_CLIENTS // 10]:
            client.setblocking(False)
            with pytest.raises(BlockingIOError):
                client.recv(1)
    finally:
        for client in slow:
            client.close()
    print(f"server RSS: {before:.1f} MB before, {during:.1f} MB with {SLOW_CLIENTS} slow clients")
    # Generous: each half-sent request holds at most MAX_HEADER_BYTES (16 KB) plus its channel.
    assert during - before < SLOW_CLIENTS * (Settings().max_header_bytes + 32 * 1024) / 2**20


def test_a_request_that_trickles_in_longer_than_request_timeout_is_cut_off(
    serve: Callable[..., tuple[ServerProcess, int]],
) -> None:
    server, port = serve(REQUEST_TIMEOUT="1")
    idle = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
    idle.request("GET", "/healthz")
    idle.getresponse().read()
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as client:
        client.sendall(HALF_REQUEST)
        deadline = time.monotonic() + WAIT
        closed = False
        while not closed and time.monotonic() < deadline:
            try:
                client.sendall(b"a")  # any byte resets an idle timeout; not this one
                time.sleep(0.1)
                client.setblocking(False)
                closed = client.recv(1) == b""
            except BlockingIOError:
                pass
            except (ConnectionResetError, BrokenPipeError):
                closed = True
            finally:
                client.setblocking(True)
    assert closed, "a request that never finished arriving kept its connection"
    server.wait_for("took longer than REQUEST_TIMEOUT=1s to send a request")
    # A keep-alive connection idle between requests is not a slow request: it stays open.
    idle.request("GET", "/healthz")
    assert idle.getresponse().status == 200
    idle.close()


def test_headers_over_max_header_bytes_get_431(
    serve: Callable[..., tuple[ServerProcess, int]],
) -> None:
    _, port = serve(MAX_HEADER_BYTES="2048")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
    conn.request("GET", "/healthz", headers={"X-Big": "x" * 4096})
    assert conn.getresponse().status == 431
    conn.close()


def test_the_open_file_limit_is_raised_for_connection_limit(tmp_path: Path) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2200:
        pytest.skip(f"this machine's hard open-file limit ({hard}) is below the test's 2200")
    env = {"PORT": str(free_port()), "CONNECTION_LIMIT": "2100", "TWILIO_AUTH_TOKEN": AUTH_TOKEN}
    server = ServerProcess(["server.py"], tmp_path, env, file_limit=(1024, hard))
    try:
        server.wait_for("Dialtone listening on")
        limits = Path(f"/proc/{server.proc.pid}/limits").read_text()
        [line] = [line for line in limits.splitlines() if line.startswith("Max open files")]
        assert line.split()[3] == str(2100 + connections.SPARE_FILES)
        assert server.stop() == 0
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
        server.finish()


def test_a_connection_limit_the_hard_file_limit_cannot_carry_is_refused(tmp_path: Path) -> None:
    env = {"PORT": str(free_port()), "CONNECTION_LIMIT": "2000"}
    server = ServerProcess(["server.py"], tmp_path, env, file_limit=(512, 1024))
    assert server.finish() == 2
    assert "CONNECTION_LIMIT=2000 needs about 2064 open files" in server.output
    assert "LimitNOFILE=" in server.output
    assert "Traceback" not in server.output


def test_ensure_file_limit_leaves_a_sufficient_limit_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(resource, "getrlimit", lambda which: (100_000, 200_000))
    monkeypatch.setattr(resource, "setrlimit", lambda which, limits: calls.append(limits))
    ensure_file_limit(Settings(connection_limit=5000))
    assert calls == []
    with pytest.raises(FileLimitTooLow, match="CONNECTION_LIMIT=300000"):
        ensure_file_limit(Settings(connection_limit=300_000))


def test_the_limits_are_settings_with_defaults() -> None:
    defaults = Settings.from_env({})
    assert (defaults.connection_limit, defaults.channel_timeout) == (2000, 120)
    assert (defaults.request_timeout, defaults.max_header_bytes) == (30.0, 16384)
    assert defaults.reuse_port is False
    custom = Settings.from_env(
        {"CONNECTION_LIMIT": "500", "REQUEST_TIMEOUT": "2.5", "REUSE_PORT": "true"}
    )
    assert (custom.connection_limit, custom.request_timeout, custom.reuse_port) == (500, 2.5, True)
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({"CONNECTION_LIMIT": "0", "CHANNEL_TIMEOUT": "x", "MAX_HEADER_BYTES": ""})
    assert "CONNECTION_LIMIT" in str(refused.value)
    assert "CHANNEL_TIMEOUT" in str(refused.value)


def test_a_connection_that_never_sends_is_closed_after_request_timeout(
    serve: Callable[..., tuple[ServerProcess, int]],
) -> None:
    """Otherwise CONNECTION_LIMIT connections that send nothing hold every slot until
    CHANNEL_TIMEOUT (120 s)."""
    server, port = serve(REQUEST_TIMEOUT="1")
    used = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
    used.request("GET", "/healthz")
    used.getresponse().read()
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as silent:
        assert silent.recv(1) == b""  # closed by the server, within WAIT
    server.wait_for("sent nothing within REQUEST_TIMEOUT=1s")
    time.sleep(1.5)  # a used keep-alive connection idle that long is not a silent one
    used.request("GET", "/healthz")
    assert used.getresponse().status == 200
    used.close()


@pytest.mark.parametrize("used", [True, False], ids=["used-once-then-idle", "never-sending"])
def test_idle_connections_make_room_near_connection_limit(
    serve: Callable[..., tuple[ServerProcess, int]], used: bool
) -> None:
    """Otherwise a client that opens CONNECTION_LIMIT connections and leaves them idle holds
    every slot for CHANNEL_TIMEOUT (or REQUEST_TIMEOUT, if it never sends)."""
    limit = 40
    server, port = serve(CONNECTION_LIMIT=str(limit), CHANNEL_TIMEOUT="600")
    held = []
    try:
        for _ in range(limit):
            client = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
            if used:
                client.request("GET", "/healthz")
                client.getresponse().read()  # answered, then left open (keep-alive)
            else:
                client.connect()
            held.append(client)
        # Every slot is taken; the oldest idle ones are closed to make room within seconds.
        assert healthz(port) == 200
        server.wait_for("idle connection(s) to make room")
        open_left = 0
        for client in held:
            assert client.sock is not None
            client.sock.setblocking(False)
            try:
                open_left += client.sock.recv(1) != b""
            except BlockingIOError:
                open_left += 1
        assert int(limit * connections.ROOMY) - 1 <= open_left < limit
    finally:
        for client in held:
            client.close()
