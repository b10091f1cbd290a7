"""The dev loop, the sandbox, the phone and the app run where workshops run (macOS, Windows).

Each command runs in a subprocess whose interpreter has had the POSIX-only modules and names
taken away (fcntl, termios, pwd, SIGHUP, sigtimedwait, os.fork, ...: see
tests/support/without_posix/sitecustomize.py), so importing or using one on these paths fails
here as it would on Windows.
"""

from __future__ import annotations

import http.client
import os
import queue
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from dialtone.commands import COMMANDS
from tests.conftest import ACCOUNT_SID, API_TOKEN, AUTH_TOKEN, PHONE_NUMBER, REPO
from tests.support.dev_process import DevProcess
from tests.support.live_server import free_socket

PRELUDE = REPO / "tests" / "support" / "without_posix"


def free_port() -> int:
    with free_socket() as sock:
        return int(sock.getsockname()[1])


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A newcomer's environment (no Twilio account) in an interpreter without POSIX modules."""
    shutil.copy(REPO / "rules.toml", tmp_path / "rules.toml")
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TWILIO_", "NGROK_", "PUBLIC_URL", "API_TOKEN", "WORKERS"))
    }
    return env | {
        "PYTHONPATH": str(PRELUDE),
        "PORT": str(free_port()),
        "SANDBOX_PORT": str(free_port()),
        "RULES_FILE": str(tmp_path / "rules.toml"),
        "DATABASE_PATH": str(tmp_path / "dialtone.db"),
        "ROUTES_DIR": str(REPO / "routes"),
    }


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


def python(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    "code",
    [
        "import fcntl",
        "import termios",
        "import pwd",
        "import signal; signal.SIGHUP",
        "import signal; signal.sigtimedwait",
        "import os; os.fork",
        "import socket; socket.MSG_DONTWAIT",
    ],
)
def test_the_prelude_takes_posix_away(env: dict[str, str], workdir: Path, code: str) -> None:
    done = python(env, workdir, "-c", code)
    assert done.returncode == 1
    assert "ModuleNotFoundError" in done.stderr or "AttributeError" in done.stderr


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_answers_help(env: dict[str, str], workdir: Path, command: str) -> None:
    done = python(env, workdir, "-m", "dialtone", command, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: dialtone {command}")


class Phone:
    """`python -m dialtone phone` with a keyboard: type lines, read what it prints."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dialtone", "phone"],
            env=env | {"COLUMNS": "200", "NO_COLOR": "1", "PYTHONUTF8": "1"},
            cwd=cwd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    def type(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def wait_for(self, text: str, timeout: float = 20) -> None:
        seen = []
        while True:
            try:
                seen.append(self.lines.get(timeout=timeout))
            except queue.Empty:
                raise AssertionError(f"{text!r} never printed:\n{''.join(seen)}") from None
            if text in seen[-1]:
                return


@pytest.fixture
def dev(env: dict[str, str], workdir: Path) -> Iterator[DevProcess]:
    process = DevProcess(env, workdir)
    yield process
    process.kill_group()


def test_the_dev_loop_and_the_phone(dev: DevProcess, env: dict[str, str], workdir: Path) -> None:
    dev.wait_for("Ready in")  # the sandbox, the number pointed, the app child under hupper
    phone = Phone(env, workdir)
    try:
        phone.wait_for("/quit")  # the help panel
        phone.type("hours")
        phone.wait_for("We're open")  # phone -> sandbox -> the app's /sms_url -> the phone
        phone.type("/quit")
        assert phone.process.wait(timeout=20) == 0
    finally:
        phone.process.kill()
    assert dev.stop() == 0
    assert "Done. The number is back as it was." in dev.output


def test_the_sandbox_alone(env: dict[str, str], workdir: Path) -> None:
    sandbox = DevProcess(env, workdir, command="sandbox")
    try:
        sandbox.wait_for("Dialtone sandbox")
        assert sandbox.stop() == 0
        assert "Sandbox stopped." in sandbox.output
    finally:
        sandbox.kill_group()


@pytest.fixture
def account_env(env: dict[str, str]) -> dict[str, str]:
    """`dialtone serve` as a small VM runs it: the account's settings, no sandbox."""
    return env | {
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_PHONE_NUMBER": PHONE_NUMBER,
        "API_TOKEN": API_TOKEN,
        "PUBLIC_URL": "https://dialtone.example.com",
    }


def test_serve_answers_and_stops_gracefully(account_env: dict[str, str], workdir: Path) -> None:
    server = DevProcess(account_env, workdir, command="serve")
    try:
        server.wait_for("Dialtone listening on")
        # A kept-alive connection is still open when the stop comes, so the drain looks at it.
        connection = http.client.HTTPConnection("127.0.0.1", int(account_env["PORT"]), timeout=10)
        connection.request("GET", "/healthz")
        answer = connection.getresponse()
        assert answer.status == 200
        answer.read()
        assert server.stop() == 0
        assert "Traceback" not in server.output
        connection.close()
    finally:
        server.kill_group()


def test_several_workers_are_one_line_where_there_is_no_fork(
    account_env: dict[str, str], workdir: Path
) -> None:
    done = python(account_env | {"WORKERS": "2"}, workdir, "-m", "dialtone", "serve")
    assert done.returncode == 2
    message = done.stderr.strip()
    assert "\n" not in message, done.stderr  # one paragraph: what is missing, and what to do
    assert message.startswith("WORKERS=2 needs")
    assert "WORKERS=1" in message
