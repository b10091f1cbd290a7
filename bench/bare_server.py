"""The ceiling: a bare WSGI app on waitress answering one fixed TwiML string, on WORKERS
processes each with its own SO_REUSEPORT socket like Dialtone's instances, with no signature
check, routing or access log.

python -m bench.bare_server PORT WORKERS THREADS
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from collections.abc import Callable, Iterable
from typing import Any

from waitress.server import create_server

TWIML = (
    b'<?xml version="1.0" encoding="UTF-8"?><Response><Message>Thanks, got it.</Message></Response>'
)
HEADERS = [("Content-Type", "text/xml; charset=utf-8"), ("Content-Length", str(len(TWIML)))]


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Every request: 200 and the same TwiML."""
    start_response("200 OK", HEADERS)
    return [TWIML]


def main() -> None:
    """Serve until SIGTERM."""
    port, workers, threads = (int(arg) for arg in sys.argv[1:4])
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    children = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:
            signal.pthread_sigmask(signal.SIG_SETMASK, set())
            sock = socket.create_server(("127.0.0.1", port), backlog=1024, reuse_port=True)
            create_server(app, sockets=[sock], threads=threads).run()
            os._exit(0)
        children.append(pid)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    for pid in children:
        os.kill(pid, signal.SIGTERM)
        os.waitpid(pid, 0)


if __name__ == "__main__":
    main()
