"""Who may talk to the inspector: this machine's browser, on the page's own origin, with the token.

- Host must be a loopback name or address with the inspector's port (against DNS rebinding: a
  foreign site's name that resolves to 127.0.0.1 still sends its own name as Host).
- Origin, when the browser sends one, must be the page's own (against cross-site requests).
- Everything but the static files needs the per-run token: the `X-Dialtone-Token` header, or
  `?token=` on a GET (the page's URL and its EventSource cannot set headers).
- A request that changes anything (POST) needs the header and `Content-Type: application/json`,
  which no cross-site form can send without a CORS preflight the inspector never grants.
"""

from __future__ import annotations

import hmac
from ipaddress import ip_address

from bottle import HTTPError, request

from dialtone.devloop.capture import TOKEN_HEADER

LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "127.0.0.1", "[::1]"})
OPEN_PREFIXES = ("/static/", "/favicon.ico")


def split_host(host: str) -> tuple[str, str]:
    """("127.0.0.1", "5050") from "127.0.0.1:5050"; IPv6 keeps its brackets."""
    if host.startswith("["):
        name, _, rest = host.partition("]")
        return name + "]", rest.removeprefix(":")
    name, _, port = host.partition(":")
    return name, port


def is_loopback_host(host: str, port: int) -> bool:
    """True for a Host header naming this machine's loopback interface on `port`."""
    name, given_port = split_host(host.strip().lower())
    if given_port != str(port):
        return False
    if name in LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        return ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


class Guard:
    """A Bottle before_request hook enforcing the rules above for one run's port and token."""

    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.token = token

    def __call__(self) -> None:
        host = request.get_header("Host") or ""
        if not is_loopback_host(host, self.port):
            raise HTTPError(
                403,
                "This page answers only on this machine's loopback address: open the URL "
                "make dev printed.",
            )
        origin = request.get_header("Origin")
        if origin is not None and origin.lower() != f"http://{host.lower()}":
            raise HTTPError(403, "Requests from another site are refused.")
        if request.path.startswith(OPEN_PREFIXES):
            return
        changing = request.method not in ("GET", "HEAD")
        given = request.get_header(TOKEN_HEADER) or ("" if changing else request.query.token)
        if not given or not hmac.compare_digest(given.encode(), self.token.encode()):
            raise HTTPError(
                403, "Missing or wrong token: open the URL make dev printed (it has the token)."
            )
        if changing:
            kind = (request.content_type or "").split(";")[0].strip().lower()
            if kind != "application/json":
                raise HTTPError(415, "Send JSON with Content-Type: application/json.")
