"""`dialtone migrate` (make migrate): create the record, or bring its schema up to date, and exit.

Every start does the same (the first instance to get there, under a lock), so this is only for a
deployment that wants the step on its own: the migrate unit in deploy/, or a check that the
database is reachable and writable before the instances start.
"""

from __future__ import annotations

import argparse
import sys

from dialtone import cli

SUMMARY = "create or migrate the record (DATABASE_URL or DATABASE_PATH), then exit"
# sysexits.h's EX_TEMPFAIL: the database did not answer (yet); the migrate unit tries again.
# Every other failure (a refused password, a missing privilege, a newer schema) exits 2, which
# the unit does not retry: the same paragraph every 5 s would only fill the journal.
TRY_AGAIN = 75


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`dialtone migrate` takes no options: DATABASE_URL or DATABASE_PATH says where."""


def run(args: argparse.Namespace) -> int:
    """Open the record (which migrates it, or refuses it in one paragraph) and say where it is."""
    from dialtone.record.errors import StoreUnavailable
    from dialtone.record.store import open_store

    settings = cli.load_settings()
    try:
        store = open_store(settings)
    except StoreUnavailable as exc:
        if not exc.transient:  # the server answered no: waiting will not mend it
            raise
        print(f"\n{exc}\n", file=sys.stderr)
        return TRY_AGAIN
    try:
        version = store.schema_version
    finally:
        store.close()
    if settings.database_url:
        from dialtone.record.postgres import describe

        where = describe(settings.database_url)
    else:
        where = str(settings.database_path)
    print(f"The record ({where}) is ready, at schema version {version}.")
    return 0
