"""Dialtone's exceptions: each one is a mistake a user can fix, with a message that says how."""

from __future__ import annotations


class DialtoneError(Exception):
    """Base class: entry points print these as one paragraph and exit non-zero, no traceback."""


class SettingsError(DialtoneError):
    """One or more settings are invalid; `problems` lists every one of them."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {problem}" for problem in self.problems)
        super().__init__(
            f"Dialtone's configuration has {len(self.problems)} problem(s); "
            f"fix them in .env or the environment:\n{lines}"
        )
