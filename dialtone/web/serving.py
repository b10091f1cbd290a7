"""Serving the app on waitress, with the proxy settings that keep signatures valid."""

from __future__ import annotations

import errno
import logging
import socket
import warnings
from typing import Any

from waitress.adjustments import Adjustments
from waitress.server import create_server

from dialtone.errors import DialtoneError
from dialtone.settings import Settings
from dialtone.web.accesslog import AccessLog, WSGIApp

log = logging.getLogger("dialtone.web.serving")

# The headers a tunnel or TLS-terminating proxy adds; trusted only from TRUSTED_PROXY.
# Output buffered before the serving loop sends it: more than a webhook's whole answer.
SEND_BYTES = 18000

PROXY_HEADERS = {"x-forwarded-proto", "x-forwarded-host", "x-forwarded-for", "x-forwarded-port"}


class PortInUse(DialtoneError):
    """HOST:PORT is already taken by another process."""


def port_in_use(settings: Settings) -> PortInUse:
    """The one-paragraph error for a taken HOST:PORT."""
    return PortInUse(
        f"Port {settings.port} on {settings.host} is already in use, probably by another "
        f"Dialtone or dev server. Stop it, or pick another port: PORT=5050 make ..."
    )


def waitress_options(settings: Settings) -> dict[str, Any]:
    """The waitress adjustments Dialtone serves with."""
    options: dict[str, Any] = {
        "threads": settings.threads,
        "max_request_body_size": settings.max_body_bytes,
        "ident": "dialtone",
        "clear_untrusted_proxy_headers": True,
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
    if sockets:
        options["sockets"] = sockets
    else:
        options.update(host=settings.host, port=settings.port)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "send_bytes", DeprecationWarning)
            return create_server(AccessLog(app), **options)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise port_in_use(settings) from None
        raise
