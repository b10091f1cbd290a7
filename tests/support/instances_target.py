"""A tiny app served by dialtone.web.serving on two instances, run as a process by
tests/web/test_instances.py.

python -m tests.support.instances_target PORT [--fail]

GET /pid answers the instance's pid (also in an X-Pid header); GET /slow says so on stderr,
then answers after SLOW_SECONDS, so a test can stop the server while a request is in flight.
With --fail every instance fails to build its app, with a one-paragraph error.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from dialtone import cli, logs
from dialtone.errors import DialtoneError
from dialtone.settings import Settings
from dialtone.web import serving

SLOW_SECONDS = 0.5


def make_app(fail: bool) -> Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]:
    """The WSGI app, built in each instance."""
    if fail:
        raise DialtoneError(f"This instance (pid {os.getpid()}) was told to fail.")

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ["PATH_INFO"] == "/slow":
            print("slow request started", file=sys.stderr, flush=True)
            time.sleep(SLOW_SECONDS)
        body = str(os.getpid()).encode()
        start_response(
            "200 OK",
            [
                ("Content-Type", "text/plain"),
                ("Content-Length", str(len(body))),
                ("X-Pid", str(os.getpid())),
            ],
        )
        return [body]

    return app


def main() -> int:
    """Serve on 127.0.0.1:PORT with two instances until SIGTERM."""
    logs.configure("INFO")
    # DATABASE_PATH: the tests give each run its own, never the repository's var/.
    database = Path(os.environ.get("DATABASE_PATH") or "var/dialtone.db")
    settings = Settings(port=int(sys.argv[1]), workers=2, threads=2, database_path=database)
    fail = "--fail" in sys.argv
    return serving.serve(settings, lambda: make_app(fail))


if __name__ == "__main__":
    cli.run(main)
