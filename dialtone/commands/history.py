"""`dialtone history` (make history): recent conversations from the record, grouped by number.

Read-only: the database is opened with SQLite's mode=ro, never created or migrated.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from dialtone import cli

if TYPE_CHECKING:
    from rich.console import Console

SUMMARY = "recent conversations from the record (--number +1555... --limit 5)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `dialtone history`."""
    parser.add_argument("--db", type=Path, help="the database file (default: DATABASE_PATH)")
    parser.add_argument("--limit", type=int, default=10, help="conversations to show (10)")
    parser.add_argument("--messages", type=int, default=10, help="latest entries per number")
    parser.add_argument("--number", help="only the conversation with this number")


def run(args: argparse.Namespace, console: Console | None = None) -> int:
    """Print the history; the database path comes from --db or DATABASE_PATH."""
    from dialtone.record.history import show_history

    path: Path = args.db or cli.load_settings().database_path
    return show_history(
        path, limit=args.limit, per_number=args.messages, number=args.number, console=console
    )
