"""`make restore FILE=` checks the backup's account and number SID against the number it finds
(issue 9.8): a backup edited, or made for another account or number, changes nothing."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from dialtone.devloop.number_config import (
    NumberConfig,
    NumberError,
    find_number,
    restore,
    snapshot,
    write_backup,
)
from dialtone.sandbox.server import SandboxServer
from dialtone.settings import Settings
from dialtone.twilio_api import make_client
from tests.conftest import REPO
from tests.support.sandbox_fixtures import configure_number, number_webhooks

OTHER_SID = "PN" + "f" * 32
OTHER_ACCOUNT = "AC" + "e" * 32


def saved(sandbox_settings: Settings, **fields: str | None) -> NumberConfig:
    """A genuine backup of the sandbox number, with the webhook fields given."""
    client = make_client(sandbox_settings)
    number = find_number(client, str(sandbox_settings.phone_number))
    genuine = snapshot(number, str(sandbox_settings.account_sid))
    return dataclasses.replace(genuine, fields={**genuine.fields, **fields})


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"sid": OTHER_SID}, OTHER_SID),
        ({"account_sid": OTHER_ACCOUNT}, OTHER_ACCOUNT),
        ({"sid": OTHER_SID, "account_sid": OTHER_ACCOUNT}, OTHER_SID),
    ],
)
def test_a_backup_for_another_number_or_account_is_refused_and_changes_nothing(
    sandbox: SandboxServer, sandbox_settings: Settings, change: dict[str, str], named: str
) -> None:
    before = configure_number(sandbox, sms_url="https://now.example.com/sms")
    backup = saved(sandbox_settings, sms_url="https://evil.example.com/sms")
    backup = dataclasses.replace(backup, sid=change.get("sid", backup.sid))
    backup = dataclasses.replace(backup, account_sid=change.get("account_sid", backup.account_sid))
    with pytest.raises(NumberError) as refused:
        restore(make_client(sandbox_settings), backup)
    message = str(refused.value)
    assert named in message
    assert "nothing was changed" in message
    assert "\n" not in message  # one paragraph
    assert number_webhooks(sandbox) == before


def test_a_genuine_backup_is_restored(sandbox: SandboxServer, sandbox_settings: Settings) -> None:
    configure_number(sandbox, sms_url="https://now.example.com/sms")
    restore(
        make_client(sandbox_settings), saved(sandbox_settings, sms_url="https://was.example.com")
    )
    assert number_webhooks(sandbox)["sms_url"] == "https://was.example.com"


def test_make_restore_refuses_an_edited_backup_in_one_paragraph(
    sandbox: SandboxServer, sandbox_settings: Settings, tmp_path: Path
) -> None:
    before = configure_number(sandbox, sms_url="https://now.example.com/sms")
    path = tmp_path / "backup.json"
    write_backup(dataclasses.replace(saved(sandbox_settings), sid=OTHER_SID), path)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "TWILIO_ACCOUNT_SID": str(sandbox_settings.account_sid),
        "TWILIO_AUTH_TOKEN": str(sandbox_settings.auth_token),
        "TWILIO_PHONE_NUMBER": str(sandbox_settings.phone_number),
        "TWILIO_API_URL": str(sandbox_settings.twilio_api_url),
    }
    make = shutil.which("make")
    assert make is not None
    done = subprocess.run(
        [make, "-s", "-C", str(REPO), "restore", f"FILE={path}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert OTHER_SID in done.stderr
    assert "does not match the number on Twilio" in done.stderr
    assert "Traceback" not in done.stderr
    assert number_webhooks(sandbox) == before
