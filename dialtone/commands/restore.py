"""`dialtone restore` (make restore): put the number back from the backup `dialtone dev` keeps,
or from a backup file (--file, FILE= with make).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dialtone import cli
from dialtone.errors import DialtoneError, SettingsError

SUMMARY = "put the number back from the dev loop's backup (or --file backup.json)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `dialtone restore`."""
    parser.add_argument("--file", type=Path, help="a backup to restore from")


def run(args: argparse.Namespace) -> int:
    """Restore the number's saved webhook configuration."""
    from dialtone.devloop.number_config import BACKUP_DIR, backup_path, read_backup, restore
    from dialtone.twilio_api import make_client

    settings = cli.load_settings()
    if args.file is not None:
        path = args.file
        if not path.is_file():
            raise DialtoneError(f"There is no backup at {path}: check the --file (FILE=) path.")
    elif settings.phone_number:
        path = backup_path(settings.phone_number)
    else:
        leftovers = sorted(BACKUP_DIR.glob("number-*.json"))
        if not leftovers:
            print(f"Nothing to restore: no backups in {BACKUP_DIR}/.")
            return 0
        raise SettingsError(
            [
                "TWILIO_PHONE_NUMBER: set it to say which number to restore, or pass "
                f"--file (FILE=) one of: {', '.join(str(p) for p in leftovers)}"
            ]
        )
    original = read_backup(path)
    if original is None:
        print(f"Nothing to restore: there is no backup at {path}.")
        return 0
    if settings.phone_number and original.phone_number != settings.phone_number:
        raise DialtoneError(
            f"{path} is a backup of {original.phone_number}, not TWILIO_PHONE_NUMBER "
            f"{settings.phone_number}. Check the file, or change TWILIO_PHONE_NUMBER."
        )
    restore(make_client(settings), original)
    if args.file is None:
        path.unlink()
    print(f"Restored {original.phone_number} as saved at {original.saved_at}.")
    return 0
