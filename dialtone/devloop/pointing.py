"""Point the number at a URL for a while and put it back: the number side of `make dev`.

    pointed = point_number(client, settings, "https://abc.ngrok.app")
    try:
        ...serve...
    finally:
        pointed.restore()

The original configuration is saved before anything changes and deleted only once it has been
put back; a backup left by a run that died is reused as the original, never overwritten.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twilio.rest import Client

from dialtone.devloop.number_config import (
    BACKUP_DIR,
    NumberConfig,
    NumberError,
    backup_path,
    diff,
    find_number,
    pointing_at,
    read_backup,
    restore,
    snapshot,
    update,
    write_backup,
)

log = logging.getLogger("dialtone.devloop.pointing")


@dataclass
class PointedNumber:
    """A number pointed somewhere for now, with what it takes to put it back."""

    client: Client
    original: NumberConfig
    backup: Path
    changes: list[tuple[str, str, str]] = field(default_factory=list)
    reused_backup: bool = False

    def restore(self) -> None:
        """Put every saved field back, then remove the backup (kept if the restore fails)."""
        restore(self.client, self.original)
        self.backup.unlink(missing_ok=True)


def point_number(
    client: Client,
    account_sid: str,
    phone_number: str,
    base_url: str,
    *,
    voice: bool = True,
    sms: bool = True,
    voice_path: str = "/voice_url",
    sms_path: str = "/sms_url",
    backup_dir: Path = BACKUP_DIR,
    notice: Callable[[str], Any] = log.warning,
) -> PointedNumber:
    """Save the number's configuration, then point voice/SMS/status at routes under `base_url`."""
    number = find_number(client, phone_number)
    path = backup_path(phone_number, backup_dir)
    original = read_backup(path)
    reused = original is not None
    if original is not None and original.sid != number.sid:
        raise NumberError(
            f"The backup {path} is for number {original.sid}, but {phone_number} is now "
            f"{number.sid} (another account?). Restore it by hand or move the file away."
        )
    if original is None:
        original = snapshot(number, account_sid)
        write_backup(original, path)
    else:
        notice(
            f"Found {path} from an earlier run that did not finish: the number's original "
            f"configuration (saved {original.saved_at}) is kept from it and restored on exit."
        )
    changes = pointing_at(base_url, voice=voice, sms=sms, voice_path=voice_path, sms_path=sms_path)
    try:
        update(client, original, dict(changes))
    except BaseException:
        # The update is one request: if it failed nothing changed. A fresh backup is useless
        # then; a reused one still describes the original, so it stays.
        if not reused:
            path.unlink(missing_ok=True)
        raise
    current = {name: getattr(number, name) for name in original.fields}
    return PointedNumber(client, original, path, diff(current, dict(changes)), reused)
