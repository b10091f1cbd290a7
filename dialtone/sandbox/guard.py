"""WSGI middleware for servers that only a browser or tool on this machine may use.

A page on any web site can make a browser send requests to a server on loopback: by DNS
rebinding (a name the attacker controls that resolves to 127.0.0.1, so the Host header names the
attacker's domain) or by a plain cross-site request (the Origin header names the attacker's
site). `LoopbackGuard` refuses both with a 403 and a plain-text reason before the app sees them:

- the Host header must be a loopback name or address: `localhost`, 127.0.0.0/8 or `::1`, with
  any port (a missing Host is refused too);
- an Origin header, when present, must be the server's own origin: http(s) plus the same Host;
- the client must connect from a loopback address.

    app = LoopbackGuard(app)             # around the whole WSGI app, outermost

Anything that changes state should also insist on `application/json` (`json_only`), so that a
cross-site form post or `text/plain` request is refused even by a browser that sends no Origin.
Dialtone's sandbox (REST and phone API) uses both; any page Dialtone serves later follows the
same rules (docs/sandbox-fidelity.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from ipaddress import ip_address
from typing import Any
from urllib.parse import urlsplit

from dialtone.loopback import is_loopback_name

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def is_loopback_host(host: str) -> bool:
    """True for a Host header value naming this machine: localhost, 127.0.0.0/8 or ::1 (any port)."""
    host = host.strip().lower()
    if host.startswith("["):  # [::1]:8080
        name, _, rest = host[1:].partition("]")
        if rest and not (rest.startswith(":") and rest[1:].isdigit()):
            return False
    else:
        name, _, port = host.partition(":")
        if port and not port.isdigit():
            return False
    return is_loopback_name(name)


def refusal(environ: dict[str, Any]) -> str | None:
    """Why a request must be refused (Host, Origin, client address), or None to let it through."""
    try:
        client_ok = ip_address(environ.get("REMOTE_ADDR") or "").is_loopback
    except ValueError:
        client_ok = False
    if not client_ok:
        return "This server answers clients on this machine (loopback) only."
    host = environ.get("HTTP_HOST") or ""
    if not is_loopback_host(host):
        return f"The Host header {host!r} is not a loopback name or address (DNS rebinding?)."
    origin = environ.get("HTTP_ORIGIN")
    if origin is not None:
        parts = urlsplit(origin)
        own = parts.scheme in ("http", "https") and parts.netloc.lower() == host.strip().lower()
        if not own or parts.path not in ("", "/"):
            return f"The Origin {origin!r} is not this server's own origin (cross-site request?)."
    return None


def json_only(environ: dict[str, Any]) -> str | None:
    """Why a state-changing request must be refused for its Content-Type, or None if it is JSON."""
    media_type = (environ.get("CONTENT_TYPE") or "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        return "Requests that change something must be sent as application/json."
    return None


class LoopbackGuard:
    """Refuse (403, plain text) requests from elsewhere, for another Host, or another Origin."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        reason = refusal(environ)
        if reason is None:
            return self.app(environ, start_response)
        return forbidden(reason, start_response)


def forbidden(reason: str, start_response: StartResponse) -> list[bytes]:
    """A plain-text 403 with `reason`."""
    body = (reason + "\n").encode("utf-8")
    headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
    start_response("403 Forbidden", headers)
    return [body]
