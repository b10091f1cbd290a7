"""The fake ngrok agent (agent.py, run through the `ngrok` launcher) and helpers to drive it.

    def test_x(fake_ngrok):                    # the fixture in tests/conftest.py
        tunnel = open_tunnel(port, authtoken="t", **fake_ngrok.tunnel_options())
        forwarder = fake_ngrok.forwarder(tunnel.public_url)   # http://127.0.0.1:PORT
        # a request to `forwarder` reaches localhost:port as ngrok would deliver it to
        # tunnel.public_url: Host and X-Forwarded-Host the public host, X-Forwarded-Proto https

A subprocess (`python -m dialtone dev`) gets it through `fake_ngrok.environ()`: NGROK_PATH is the fake,
NGROK_AUTHTOKEN a fake token, and the agent writes its state (pid, public URL -> forwarder) to
FAKE_NGROK_STATE, which is `fake_ngrok.state_file`, so `fake_ngrok.forwarder(url)` works there too.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

FAKE_NGROK = Path(__file__).resolve().with_name("ngrok")

# What the fake agent reads from its environment; cleared so one test's setting can't leak.
FAKE_ENV = ("FAKE_NGROK_FAIL", "FAKE_NGROK_DOMAINS", "FAKE_NGROK_STATE", "FAKE_NGROK_WEB_ADDR")


@dataclass(frozen=True)
class FakeNgrok:
    """Where the fake agent is and what it has told us."""

    path: Path  # the executable to give pyngrok as ngrok_path (NGROK_PATH)
    config_path: Path  # an ngrok config file in tmp_path, so ~/.config/ngrok is never touched
    state_file: Path  # FAKE_NGROK_STATE: the agent's pid, API URL and endpoints

    def tunnel_options(self) -> dict[str, Any]:
        """Keyword arguments for dialtone.devloop.tunnel.open_tunnel that point it at the fake agent."""
        return {"ngrok_path": self.path, "config_path": self.config_path}

    def state(self) -> dict[str, Any]:
        """The agent's last written state; {} if it never started."""
        try:
            return dict(json.loads(self.state_file.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return {}

    def forwarder(self, public_url: str) -> str:
        """The loopback address that plays `public_url`'s public side."""
        return str(self.state()["endpoints"][public_url.rstrip("/")]["forwarder"])

    def environ(self, authtoken: str = "fake-ngrok-authtoken") -> dict[str, str]:
        """The environment for a subprocess (`python -m dialtone dev`) that should use this fake agent.

        It carries FAKE_NGROK_STATE and the dead download proxies from `set_up`, and points
        pyngrok's default config directory (XDG_CONFIG_HOME) into tmp_path, away from ~/.config.
        """
        env = dict(os.environ)
        env.update(
            NGROK_PATH=str(self.path),
            NGROK_AUTHTOKEN=authtoken,
            XDG_CONFIG_HOME=str(self.config_path.parent / "xdg"),
        )
        return env

    def pid(self) -> int | None:
        """The pid of the last agent started, if one was."""
        pid = self.state().get("pid")
        return int(pid) if pid else None


def is_running(pid: int) -> bool:
    """True if a process with this pid exists (zombies included)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def set_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeNgrok:
    """Point the environment at a fresh fake agent, with every download made to fail at once."""
    for name in (*FAKE_ENV, "NGROK_AUTHTOKEN", "NGROK_PATH", "PYNGROK_NGROK_PATH"):
        monkeypatch.delenv(name, raising=False)
    fake = FakeNgrok(FAKE_NGROK, tmp_path / "ngrok.yml", tmp_path / "ngrok-state.json")
    monkeypatch.setenv("FAKE_NGROK_STATE", str(fake.state_file))
    # pyngrok downloads ngrok with urllib when the binary is missing. Send every proxied request
    # to a closed loopback port, so a download fails at once and never leaves the machine; the
    # agent API on loopback stays direct.
    dead = f"http://127.0.0.1:{_closed_port()}"
    for name in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(name, dead)
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")
    return fake


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
