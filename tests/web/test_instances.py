"""WORKERS > 1: instances with their own SO_REUSEPORT sockets share the port over real loopback,
spread connections evenly, stop gracefully, and never outlive the process that started them."""

from __future__ import annotations

import errno
import http.client
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from dialtone.settings import Settings
from dialtone.web import serving
from dialtone.web.serving import NoReusePort, cannot_listen
from tests.conftest import AUTH_TOKEN
from tests.support.server_process import WAIT, ServerProcess, free_port
from tests.support.twilio_signing import sign

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def target(tmp_path: Path) -> Iterator[tuple[ServerProcess, int]]:
    """tests/support/instances_target.py serving on two instances; yields it and its port."""
    port = free_port()
    server = ServerProcess(["-m", "tests.support.instances_target", str(port)], tmp_path)
    try:
        server.wait_for("with 2 instances")
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
    """True while `pid` runs (a zombie not yet reaped counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def all_gone(pids: set[int]) -> bool:
    """Wait up to WAIT seconds for every process in `pids` to end; True if they did."""
    deadline = time.monotonic() + WAIT
    while any(alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def listening_sockets(pid: int, port: int) -> set[str]:
    """The listening TCP sockets on `port` that process `pid` holds (their inodes), from /proc."""
    inodes = set()
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and int(fields[1].split(":")[1], 16) == port:  # 0A: LISTEN
            inodes.add(fields[9])
    held = {os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir() if fd.exists()}
    return {inode for inode in inodes if f"socket:[{inode}]" in held}


def own_sockets(pids: set[int], port: int) -> bool:
    """True if each process holds exactly one listening socket on `port`, none shared."""
    held = [listening_sockets(pid, port) for pid in pids]
    return all(len(one) == 1 for one in held) and len(set.union(*held)) == len(pids)


def test_keep_alive_connections_spread_over_both_instances(
    target: tuple[ServerProcess, int],
) -> None:
    # 20 keep-alive connections opened at once, as a proxy or load generator opens them: each
    # stays with the instance that accepted it, so an instance that gets none idles for as long
    # as they live. Racing to accept on one shared socket (the pre-fork design), the first
    # worker awake took all 20 in 5 runs of 6 of this very burst. With one SO_REUSEPORT socket per instance the kernel picks by a hash of
    # the addresses: the chance that all 20 land on one instance is 2 in 2**20.
    server, port = target
    instances = server.instances()
    assert len(instances) == 2
    assert own_sockets(instances, port)  # not one socket shared by both
    clients = [socket.socket() for _ in range(20)]
    served: dict[int, int] = {}
    try:
        for client in clients:  # every handshake started before any completes
            client.setblocking(False)
            client.connect_ex(("127.0.0.1", port))
        for client in clients:
            assert select.select([], [client], [], WAIT)[1]
            client.settimeout(WAIT)
        for _ in range(3):  # the same instance answers every request on a connection
            for client in clients:
                client.sendall(b"GET /pid HTTP/1.1\r\nHost: test\r\n\r\n")
            for index, client in enumerate(clients):
                answer = http.client.HTTPResponse(client)
                answer.begin()
                assert answer.status == 200
                pid = int(answer.read())
                assert served.setdefault(index, pid) == pid
    finally:
        for client in clients:
            client.close()
    per_instance = {pid: list(served.values()).count(pid) for pid in instances}
    print(f"connections per instance: {per_instance}")
    assert all(per_instance.values())
    assert server.stop() == 0
    assert all_gone(instances)


def test_sigterm_lets_the_requests_in_flight_finish(target: tuple[ServerProcess, int]) -> None:
    # Two instances of two threads each: six slow requests keep all four threads busy and leave
    # two waiting in a queue; waitress's own shutdown would cancel those two.
    server, port = target
    instances = server.instances()
    sent = threading.Semaphore(0)
    with ThreadPoolExecutor(max_workers=6) as pool:
        slow = [pool.submit(get, port, "/slow", sent) for _ in range(6)]
        assert all(sent.acquire(timeout=WAIT) for _ in range(6))
        with server.changed:
            server.changed.wait_for(lambda: server.output.count("slow request started") >= 4, WAIT)
        assert server.stop() == 0
        answers = [future.result(timeout=WAIT) for future in slow]
    assert [status for status, _ in answers] == [200] * 6
    assert {int(body) for _, body in answers} <= instances
    assert all_gone(instances)
    with pytest.raises(ConnectionRefusedError):
        get(port, "/pid")


def test_ctrl_c_in_the_terminal_stops_every_instance_with_exit_0(tmp_path: Path) -> None:
    # A terminal's Ctrl-C sends SIGINT to the whole process group: the launcher and each
    # instance at once.
    port = free_port()
    args = ["-m", "tests.support.instances_target", str(port)]
    server = ServerProcess(args, tmp_path, new_session=True)
    try:
        server.wait_for("with 2 instances")
        instances = server.instances()
        assert get(port, "/pid")[0] == 200
        os.killpg(server.proc.pid, signal.SIGINT)
        assert server.finish() == 0
        assert all_gone(instances)
        assert server.output.count("Stopped (pid") == 2
        assert "Traceback" not in server.output
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
            server.finish()


def test_no_instance_outlives_a_kill_9_of_its_parent(target: tuple[ServerProcess, int]) -> None:
    server, port = target
    instances = server.instances()
    server.proc.kill()
    server.finish()
    assert all_gone(instances), "an instance outlived its parent"
    # The port is free again: a plain bind (no SO_REUSEPORT) succeeds, so the next start can.
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))
        probe.listen()
    assert server.output.count("the process that started it is gone; stopping.") == 2


def test_a_dead_instance_stops_the_server(target: tuple[ServerProcess, int]) -> None:
    # Restarting is the process manager's job: the whole server exits non-zero, the other
    # instance stopped gracefully.
    server, _ = target
    instances = server.instances()
    victim = min(instances)
    os.kill(victim, signal.SIGKILL)
    assert server.finish() == 1
    assert f"(pid {victim}) was killed by SIGKILL, so Dialtone stops" in server.output
    assert all_gone(instances)


def test_an_instance_that_cannot_start_stops_the_server(tmp_path: Path) -> None:
    server = ServerProcess(
        ["-m", "tests.support.instances_target", str(free_port()), "--fail"], tmp_path
    )
    assert server.finish() == 2
    assert "Instance 1 could not start" in server.output
    # The instances start one after the other: the error is printed once, not once per instance.
    assert server.output.count("was told to fail") == 1


def test_a_port_in_use_is_one_paragraph(target: tuple[ServerProcess, int], tmp_path: Path) -> None:
    # Even a port held by Dialtone instances that would accept SO_REUSEPORT company.
    _, port = target
    second = ServerProcess(["-m", "tests.support.instances_target", str(port)], tmp_path)
    assert second.finish() == 2
    assert f"Port {port} on 127.0.0.1 is already in use" in second.output
    assert "Traceback" not in second.output


def test_server_py_with_two_instances_answers_signed_webhooks(tmp_path: Path) -> None:
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
        server.wait_for("with 2 instances")
        instances = server.instances()
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
        assert all_gone(instances)
        server.wait_for("POST /status 204")
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
        server.finish()


SINGLE_INSTANCE_IMPORTS = """
import sys
import dialtone.app
from dialtone.settings import Settings
from dialtone.web import serving
try:
    serving.serve(Settings(port=0, reuse_port=False), lambda: 1 / 0)
except ZeroDivisionError:
    pass
print(sorted(name for name in ("dialtone.web.instances", "resource") if name in sys.modules))
"""


def test_the_single_instance_path_imports_nothing_posix_only() -> None:
    # dialtone.web.instances (fork, sigtimedwait, SO_REUSEPORT) is for WORKERS > 1 only, and the
    # open-file limit (the resource module) is read only when serving starts.
    done = subprocess.run(
        [sys.executable, "-c", SINGLE_INSTANCE_IMPORTS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=True,
    )
    assert done.stdout.strip() == "['resource']"
    for module in ("dialtone.web.serving", "dialtone.web.graceful", "dialtone.web.connections"):
        source = Path(ROOT, *module.split(".")).with_suffix(".py").read_text()
        assert "\nimport fcntl" not in source
        assert "\nimport resource" not in source


def test_sharing_a_port_without_so_reuseport_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    # As on Windows: WORKERS > 1 and REUSE_PORT say why they cannot work, in one paragraph.
    # (tests/test_without_posix.py runs `dialtone serve` with WORKERS=2 without fork() too.)
    monkeypatch.delattr(socket, "SO_REUSEPORT")
    with pytest.raises(NoReusePort, match=r"^WORKERS=2 needs SO_REUSEPORT, which") as refused:
        serving.serve(Settings(workers=2), lambda: pytest.fail("no app is built"))
    assert "WORKERS=1" in str(refused.value)
    with pytest.raises(NoReusePort, match="REUSE_PORT=true needs"):
        serving.serve(Settings(reuse_port=True), lambda: pytest.fail("no app is built"))
    monkeypatch.delattr(signal, "sigtimedwait")
    with pytest.raises(NoReusePort, match=r"^WORKERS=3 needs sigtimedwait\(\), SO_REUSEPORT,"):
        serving.serve(Settings(workers=3), lambda: pytest.fail("no app is built"))


def test_two_units_with_reuse_port_share_the_port_and_restart_one_by_one(tmp_path: Path) -> None:
    # What deploy/dialtone@.service does: separately started instances, REUSE_PORT=true. One
    # stopped (a rolling restart), the other still answers on the same port.
    port = free_port()
    env = {
        "PORT": str(port),
        "REUSE_PORT": "true",
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "API_TOKEN": "",
        "LOG_LEVEL": "INFO",
    }
    first = ServerProcess(["server.py"], tmp_path, env)
    try:
        first.wait_for("sharing the port")
        second = ServerProcess(["server.py"], tmp_path, env)
        try:
            second.wait_for("sharing the port")
            pids = {first.proc.pid, second.proc.pid}
            assert own_sockets(pids, port)
            for _ in range(20):
                assert get(port, "/healthz")[0] == 200
            deadline = time.monotonic() + WAIT  # access-log lines follow the answers
            while True:
                served = {s.proc.pid: s.output.count("GET /healthz 200") for s in (first, second)}
                if sum(served.values()) == 20 or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            print(f"connections per instance: {served}")
            assert all(served.values())
            assert first.stop() == 0
            for _ in range(10):
                assert get(port, "/healthz")[0] == 200
        finally:
            if second.proc.poll() is None:
                second.stop()
            second.finish()
    finally:
        if first.proc.poll() is None:
            first.proc.kill()
        first.finish()


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize(
    ("host", "words"),
    [
        ("192.0.2.1", "is not an address of this machine"),  # TEST-NET-1: nobody's
        ("no.such.host.invalid", "is not a name or address this machine can resolve"),
    ],
)
def test_a_host_nothing_can_listen_on_is_one_paragraph(
    tmp_path: Path, host: str, words: str, workers: str
) -> None:
    env = {"HOST": host, "PORT": str(free_port()), "WORKERS": workers, "API_TOKEN": ""}
    server = ServerProcess(["server.py"], tmp_path, env={**env, "TWILIO_AUTH_TOKEN": AUTH_TOKEN})
    assert server.finish() == 2
    assert f"HOST={host} {words}" in server.output
    assert "Traceback" not in server.output


def test_a_privileged_port_is_one_paragraph() -> None:
    error = cannot_listen(Settings(port=80), PermissionError(errno.EACCES, "Permission denied"))
    assert error is not None
    assert "ports below 1024 need root" in str(error)
    assert cannot_listen(Settings(), OSError(errno.EIO, "I/O error")) is None  # not a setting's
