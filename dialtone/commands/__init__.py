"""The `dialtone` command (also `python -m dialtone`): one subcommand per make target.

    dialtone dev | phone | sandbox | serve | restore | webhooks | history | migrate   [--help]

Each subcommand is a module here with `SUMMARY`, `add_arguments(parser)` and `run(args)`. The
modules import what they drive inside `run`, so `dialtone phone` never loads the app or the dev
loop, and `--help` answers at once. This package is the top of the import graph: nothing in
dialtone imports it (the contracts in pyproject.toml say so).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from types import ModuleType

from dialtone import __version__, cli
from dialtone.commands import dev, history, migrate, phone, restore, sandbox, serve, webhooks

COMMANDS: dict[str, ModuleType] = {
    "dev": dev,
    "phone": phone,
    "sandbox": sandbox,
    "serve": serve,
    "restore": restore,
    "webhooks": webhooks,
    "history": history,
    "migrate": migrate,
}


def build_parser() -> argparse.ArgumentParser:
    """The command line: `dialtone COMMAND ...`, one subparser per command."""
    parser = argparse.ArgumentParser(
        prog="dialtone",
        description="Dialtone: a Twilio webhook server, its dev loop and a local sandbox.",
        epilog="`dialtone COMMAND --help` says more about each command.",
    )
    parser.add_argument("--version", action="version", version=f"dialtone {__version__}")
    commands = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    commands.required = True
    for name, module in COMMANDS.items():
        sub = commands.add_parser(
            name,
            help=module.SUMMARY,
            description=module.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Run one command; a user mistake is one paragraph and exit 2 (see `dialtone.cli.run`)."""
    args = build_parser().parse_args(argv)
    cli.run(lambda: args.run(args))
