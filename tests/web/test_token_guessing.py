"""Guessing API_TOKEN (issue 9.2): a locked-out address is refused even with the right token,
the address is the real client's behind a trusted proxy, the limiter's memory is bounded, and a
short API_TOKEN stops the server at start-up."""

from __future__ import annotations

import http.client
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import webtest

from dialtone.app import close_app, create_app
from dialtone.errors import SettingsError
from dialtone.settings import Settings
from dialtone.web.api_auth import AUTH_FAILURES_PER_MINUTE
from dialtone.web.ratelimit import RateLimiter
from tests.conftest import API_TOKEN, REPO
from tests.support.live_server import free_socket, serve_app


@pytest.fixture
def served(settings: Settings, request: pytest.FixtureRequest) -> Iterator[int]:
    """The app on real waitress (TRUSTED_PROXY from the test's parameter); yields its port."""
    changed = settings.with_overrides(**getattr(request, "param", {}))
    app = create_app(changed)
    sock = free_socket()
    with serve_app(app, changed, sock):
        yield sock.getsockname()[1]
    close_app(app)


def get_messages(port: int, token: str | None, forwarded_for: str | None = None) -> int:
    """GET /messages on the real server; the status."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    if forwarded_for is not None:
        headers["X-Forwarded-For"] = forwarded_for
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/messages", headers=headers)
        answer = conn.getresponse()
        body = answer.read()
        if answer.status == 429:
            assert int(answer.getheader("Retry-After") or "0") >= 1
            assert "retry later" in json.loads(body)["error"]["message"]
        return answer.status
    finally:
        conn.close()


def test_a_locked_out_address_is_refused_even_with_the_right_token(served: int) -> None:
    assert get_messages(served, API_TOKEN) == 200
    guesses = [get_messages(served, f"guess-{i}") for i in range(AUTH_FAILURES_PER_MINUTE + 2)]
    assert guesses == [403] * AUTH_FAILURES_PER_MINUTE + [429, 429]
    # The guesser cannot tell a hit from a miss: the right token is refused the same way.
    assert get_messages(served, API_TOKEN) == 429
    assert get_messages(served, None) == 429


@pytest.mark.parametrize("served", [{"trusted_proxy": "127.0.0.1"}], indirect=True)
def test_behind_a_trusted_proxy_the_real_client_is_locked_whatever_it_forwards(
    served: int,
) -> None:
    # The proxy appends the address it saw to what the client sent: only that last one counts,
    # so a guesser who puts a new X-Forwarded-For on each request stays one address.
    for i in range(AUTH_FAILURES_PER_MINUTE):
        assert get_messages(served, f"guess-{i}", f"10.0.0.{i}, 203.0.113.9") == 403
    assert get_messages(served, API_TOKEN, "10.9.9.9, 203.0.113.9") == 429
    # Another client behind the same proxy is not locked out.
    assert get_messages(served, API_TOKEN, "198.51.100.7") == 200


def test_without_a_trusted_proxy_forwarded_for_is_ignored(served: int) -> None:
    for i in range(AUTH_FAILURES_PER_MINUTE):
        assert get_messages(served, f"guess-{i}", f"10.0.0.{i}") == 403
    assert get_messages(served, API_TOKEN, "198.51.100.7") == 429


def test_the_lock_expires_after_the_window() -> None:
    now = [1000.0]
    limiter = RateLimiter(3, window=60, clock=lambda: now[0])
    for _ in range(3):
        assert limiter.hit("198.51.100.7") is None
    assert limiter.locked("198.51.100.7") == pytest.approx(60)
    assert limiter.locked("198.51.100.7") == pytest.approx(60)  # asking does not count
    assert limiter.locked("203.0.113.9") is None
    now[0] += 59
    assert limiter.locked("198.51.100.7") == pytest.approx(1)
    now[0] += 1
    assert limiter.locked("198.51.100.7") is None
    assert limiter.hit("198.51.100.7") is None


def test_the_limiter_memory_is_bounded_whatever_the_number_of_clients() -> None:
    now = [0.0]
    limiter = RateLimiter(10, window=60, clock=lambda: now[0], max_keys=1000)
    for i in range(50_000):
        limiter.hit(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}")
        assert len(limiter) <= 1000
    assert len(limiter) == 1000
    # The most recent clients are the ones remembered, with their counts.
    for _ in range(9):
        limiter.hit("10.0.195.79")  # client 49,999
    assert limiter.locked("10.0.195.79") is not None


def test_idle_clients_are_forgotten() -> None:
    now = [0.0]
    limiter = RateLimiter(10, window=60, clock=lambda: now[0])
    for i in range(500):
        limiter.hit(f"client-{i}")
    now[0] += 61
    limiter.hit("a newcomer")
    assert len(limiter) == 1


def test_a_short_api_token_is_refused_by_settings() -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({"API_TOKEN": "x" * 31})
    message = str(refused.value)
    assert "API_TOKEN" in message
    assert "at least 32" in message
    assert "secrets.token_urlsafe(32)" in message
    assert "x" * 31 not in message  # the secret is never echoed
    assert Settings.from_env({"API_TOKEN": "x" * 32}).api_token == "x" * 32


def test_the_server_does_not_start_with_a_short_api_token(tmp_path: Path) -> None:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "API_TOKEN": "hunter2",
        "VALIDATE_SIGNATURES": "false",
        "PORT": "1",  # never bound: the settings are refused first
        "DATABASE_PATH": str(tmp_path / "dialtone.db"),
        "ROUTES_DIR": str(REPO / "routes"),
    }
    done = subprocess.run(
        [sys.executable, str(REPO / "server.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "API_TOKEN" in done.stderr
    assert "secrets.token_urlsafe(32)" in done.stderr
    assert "Traceback" not in done.stderr
    assert "hunter2" not in done.stderr
    assert not (tmp_path / "dialtone.db").exists()


def test_a_lockout_is_logged_once_with_the_address(
    app: webtest.TestApp, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = {"Authorization": "Bearer not-the-token", "REMOTE_ADDR": "203.0.113.7"}
    with caplog.at_level(logging.WARNING, logger="dialtone.api"):
        for _ in range(AUTH_FAILURES_PER_MINUTE + 3):
            app.get(
                "/messages",
                headers={"Authorization": wrong["Authorization"]},
                extra_environ={"REMOTE_ADDR": wrong["REMOTE_ADDR"]},
                status="*",
            )
    lines = [r.getMessage() for r in caplog.records if "refusing" in r.getMessage()]
    assert len(lines) == 1
    assert "203.0.113.7" in lines[0]


def test_json_content_type_is_case_insensitive(app: webtest.TestApp) -> None:
    answer = app.post(
        "/send_sms",
        b'{"to": "+15557654321"}',
        headers={"Authorization": f"Bearer {API_TOKEN}", "Content-Type": "Application/JSON"},
        status=400,
    )
    assert "Content-Type" not in answer.json["error"]["message"]  # read, then found lacking
