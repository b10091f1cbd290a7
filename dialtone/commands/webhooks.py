"""`dialtone webhooks URL` (make webhooks URL=https://bot.example.com): point the number at a
deployed Dialtone.

Shows a before/after diff, saves the previous configuration (so `dialtone restore --file ...`
can put it back), and with --dry-run changes nothing.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from dialtone import cli
from dialtone.errors import DialtoneError, SettingsError
from dialtone.settings import absolute_url

if TYPE_CHECKING:
    from rich.console import Console

SUMMARY = "point the number at a deployed Dialtone (a diff first; --dry-run changes nothing)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `dialtone webhooks`."""
    parser.add_argument("url", help="the deployed Dialtone's public https base URL")
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--voice-only", action="store_true", help="change only the voice webhook")
    only.add_argument("--sms-only", action="store_true", help="change only the SMS webhook")
    parser.add_argument("--dry-run", action="store_true", help="show the diff, change nothing")


def refuse_a_webhook_url(url: str, paths: tuple[str, ...]) -> None:
    """DialtoneError for the URL of one webhook where the base URL belongs: the paths are added
    to it (https://bot.example.com/sms_url would point the number at .../sms_url/sms_url)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    for route in paths:
        route = route.rstrip("/")
        if route and path.endswith(route):  # "/" as a route cannot be told apart: not checked
            base = f"{parts.scheme}://{parts.netloc}{path[: -len(route)]}"
            raise DialtoneError(
                f"{url} is the URL of a webhook, not of the deployed Dialtone: the webhook paths "
                f"({', '.join(paths)}) are added to the URL given. Did you mean {base}?"
            )


def print_changes(console: Console, title: str, rows: list[tuple[str, str, str]]) -> None:
    """Each field's before and after, each URL on a line of its own, never cut: at any
    terminal width a wrong URL shows whole."""
    from rich.text import Text

    from dialtone.untrusted import printable  # the before values are whatever was set

    console.print(Text(title, style="bold"))
    for name, old, new in rows:
        console.print(Text(f"  {name}", style="cyan"))
        was = printable(old, None) or "(empty)"
        console.print(Text.assemble("    before  ", (was, "dim")), soft_wrap=True)
        console.print(Text.assemble("    after   ", (new, "green")), soft_wrap=True)


def run(args: argparse.Namespace) -> int:
    """Point the number at URL."""
    from datetime import UTC, datetime

    from rich.console import Console

    from dialtone.devloop.number_config import (
        BACKUP_DIR,
        diff,
        find_number,
        pointing_at,
        snapshot,
        update,
        write_backup,
    )
    from dialtone.twilio_api import make_client

    try:
        url = absolute_url(args.url)
    except ValueError as exc:
        raise DialtoneError(f"URL {args.url!r} {exc}.") from None
    if not url.startswith("https://"):
        raise DialtoneError(f"Twilio should call an https URL in production; got {url}.")
    settings = cli.load_settings()
    refuse_a_webhook_url(url, (settings.sms_path, settings.voice_path, "/status"))
    missing = (
        [] if settings.phone_number else ["TWILIO_PHONE_NUMBER: set it to the number to point"]
    )
    if not settings.has_credentials:  # every missing setting in one message, not one per run
        missing += ["TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN: the account that owns the number"]
    if missing or not settings.phone_number:
        raise SettingsError(missing)
    client = make_client(settings)
    number = find_number(client, settings.phone_number)
    before = snapshot(number, settings.account_sid or "")
    changes = pointing_at(
        url,
        voice=not args.sms_only,
        sms=not args.voice_only,
        voice_path=settings.voice_path,
        sms_path=settings.sms_path,
    )
    rows = diff(before.fields, dict(changes))
    console = Console()
    if not rows:
        console.print(f"{settings.phone_number} already points at {url}; nothing to change.")
        return 0
    print_changes(console, f"{settings.phone_number} ({before.sid})", rows)
    if args.dry_run:
        console.print("Dry run: nothing was changed.")
        return 0
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    saved = BACKUP_DIR / "history" / f"number-{settings.phone_number.lstrip('+')}-{stamp}.json"
    write_backup(before, saved)
    update(client, before, dict(changes))
    console.print(f"Done. The previous configuration is saved in {saved}.")
    console.print(f"To put it back: make restore FILE={saved}")
    console.print(f"  (or without make: dialtone restore --file {saved})")
    return 0
