"""A tiny app served by dialtone.web.prefork, run as a process by test_prefork.py.

python -m tests.support.prefork_target PORT [--fail]

GET /pid answers the worker's pid; GET /slow says so on stderr, then answers after SLOW_SECONDS,
so a test can stop the server while a request is in flight. With --fail every worker fails to
build its app.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from dialtone import cli, logs
from dialtone.settings import Settings
from dialtone.web import prefork

SLOW_SECONDS = 0.5


def make_app(fail: bool) -> Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]:
    """The WSGI app, built in each worker."""
    if fail:
        raise RuntimeError("this worker was told to fail")

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ["PATH_INFO"] == "/slow":
            print("slow request started", file=sys.stderr, flush=True)
            time.sleep(SLOW_SECONDS)
        body = str(os.getpid()).encode()
        start_response(
            "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
        )
        return [body]

    return app


def main() -> int:
    """Serve on 127.0.0.1:PORT with two workers until SIGTERM."""
    logs.configure("INFO")
    # DATABASE_PATH: test_prefork gives each run its own, never the repository's var/.
    database = Path(os.environ.get("DATABASE_PATH") or "var/dialtone.db")
    settings = Settings(port=int(sys.argv[1]), workers=2, threads=2, database_path=database)
    fail = "--fail" in sys.argv
    return prefork.serve(settings, lambda: make_app(fail))


if __name__ == "__main__":
    cli.run(main)
