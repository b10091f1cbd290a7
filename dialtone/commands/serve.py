"""`dialtone serve` (make serve): serve the app on waitress until SIGTERM or Ctrl-C.

HOST, PORT, WORKERS and the rest come from .env or the environment (see .env.example).
"""

from __future__ import annotations

import argparse

SUMMARY = "serve the app on waitress (HOST, PORT, WORKERS from .env or the environment)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`dialtone serve` takes no options: the settings say everything."""


def run(args: argparse.Namespace) -> int:
    """Serve the app (dialtone.app.main)."""
    from dialtone.app import main

    return main()
