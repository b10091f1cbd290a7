"""Serving the app on waitress: `serve(settings, make_app)` is what every entry point calls.

One process is one instance: it binds HOST:PORT, serves until SIGTERM or Ctrl-C and stops
gracefully (dialtone.web.graceful). Several instances share a port on one machine with
REUSE_PORT=true (SO_REUSEPORT: one listening socket each, the kernel spreads the connections),
started by systemd (deploy/dialtone@.service) or by `WORKERS=N` (dialtone.web.instances, POSIX
only, imported only then). Several machines sit behind a load balancer.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import warnings
from collections.abc import Callable
from typing import Any

from waitress.adjustments import Adjustments
from waitress.server import create_server

from dialtone.errors import DialtoneError
from dialtone.settings import Settings
from dialtone.web import graceful
from dialtone.web.accesslog import AccessLog, WSGIApp
from dialtone.web.connections import ConnectionWatch, ensure_file_limit, waitress_limits

log = logging.getLogger("dialtone.web.serving")

# Output buffered before the serving loop sends it: more than a webhook's whole answer.
SEND_BYTES = 18000
# The headers a tunnel or TLS-terminating proxy adds; trusted only from TRUSTED_PROXY.
PROXY_HEADERS = {"x-forwarded-proto", "x-forwarded-host", "x-forwarded-for", "x-forwarded-port"}
BACKLOG = 1024  # waitress's own default


class PortInUse(DialtoneError):
    """HOST:PORT is already taken by another process."""


class CannotListen(DialtoneError):
    """HOST:PORT cannot be listened on: not an address of this machine, a privileged port."""


class NoReusePort(DialtoneError):
    """Sharing a port between instances needs what this system lacks (SO_REUSEPORT, fork)."""


def port_in_use(settings: Settings) -> PortInUse:
    """The one-paragraph error for a taken HOST:PORT."""
    return PortInUse(
        f"Port {settings.port} on {settings.host} is already in use, probably by another "
        f"Dialtone or dev server. Stop it, or pick another port: PORT=5050 make ..."
    )


def cannot_listen(settings: Settings, exc: Exception) -> DialtoneError | None:
    """The one-paragraph error for a bind that failed by a setting's fault, else None."""
    where = f"{settings.host}:{settings.port}"
    if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
        return port_in_use(settings)
    if isinstance(exc, OSError) and exc.errno == errno.EACCES:
        return CannotListen(
            f"Listening on {where} is not allowed: ports below 1024 need root. Use a higher "
            "PORT (5000) behind a proxy that listens on 80 and 443 (see docs/deployment.md)."
        )
    if isinstance(exc, OSError) and exc.errno == errno.EADDRNOTAVAIL:
        return CannotListen(
            f"HOST={settings.host} is not an address of this machine, so nothing can listen on "
            "it. Use 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)."
        )
    if isinstance(exc, socket.gaierror | ValueError):  # waitress: "Invalid host/port specified."
        return CannotListen(
            f"HOST={settings.host} is not a name or address this machine can resolve. Use "
            "127.0.0.1 (this machine only) or 0.0.0.0 (every interface)."
        )
    return None


def waitress_options(settings: Settings) -> dict[str, Any]:
    """The waitress adjustments Dialtone serves with."""
    options: dict[str, Any] = {
        "threads": settings.threads,
        "max_request_body_size": settings.max_body_bytes,
        "ident": "dialtone",
        "clear_untrusted_proxy_headers": True,
        **waitress_limits(settings),
    }
    if hasattr(Adjustments, "send_bytes"):
        # waitress's default (1) has the task thread send the headers and the body of every
        # answer in two send() calls as they are written; above a whole answer, the serving
        # loop sends them together in one. Measured with make bench's webhooks: about 100 us
        # less CPU per request (most of it system time) and 25% more requests per second.
        # waitress 3 deprecates the option (it warns); without it, its default applies.
        options["send_bytes"] = SEND_BYTES
    if settings.trusted_proxy:
        options.update(
            trusted_proxy=settings.trusted_proxy,
            trusted_proxy_count=settings.trusted_proxy_count,
            trusted_proxy_headers=PROXY_HEADERS,
        )
    return options


def make_server(
    app: WSGIApp, settings: Settings, *, sockets: list[socket.socket] | None = None
) -> Any:
    """A waitress server for `app` (wrapped in the access log), bound and ready to `run()`."""
    options = waitress_options(settings)
    if not sockets and settings.reuse_port:
        sockets = [bind_socket(settings, reuse_port=True)]
    if sockets:
        options["sockets"] = sockets
    else:
        options.update(host=settings.host, port=settings.port)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "send_bytes", DeprecationWarning)
            return create_server(AccessLog(app), **options)
    except (OSError, ValueError) as exc:
        if (error := cannot_listen(settings, exc)) is not None:
            raise error from None
        raise


def reuse_port_supported() -> bool:
    """True where several sockets can listen on one port (SO_REUSEPORT; not Windows)."""
    return os.name == "posix" and hasattr(socket, "SO_REUSEPORT")


def require_reuse_port() -> None:
    """NoReusePort for REUSE_PORT=true where the system cannot share a port."""
    if not reuse_port_supported():
        raise NoReusePort(
            "REUSE_PORT=true needs several processes listening on one port (SO_REUSEPORT), "
            "which this system does not have. Set REUSE_PORT=false, and run more instances on "
            "other ports or machines behind a load balancer."
        )


def require_instances(settings: Settings) -> None:
    """NoReusePort, in one line, where WORKERS > 1 cannot run (dialtone.web.instances needs
    fork(), sigtimedwait() and SO_REUSEPORT)."""
    missing = [
        name
        for name, present in (
            ("fork()", hasattr(os, "fork")),
            ("sigtimedwait()", hasattr(signal, "sigtimedwait")),
            ("SO_REUSEPORT", reuse_port_supported()),
        )
        if not present
    ]
    if missing:
        raise NoReusePort(
            f"WORKERS={settings.workers} needs {', '.join(missing)}, which this system does not "
            "have: serve with WORKERS=1 here, and run more instances on other ports or machines "
            "behind a load balancer."
        )


def bind_socket(settings: Settings, *, reuse_port: bool) -> socket.socket:
    """A listening TCP socket on HOST:PORT; with `reuse_port`, shareable with other instances."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            settings.host, settings.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise cannot_listen(settings, exc) or exc from None
    sock = socket.socket(family, kind, proto)
    try:
        if os.name == "posix":  # on Windows SO_REUSEADDR would let another program steal it
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        if (error := cannot_listen(settings, exc)) is not None:
            raise error from None
        raise
    return sock


def serve(
    settings: Settings,
    make_app: Callable[[], WSGIApp],
    *,
    close_app: Callable[[WSGIApp], None] | None = None,
) -> int:
    """Serve `make_app()` until SIGTERM or Ctrl-C, on one instance or WORKERS; the exit code."""
    if settings.workers > 1:
        require_instances(settings)
        from dialtone.web import instances  # POSIX only: imported only here

        return instances.run(settings, make_app, close_app)
    return serve_one(settings, make_app, close_app=close_app)


def serve_one(
    settings: Settings,
    make_app: Callable[[], WSGIApp],
    *,
    close_app: Callable[[WSGIApp], None] | None = None,
    ready: Callable[[], None] | None = None,
) -> int:
    """This process as one instance: build the app, serve it, stop gracefully; 0."""
    if settings.reuse_port:
        require_reuse_port()
    ensure_file_limit(settings)
    app = make_app()
    try:
        server = make_server(app, settings)
        host = getattr(server, "effective_host", settings.host)
        port = getattr(server, "effective_port", settings.port)
        shared = ", sharing the port" if settings.reuse_port else ""

        def started() -> None:
            log.info(
                "Dialtone listening on http://%s:%s (pid %d%s)", host, port, os.getpid(), shared
            )
            if ready is not None:
                ready()

        # SIGTERM (systemd stop) and Ctrl-C: finish the requests in flight, then return.
        watch = ConnectionWatch(server, settings.request_timeout, settings.connection_limit)
        graceful.serve_until_signalled(server, tick=watch, started=started)
    finally:
        if close_app is not None:
            # Every request has been answered and its write committed.
            close_app(app)
    log.info("Stopped (pid %d).", os.getpid())
    return 0
