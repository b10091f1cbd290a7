"""`make webhooks` and `make restore` as a user runs them, against the sandbox as Twilio."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dialtone.commands.webhooks import refuse_a_webhook_url
from dialtone.sandbox.server import SandboxServer
from dialtone.settings import Settings
from tests.support.sandbox_fixtures import configure_number, number_webhooks

PROD = "https://bot.example.com"


def run(
    command: str, *args: str, settings: Settings, cwd: Path, columns: int = 120
) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "TWILIO_ACCOUNT_SID": str(settings.account_sid),
        "TWILIO_AUTH_TOKEN": str(settings.auth_token),
        "TWILIO_PHONE_NUMBER": str(settings.phone_number),
        "TWILIO_API_URL": str(settings.twilio_api_url),
        "COLUMNS": str(columns),
    }
    return subprocess.run(
        [sys.executable, "-m", "dialtone", command, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def configured(sandbox: SandboxServer) -> dict[str, str]:
    return configure_number(sandbox, voice_url="https://old.example.com/v", sms_url="")


def test_dry_run_shows_the_diff_and_changes_nothing(
    sandbox: SandboxServer, sandbox_settings: Settings, configured: dict[str, str], tmp_path: Path
) -> None:
    done = run("webhooks", PROD, "--dry-run", settings=sandbox_settings, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "https://old.example.com/v" in done.stdout
    assert f"{PROD}/voice_url" in done.stdout
    assert "Dry run" in done.stdout
    assert number_webhooks(sandbox) == configured
    assert not (tmp_path / ".dialtone").exists()


def test_points_keeps_a_backup_and_restore_puts_it_back(
    sandbox: SandboxServer, sandbox_settings: Settings, configured: dict[str, str], tmp_path: Path
) -> None:
    done = run("webhooks", PROD, settings=sandbox_settings, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert number_webhooks(sandbox)["sms_url"] == f"{PROD}/sms_url"
    (backup,) = (tmp_path / ".dialtone" / "history").iterdir()
    assert f"make restore FILE={backup.relative_to(tmp_path)}" in done.stdout

    back = run("restore", "--file", str(backup), settings=sandbox_settings, cwd=tmp_path)
    assert back.returncode == 0, back.stderr
    assert number_webhooks(sandbox) == configured


def test_http_url_is_refused_in_one_paragraph(
    sandbox: SandboxServer, sandbox_settings: Settings, tmp_path: Path
) -> None:
    done = run("webhooks", "http://bot.example.com", settings=sandbox_settings, cwd=tmp_path)
    assert done.returncode == 2
    assert "https" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("path", ["/sms_url", "/voice_url/", "/status"])
def test_a_webhooks_own_url_is_refused_with_the_base_url_to_use(
    sandbox: SandboxServer,
    sandbox_settings: Settings,
    configured: dict[str, str],
    tmp_path: Path,
    path: str,
) -> None:
    done = run("webhooks", PROD + path, "--dry-run", settings=sandbox_settings, cwd=tmp_path)
    assert done.returncode == 2
    paragraph = done.stderr.strip()
    assert "\n" not in paragraph
    assert paragraph.endswith(f"Did you mean {PROD}?")
    assert number_webhooks(sandbox) == configured


@pytest.mark.parametrize(
    ("url", "paths"),
    [
        (PROD, ("/", "/voice_url", "/status")),  # SMS_PATH=/ cannot be told apart: not checked
        (PROD + "/status-board", ("/sms_url", "/voice_url", "/status")),
        ("https://status", ("/sms_url", "/voice_url", "/status")),  # a host, not a path
    ],
)
def test_a_base_url_is_not_taken_for_a_webhook(url: str, paths: tuple[str, ...]) -> None:
    refuse_a_webhook_url(url, paths)


def test_a_narrow_terminal_wraps_the_diff_instead_of_cutting_it(
    sandbox: SandboxServer, sandbox_settings: Settings, configured: dict[str, str], tmp_path: Path
) -> None:
    deep = PROD + "/a/rather/long/path/to/the/deployed/dialtone"
    done = run("webhooks", deep, "--dry-run", settings=sandbox_settings, cwd=tmp_path, columns=60)
    assert done.returncode == 0, done.stderr
    assert "…" not in done.stdout
    lines = [line.strip() for line in done.stdout.splitlines()]
    assert f"after   {deep}/voice_url" in lines  # whole, on a line of its own
    assert "before  https://old.example.com/v" in lines


def test_every_missing_setting_is_named_at_once(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "dialtone", "webhooks", PROD, "--dry-run"],
        cwd=tmp_path,
        env={"PATH": os.environ.get("PATH", "")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "2 problem(s)" in done.stderr
    assert "TWILIO_PHONE_NUMBER" in done.stderr
    assert "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN" in done.stderr
    assert "Traceback" not in done.stderr


def test_restore_without_a_backup_says_so(
    sandbox: SandboxServer, sandbox_settings: Settings, tmp_path: Path
) -> None:
    done = run("restore", settings=sandbox_settings, cwd=tmp_path)
    assert done.returncode == 0
    assert "Nothing to restore" in done.stdout


def test_bad_credentials_are_one_paragraph(
    sandbox: SandboxServer, sandbox_settings: Settings, configured: dict[str, str], tmp_path: Path
) -> None:
    wrong = sandbox_settings.with_overrides(auth_token="nope")
    done = run("webhooks", PROD, settings=wrong, cwd=tmp_path)
    assert done.returncode == 2
    assert "20003" in done.stderr
    assert "Traceback" not in done.stderr
    assert number_webhooks(sandbox) == configured
