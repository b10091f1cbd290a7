"""Starting the server: settings mistakes are one paragraph, warnings are loud, logs are sane."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

from dialtone import logs
from dialtone.app import startup_warnings
from dialtone.settings import Settings
from tests.conftest import REPO


def run_server(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "API_TOKEN"))}
    return subprocess.run(
        [sys.executable, str(REPO / "server.py")],
        env={**base, **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_invalid_settings_are_reported_together_and_nothing_starts() -> None:
    done = run_server({"PORT": "99999", "TWILIO_ACCOUNT_SID": "AC123", "TWILIO_AUTH_TOKEN": "x"})
    assert done.returncode == 2
    assert "2 problem(s)" in done.stderr
    assert "PORT" in done.stderr
    assert "TWILIO_ACCOUNT_SID" in done.stderr
    assert "Traceback" not in done.stderr


def test_no_auth_token_is_one_paragraph() -> None:
    done = run_server({})
    assert done.returncode == 2
    assert "TWILIO_AUTH_TOKEN is not set" in done.stderr
    assert "Traceback" not in done.stderr


def test_switching_checks_off_is_loud(settings: Settings) -> None:
    warnings = startup_warnings(settings.with_overrides(validate_signatures=False))
    assert any("ANYONE can post fake Twilio webhooks" in w for w in warnings)
    assert not any("ANYONE" in w for w in startup_warnings(settings))


def test_the_outbound_api_off_is_said_at_startup(settings: Settings) -> None:
    warnings = startup_warnings(settings.with_overrides(api_token=None))
    assert any("API_TOKEN is not set" in w and "/send_sms" in w for w in warnings)


def test_no_public_url_or_proxy_is_warned(settings: Settings) -> None:
    warnings = startup_warnings(settings.with_overrides(public_url=None))
    assert any("PUBLIC_URL" in w for w in warnings)
    behind_proxy = settings.with_overrides(public_url=None, trusted_proxy="127.0.0.1")
    assert not any("PUBLIC_URL" in w for w in startup_warnings(behind_proxy))


def test_waitress_queue_warnings_are_kept_quiet() -> None:
    logs.configure("INFO")
    assert not logging.getLogger("waitress.queue").isEnabledFor(logging.WARNING)
    assert logging.getLogger("waitress.queue").isEnabledFor(logging.ERROR)
    assert logging.getLogger("dialtone.access").isEnabledFor(logging.INFO)


def test_status_callbacks_are_described_in_one_line() -> None:
    from bottle import FormsDict

    from routes.status import describe

    message = FormsDict(MessageSid="SM1", MessageStatus="undelivered", ErrorCode="30003")
    assert describe(message) == "message SM1 is undelivered, error 30003"
    call = FormsDict(CallSid="CA1", CallStatus="completed", CallDuration="42")
    assert describe(call) == "call CA1 is completed, after 42s"


def test_a_trust_everyone_proxy_on_an_open_port_is_warned(settings: Settings) -> None:
    open_to_all = settings.with_overrides(trusted_proxy="*", host="0.0.0.0")
    assert any("TRUSTED_PROXY=*" in w for w in startup_warnings(open_to_all))
    behind = settings.with_overrides(trusted_proxy="*", host="127.0.0.1")
    assert not any("TRUSTED_PROXY=*" in w for w in startup_warnings(behind))


def test_a_proxy_without_trusted_proxy_is_warned_for_the_lockout(settings: Settings) -> None:
    behind = settings.with_overrides(public_url="https://bot.example.com", trusted_proxy=None)
    assert any("lock every API client out" in w for w in startup_warnings(behind))
    told = behind.with_overrides(trusted_proxy="127.0.0.1")
    assert not any("lock every API client out" in w for w in startup_warnings(told))
    no_api = behind.with_overrides(api_token=None)
    assert not any("lock every API client out" in w for w in startup_warnings(no_api))


def test_a_spool_that_cannot_be_written_is_warned(settings: Settings, tmp_path: Path) -> None:
    from dialtone.app import spool_warning

    assert spool_warning(settings) is None
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    warning = spool_warning(settings.with_overrides(database_path=blocker / "dialtone.db"))
    assert warning is not None
    assert "held in memory" in warning
