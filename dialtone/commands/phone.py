"""`dialtone phone` (make phone): a phone in the terminal for the local sandbox.

Text the sandbox number by typing a line, call it with /call, answer its menus with the keypad
(type digits and Enter), answer calls made to you (/answer), and watch replies, spoken text,
media, status changes and errors as they happen. The sandbox must be running (`dialtone dev`
without Twilio credentials, or `dialtone sandbox`).
"""

from __future__ import annotations

import argparse

from dialtone import cli
from dialtone.settings import Settings

SUMMARY = "the terminal phone: text and call the sandbox number"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `dialtone phone`."""
    parser.add_argument(
        "--sandbox",
        metavar="URL",
        help="the sandbox's URL (default: SANDBOX_URL, or http://127.0.0.1:SANDBOX_PORT)",
    )


def sandbox_url(settings: Settings, given: str | None) -> str:
    """Where the sandbox is: --sandbox, then SANDBOX_URL, then 127.0.0.1:SANDBOX_PORT."""
    return given or settings.sandbox_url or f"http://127.0.0.1:{settings.sandbox_port}"


def run(args: argparse.Namespace) -> int:
    """Run the phone until /quit, end of input or Ctrl-C."""
    from dialtone.sandbox.phone.terminal import run_phone

    return run_phone(sandbox_url(cli.load_settings(), args.sandbox))
