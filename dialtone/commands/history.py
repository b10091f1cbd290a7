"""`dialtone history` (make history): recent conversations from the record, grouped by number.

Read-only: the database is opened with SQLite's mode=ro (or PostgreSQL's, with DATABASE_URL),
never created or migrated.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from dialtone import cli

if TYPE_CHECKING:
    from rich.console import Console

SUMMARY = "recent conversations from the record (--number +1555... --limit 5)"


def positive(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not at least 1")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `dialtone history`."""
    parser.add_argument("--db", type=Path, help="the database file (default: DATABASE_PATH)")
    parser.add_argument("--limit", type=positive, default=10, help="conversations to show (10)")
    parser.add_argument(
        "--messages",
        type=positive,
        default=10,
        help="the latest messages and calls (together) shown per number (10)",
    )
    parser.add_argument("--number", help="only the conversation with this number")


def run(args: argparse.Namespace, console: Console | None = None) -> int:
    """Print the history from --db, else DATABASE_URL (PostgreSQL), else DATABASE_PATH."""
    from dialtone.record.history import show_history

    settings = cli.load_settings()
    path: Path = args.db or settings.database_path
    return show_history(
        path,
        database_url=None if args.db else settings.database_url,  # --db: that SQLite file
        limit=args.limit,
        per_number=args.messages,
        number=args.number,
        console=console,
    )
