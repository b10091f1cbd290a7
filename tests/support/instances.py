"""Dialtone instances as real server processes (`python server.py`), for the record's tests:
several of them on loopback, each on a free port, sharing one PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dialtone.record.base import IDEMPOTENCY_HEADER
from tests.conftest import ACCOUNT_SID, API_TOKEN, AUTH_TOKEN, PHONE_NUMBER, PUBLIC_URL, REPO
from tests.support.live_server import urlopen
from tests.support.twilio_signing import sign


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(workdir: Path, port: int, **extra: str) -> dict[str, str]:
    """The environment of an instance with the test account (DATABASE_URL etc. in `extra`)."""
    return {
        **os.environ,
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_PHONE_NUMBER": PHONE_NUMBER,
        "PUBLIC_URL": PUBLIC_URL,
        "API_TOKEN": API_TOKEN,
        # Nothing reaches Twilio: /send_sms to an opted-out number is refused before it.
        "TWILIO_API_URL": "http://127.0.0.1:9",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "DATABASE_PATH": str(workdir / "var" / "dialtone.db"),
        "RULES_FILE": str(REPO / "rules.toml"),
        "ROUTES_DIR": str(REPO / "routes"),
        **extra,
    }


@dataclass
class Instance:
    """One running `python server.py`."""

    process: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def post(self, path: str, form: Mapping[str, str], token: str | None = None) -> int:
        """A signed webhook, as Twilio sends it; the HTTP status."""
        headers = {"X-Twilio-Signature": sign(AUTH_TOKEN, PUBLIC_URL + path, form)}
        if token:
            headers[IDEMPOTENCY_HEADER] = token
        data = urllib.parse.urlencode(form).encode()
        return self._status(urllib.request.Request(self.url + path, data=data, headers=headers))

    def api(self, path: str, payload: dict[str, Any] | None = None) -> tuple[int, Any]:
        """A JSON API call with the API token: (status, decoded body)."""
        headers = {"Authorization": f"Bearer {API_TOKEN}"}
        data = None
        if payload is not None:
            data = json.dumps(payload).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.url + path, data=data, headers=headers)
        try:
            with urlopen(request, timeout=20) as answer:
                return int(answer.status), json.load(answer)
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")

    def health(self) -> tuple[int, Any]:
        """GET /healthz: (status, body)."""
        try:
            with urlopen(self.url + "/healthz", timeout=20) as answer:
                return int(answer.status), json.load(answer)
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")

    def _status(self, request: urllib.request.Request) -> int:
        try:
            with urlopen(request, timeout=20) as answer:
                answer.read()
                return int(answer.status)
        except urllib.error.HTTPError as error:
            return error.code

    def kill(self) -> None:
        """SIGKILL: no graceful stop, nothing flushed."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> str:
        """SIGTERM, and the output."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        output, _ = self.process.communicate(timeout=30)
        return output.decode(errors="replace")


def start_instance(env: Mapping[str, str], cwd: Path) -> Instance:
    """Start `python server.py` with `env`; returns once it accepts connections."""
    port = int(env["PORT"])
    process = subprocess.Popen(
        [sys.executable, str(REPO / "server.py")],
        cwd=cwd,  # no .env there
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read().decode() if process.stdout else ""
            raise AssertionError(f"the instance exited {process.returncode}: {output}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return Instance(process, port)
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise AssertionError("the instance did not start listening")
