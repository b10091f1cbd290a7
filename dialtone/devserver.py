"""The app process of `make dev`: started, and restarted on every edit, by hupper.

The parent (scripts/dev.py) keeps the tunnel, the sandbox and the number; this child only
serves the app, with settings the parent put in its environment (PUBLIC_URL among them).
"""

from __future__ import annotations

import logging
import signal

from rich.console import Console

from dialtone import logs
from dialtone.console import RequestLogHandler
from dialtone.serving import make_server
from dialtone.settings import Settings


def main() -> None:
    """Serve the app until the reloader stops this process."""
    settings = Settings.from_env()
    logs.configure(settings.log_level)
    root = logging.getLogger()
    root.handlers = [RequestLogHandler(Console(stderr=True))]
    # The request line already shows a rejected signature and the URL it was checked against.
    logging.getLogger("dialtone.signature").setLevel(logging.ERROR)
    logging.getLogger("waitress").setLevel(logging.WARNING)
    # Imported here so that an edit to a route is picked up by the fresh process hupper starts.
    from server import create_app

    server = make_server(create_app(settings), settings)
    signal.signal(signal.SIGTERM, _stop)  # hupper stops a worker with SIGTERM between reloads
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
