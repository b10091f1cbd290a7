"""Issue 4's section of `make bench`: time from start to ready of `make dev` (goal: under 2 s).

`python -m dialtone dev` runs as a real subprocess, as `make dev` runs it, in two set-ups: with
an account (the sandbox playing Twilio in this process, the fake ngrok agent driven by the real
pyngrok), and without one (its own sandbox). "Ready" is the moment the banner says so, which
`dialtone dev` prints once the app accepts connections. The baseline, measured in the same
session, is a bare interpreter start and `import server`: what any Python tool pays before
doing anything.
"""

from __future__ import annotations

import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dialtone.devloop.sandbox import app_settings
from dialtone.sandbox.server import SandboxServer
from tests.support.dev_process import DevProcess
from tests.support.fake_ngrok import FAKE_NGROK

REPO = Path(__file__).resolve().parent.parent
READY = re.compile(r"Ready in\s+([0-9.]+) s")
GOAL_SECONDS = 2.0


def measure(quick: bool) -> list[str] | None:
    """Lines for the report: median wall time to ready for each set-up, and the baseline."""
    runs = 2 if quick else 5
    python_start = _median(runs, [sys.executable, "-c", "pass"])
    import_server = _median(runs, [sys.executable, "-c", "import server"])
    with tempfile.TemporaryDirectory() as tmp:
        account = [_ready_with_account(Path(tmp) / f"a{i}") for i in range(runs)]
        sandbox = [_ready_in_sandbox(Path(tmp) / f"s{i}") for i in range(runs)]
    lines = [
        f"{'python start-up (baseline)':<50}{python_start:6.2f} s",
        f"{'importing the app (baseline)':<50}{import_server:6.2f} s",
    ]
    for label, times in (("with an account (sandbox + ngrok)", account), ("sandbox mode", sandbox)):
        median = statistics.median(times)
        verdict = "met" if median < GOAL_SECONDS else "NOT MET"
        lines.append(
            f"{'make dev ready, ' + label:<50}{median:6.2f} s  "
            f"({median / import_server:.1f}x importing the app; goal < {GOAL_SECONDS:.0f} s: {verdict})"
        )
    return lines


def _median(runs: int, command: list[str]) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, cwd=REPO, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _base_env(workdir: Path) -> dict[str, str]:
    workdir.mkdir(parents=True)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TWILIO_", "NGROK_", "PUBLIC_URL", "FAKE_NGROK"))
    }
    env.update(
        PORT=str(_free_port()),
        SANDBOX_PORT=str(_free_port()),
        DATABASE_PATH=str(workdir / "dialtone.db"),
        RULES_FILE=str(REPO / "rules.toml"),
        ROUTES_DIR=str(REPO / "routes"),
    )
    return env


def _time_to_ready(env: dict[str, str], workdir: Path) -> float:
    started = time.perf_counter()
    process = DevProcess(env, workdir)
    try:
        process.wait_for("Ready in", timeout=30)
        return time.perf_counter() - started
    finally:
        process.stop()
        process.kill_group()


def _ready_with_account(workdir: Path) -> float:
    env = _base_env(workdir)
    with SandboxServer() as sandbox:
        account = app_settings(sandbox)
        env.update(
            TWILIO_ACCOUNT_SID=str(account.account_sid),
            TWILIO_AUTH_TOKEN=str(account.auth_token),
            TWILIO_PHONE_NUMBER=str(account.phone_number),
            TWILIO_API_URL=sandbox.url,
            NGROK_PATH=str(FAKE_NGROK),
            NGROK_AUTHTOKEN="bench-authtoken",
            FAKE_NGROK_STATE=str(workdir / "ngrok-state.json"),
            XDG_CONFIG_HOME=str(workdir / "xdg"),
        )
        return _time_to_ready(env, workdir)


def _ready_in_sandbox(workdir: Path) -> float:
    return _time_to_ready(_base_env(workdir), workdir)
