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

from bottle import HTTPError, request

from dialtone.devloop.capture import TOKEN_HEADER
from dialtone.sandbox import guard as loopback

OPEN_PREFIXES = ("/static/", "/favicon.ico")
AGAIN = " Open the URL make dev printed below its banner, whole."


def split_host(host: str) -> tuple[str, str]:
    """("127.0.0.1", "5050") from "127.0.0.1:5050"; IPv6 keeps its brackets."""
    if host.startswith("["):
        name, _, rest = host.partition("]")
        return name + "]", rest.removeprefix(":")
    name, _, port = host.partition(":")
    return name, port


def is_loopback_host(host: str, port: int) -> bool:
    """True for a Host header naming this machine's loopback interface on `port`."""
    return loopback.is_loopback_host(host) and split_host(host.strip().lower())[1] == str(port)


class Guard:
    """A Bottle before_request hook enforcing the rules above for one run's port and token.

    Host, Origin and the client's address are checked as the sandbox checks them
    (dialtone.sandbox.guard), so every page Dialtone serves follows the same rules."""

    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.token = token

    def __call__(self) -> None:
        environ = request.environ
        reason = loopback.refusal(environ)
        if reason is None and not is_loopback_host(environ.get("HTTP_HOST") or "", self.port):
            reason = "This page answers only on the address and port make dev printed."
        if reason is not None:
            raise HTTPError(403, reason + AGAIN)
        if request.path.startswith(OPEN_PREFIXES):
            return
        changing = request.method not in ("GET", "HEAD")
        given = request.get_header(TOKEN_HEADER) or ("" if changing else request.query.token)
        if not given or not hmac.compare_digest(given.encode(), self.token.encode()):
            raise HTTPError(403, "Missing or wrong token." + AGAIN + " (It has the token.)")
        if changing and (reason := loopback.json_only(environ)) is not None:
            raise HTTPError(415, reason)
