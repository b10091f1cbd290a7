"""Pointing the number and putting it back, against the sandbox as Twilio."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dialtone.devloop.number_config import (
    NumberConfig,
    NumberError,
    backup_path,
    read_backup,
)
from dialtone.devloop.pointing import PointedNumber, point_number
from dialtone.sandbox.server import SandboxServer
from dialtone.settings import Settings
from dialtone.twilio_api import make_client
from tests.support.sandbox_fixtures import configure_number, number_webhooks

ORIGINAL = {
    "voice_url": "https://old.example.com/voice",
    "voice_method": "GET",
    "voice_fallback_url": "https://old.example.com/voice-fallback",
    "sms_url": "https://old.example.com/sms",
    "sms_method": "POST",
    "status_callback": "",
}
TUNNEL = "https://abc123.ngrok-free.app"


@pytest.fixture
def number(sandbox: SandboxServer) -> str:
    """The sandbox number, configured as a developer's number might be; its SID."""
    configure_number(sandbox, **ORIGINAL)
    found = sandbox.state.number_by_phone(str(sandbox.state.phone_number))
    assert found is not None
    return found.sid


def point(settings: Settings, backups: Path, **kwargs: Any) -> PointedNumber:
    return point_number(
        make_client(settings),
        str(settings.account_sid),
        str(settings.phone_number),
        TUNNEL,
        backup_dir=backups,
        **kwargs,
    )


def test_points_and_restores_every_field_exactly(
    sandbox: SandboxServer, sandbox_settings: Settings, number: str, tmp_path: Path
) -> None:
    before = number_webhooks(sandbox)
    pointed = point(sandbox_settings, tmp_path)
    now = number_webhooks(sandbox)
    assert now["voice_url"] == TUNNEL + "/voice_url"
    assert now["sms_url"] == TUNNEL + "/sms_url"
    assert now["status_callback"] == TUNNEL + "/status"
    assert (now["voice_method"], now["sms_method"]) == ("POST", "POST")
    assert now["voice_fallback_url"] == before["voice_fallback_url"]  # left alone
    assert ("voice_url", ORIGINAL["voice_url"], TUNNEL + "/voice_url") in pointed.changes
    backup = backup_path(str(sandbox_settings.phone_number), tmp_path)
    assert json.loads(backup.read_text())["fields"]["voice_url"] == ORIGINAL["voice_url"]

    pointed.restore()
    assert number_webhooks(sandbox) == before
    assert not backup.exists()


@pytest.mark.parametrize(
    ("flags", "voice_changed", "sms_changed"),
    [({"voice": True, "sms": False}, True, False), ({"voice": False, "sms": True}, False, True)],
)
def test_only_voice_or_only_sms(
    sandbox: SandboxServer,
    sandbox_settings: Settings,
    number: str,
    tmp_path: Path,
    flags: dict[str, bool],
    voice_changed: bool,
    sms_changed: bool,
) -> None:
    point(sandbox_settings, tmp_path, **flags)
    now = number_webhooks(sandbox)
    assert (now["voice_url"] != ORIGINAL["voice_url"]) is voice_changed
    assert (now["sms_url"] != ORIGINAL["sms_url"]) is sms_changed


def test_a_leftover_backup_is_the_original_and_is_never_overwritten(
    sandbox: SandboxServer, sandbox_settings: Settings, number: str, tmp_path: Path
) -> None:
    before = number_webhooks(sandbox)
    point(sandbox_settings, tmp_path)  # ... and the process dies: no restore
    backup = backup_path(str(sandbox_settings.phone_number), tmp_path)
    saved = backup.read_text()
    notices: list[str] = []
    second = point(sandbox_settings, tmp_path, notice=notices.append)
    assert second.reused_backup
    assert "earlier run" in notices[0]
    assert backup.read_text() == saved  # the tunnel URLs did not replace the original
    second.restore()
    assert number_webhooks(sandbox) == before


def test_number_not_on_the_account(
    sandbox: SandboxServer, sandbox_settings: Settings, tmp_path: Path
) -> None:
    other = sandbox_settings.with_overrides(phone_number="+15550001234")
    with pytest.raises(NumberError, match="not a number on this Twilio account"):
        point(other, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_bad_credentials_say_20003_and_change_nothing(
    sandbox: SandboxServer, sandbox_settings: Settings, number: str, tmp_path: Path
) -> None:
    before = number_webhooks(sandbox)
    with pytest.raises(NumberError, match="20003"):
        point(sandbox_settings.with_overrides(auth_token="wrong"), tmp_path)
    assert number_webhooks(sandbox) == before
    assert list(tmp_path.iterdir()) == []


def test_a_failed_update_changes_nothing_and_leaves_no_backup(
    sandbox: SandboxServer, sandbox_settings: Settings, number: str, tmp_path: Path
) -> None:
    before = number_webhooks(sandbox)
    with pytest.raises(NumberError, match="Nothing was changed"):
        point_number(
            make_client(sandbox_settings),
            str(sandbox_settings.account_sid),
            str(sandbox_settings.phone_number),
            "not-a-url",  # Twilio refuses it (21402)
            backup_dir=tmp_path,
        )
    # The invalid URLs are against the description too: one violation for each URL field sent.
    assert sorted(v.problem for v in sandbox.take_violations()) == [
        f"parameter {field}='not-a-url/{path}' is not an absolute http(s) URL"
        for field, path in (
            ("SmsUrl", "sms_url"),
            ("StatusCallback", "status"),
            ("VoiceUrl", "voice_url"),
        )
    ]
    assert number_webhooks(sandbox) == before
    assert list(tmp_path.iterdir()) == []


def test_a_damaged_backup_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "number-1555.json"
    path.write_text("{not json")
    with pytest.raises(NumberError, match="damaged"):
        read_backup(path)


def test_backup_round_trip() -> None:
    config = NumberConfig("PN" + "0" * 32, "+15551234567", "AC" + "0" * 32, {"voice_url": None})
    assert NumberConfig.from_json(config.to_json()) == config
