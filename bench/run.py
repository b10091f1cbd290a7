"""`make bench`: signed webhooks per second, latency and memory, on real servers over loopback.

python -m bench.run [--quick] [--route /sms_url] [--duration 5] [--connections 20]

Targets, measured one after the other in the same run with the same load generator:
  ceiling   a bare WSGI app on waitress returning a fixed TwiML string (bench/bare_server.py)
  flask     Flask + gunicorn, 2 sync workers, same RequestValidator check and MessagingResponse
  dialtone  server.py with WORKERS=2 (and WORKERS=1 for comparison), recording on when the store
            exists; the route is --route, or /sms_url when the app has it, else /status
"""

from __future__ import annotations

import argparse
import http.client
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench import loadgen

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
AUTH_TOKEN = "bench-auth-token-0123456789abcdef"  # noqa: S105 (a made-up token)
ACCOUNT_SID = "AC" + "b" * 32
PHONE_NUMBER = "+15550001111"
PUBLIC_URL = "https://bench.dialtone.test"
MAX_RATE = 20000  # requests built per second of run: more than any target here answers
GOAL_RATIO, GOAL_P99_MS, GOAL_IDLE_MB = 1.2, 10.0, 40.0


@dataclass
class Row:
    """One target's line in the table."""

    name: str
    result: loadgen.LoadResult
    note: str = ""
    rss_idle: dict[int, float] = field(default_factory=dict)  # pid -> MB
    rss_loaded: dict[int, float] = field(default_factory=dict)


def free_port() -> int:
    """A loopback TCP port nothing listens on."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_until_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """Block until something accepts on `port`; fail if the process dies first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with code {proc.returncode} before listening")
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.02)
    raise SystemExit(f"nothing listened on port {port} within {timeout:.0f} s")


@contextmanager
def server(cmd: Sequence[str], env: dict[str, str], log: Path, port: int) -> Iterator[int]:
    """Run a server process (cwd: a temp dir, stderr to `log`); yield its pid; SIGTERM it."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            list(cmd), cwd=log.parent, env={**os.environ, **env}, stdout=out, stderr=out
        )
    try:
        wait_until_listening(port, proc)
        yield proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def children(pid: int) -> list[int]:
    """The pids of a process's children, from /proc."""
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(word) for word in text.split()]


def rss_mb(pid: int) -> float:
    """Resident memory of one process in MB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class RssSampler(threading.Thread):
    """Samples the peak RSS of some processes while a load runs."""

    def __init__(self, pids: list[int]) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.peak = dict.fromkeys(pids, 0.0)
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.25):
            self.sample()

    def sample(self) -> None:
        for pid in self.pids:
            self.peak[pid] = max(self.peak[pid], rss_mb(pid))

    def stop(self) -> dict[int, float]:
        self.done.set()
        self.join()
        self.sample()
        return self.peak


def build_requests(port: int, route: str, first: int, count: int) -> list[bytes]:
    """`count` signed inbound-SMS webhooks with MessageSids first..first+count-1."""
    host = f"{HOST}:{port}"
    return [
        loadgen.signed_request(
            host,
            route,
            loadgen.inbound_sms_form(index, ACCOUNT_SID, PHONE_NUMBER),
            auth_token=AUTH_TOKEN,
            public_url=PUBLIC_URL,
            idempotency_token=f"bench-{index}",
        )
        for index in range(first, first + count)
    ]


def reused_requests(port: int, count: int, distinct: int = 2000) -> list[bytes]:
    """`count` requests made of `distinct` signed ones repeated (for targets that record nothing)."""
    pool = build_requests(port, "/sms_url", 0, distinct)
    return (pool * (count // distinct + 1))[:count]


def probe(port: int, request: bytes) -> int:
    """Send one raw request; its status."""
    with socket.create_connection((HOST, port), timeout=5) as sock:
        sock.sendall(request)
        answer = http.client.HTTPResponse(sock)
        answer.begin()
        answer.read()
        return answer.status


def measure(port: int, requests: list[bytes], args: argparse.Namespace) -> loadgen.LoadResult:
    """A short warm-up, then the timed run; `answered` holds indexes into `requests` for both."""
    warm = max(1, len(requests) // 20)
    warmup = loadgen.run(HOST, port, requests[:warm], connections=args.connections, duration=0.5)
    result = loadgen.run(
        HOST, port, requests[warm:], connections=args.connections, duration=args.duration
    )
    result.answered = warmup.answered + [warm + index for index in result.answered]
    return result
