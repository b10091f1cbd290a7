"""What every entry point shares: `.env` loading and turning user mistakes into one paragraph."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from dotenv import load_dotenv

from dialtone.errors import DialtoneError
from dialtone.settings import Settings


def load_settings(env_file: Path | None = None) -> Settings:
    """Load `.env` (variables already set in the environment win) and read the settings."""
    load_dotenv(env_file or Path.cwd() / ".env", override=False)
    return Settings.from_env()


def run(main: Callable[[], int | None]) -> None:
    """Run an entry point: a DialtoneError is printed as a paragraph and exits 2, no traceback."""
    try:
        code = main()
    except DialtoneError as exc:
        print(f"\n{exc}\n", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(code or 0)
