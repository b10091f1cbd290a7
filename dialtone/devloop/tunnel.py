"""The ngrok tunnel behind `make dev`, driven by pyngrok, with ngrok's failures turned into advice.

`open_tunnel(port, authtoken=...)` starts the ngrok agent through pyngrok (which downloads ngrok on
first use, to ~/.config/ngrok/ngrok on Linux), opens an https endpoint to the local port and
returns a `Tunnel`; `Tunnel.close()` closes it and stops the agent. Every way this can fail is a
`TunnelError` whose message says what happened and what to do, with `--public-url URL` as the way
round ngrok altogether.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from dataclasses import dataclass, field
from types import TracebackType

from pyngrok import conf, ngrok
from pyngrok.exception import (
    PyngrokError,
    PyngrokNgrokError,
    PyngrokNgrokHTTPError,
    PyngrokNgrokInstallError,
    PyngrokNgrokURLError,
)

from dialtone.errors import DialtoneError

log = logging.getLogger("dialtone.devloop.tunnel")

PUBLIC_URL_HINT = (
    "Or skip ngrok: run with --public-url URL to use any other tunnel (cloudflared, ssh -R, ...) "
    "or a public host."
)
AUTH_SETUP_URL = "https://dashboard.ngrok.com/get-started/your-authtoken"

# ngrok's error codes (https://ngrok.com/docs/errors/) that Dialtone explains itself.
AUTHTOKEN_CODES = {"ERR_NGROK_4018", "ERR_NGROK_105", "ERR_NGROK_107"}
SESSION_LIMIT_CODE = "ERR_NGROK_108"
DOMAIN_CODES = {"ERR_NGROK_319", "ERR_NGROK_320", "ERR_NGROK_334"}

ERROR_CODE_RE = re.compile(r"ERR_NGROK_\d+")
DOMAIN_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]*[a-z0-9])?\.)+[a-z]{2,63}$")
UNREACHABLE_RE = re.compile(r"failed to dial|no such host|connection refused|i/o timeout", re.I)


class TunnelError(DialtoneError):
    """The ngrok tunnel could not be opened; the message says why and what to do."""


class NgrokAuthtokenError(TunnelError):
    """NGROK_AUTHTOKEN is missing, or ngrok refused it (ERR_NGROK_4018, 105, 107)."""


class NgrokSessionLimit(TunnelError):
    """Another ngrok agent session is already running on the account (ERR_NGROK_108)."""


class NgrokNotInstalled(TunnelError):
    """The ngrok binary is missing and pyngrok could not download it (usually: offline)."""


class NgrokDomainError(TunnelError):
    """NGROK_DOMAIN is malformed, not reserved on this account, or already in use."""


class NgrokUnreachable(TunnelError):
    """The ngrok agent started but could not reach ngrok's servers."""


_open: set[Tunnel] = set()
_open_lock = threading.Lock()


@dataclass(eq=False)
class Tunnel:
    """An open ngrok tunnel to a local port; `close()` ends it and stops the ngrok agent."""

    public_url: str  # https://<name>.ngrok-free.app or https://NGROK_DOMAIN, no trailing slash
    port: int  # the local port it forwards to
    inspector_url: str  # ngrok's local web inspector and agent API, http://127.0.0.1:4040 usually
    _config: conf.PyngrokConfig = field(repr=False)
    _closed: bool = field(default=False, repr=False)

    @property
    def closed(self) -> bool:
        """True once `close()` has run."""
        return self._closed

    def close(self) -> None:
        """Close the tunnel and stop the ngrok agent; safe to call more than once."""
        with _open_lock:
            if self._closed:
                return
            self._closed = True
            _open.discard(self)
        try:
            ngrok.disconnect(self.public_url, pyngrok_config=self._config)
        except (PyngrokError, OSError) as exc:
            # The agent may already be gone (Ctrl-C and SIGTERM reach it too: it shares our
            # process group) or stuck; kill() below stops it either way.
            log.debug("closing the ngrok tunnel: %s", exc)
        ngrok.kill(pyngrok_config=self._config)
        log.debug("ngrok tunnel %s closed and the agent stopped", self.public_url)

    def __enter__(self) -> Tunnel:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def open_tunnel(
    port: int,
    *,
    authtoken: str | None,
    domain: str | None = None,
    ngrok_path: str | os.PathLike[str] | None = None,
    config_path: str | os.PathLike[str] | None = None,
    startup_timeout: int = 15,
) -> Tunnel:
    """Start ngrok and open an https tunnel to `port` on this machine; TunnelError if it can't.

    `domain` is a reserved ngrok domain (NGROK_DOMAIN); `ngrok_path` an ngrok binary to use instead
    of pyngrok's own (NGROK_PATH); `config_path` an ngrok config file instead of ngrok's default.
    """
    if not authtoken:
        raise NgrokAuthtokenError(
            "NGROK_AUTHTOKEN is not set, and ngrok needs it to open a tunnel. Sign up for a free "
            f"account at https://dashboard.ngrok.com/signup, copy your authtoken from {AUTH_SETUP_URL} "
            f"and put NGROK_AUTHTOKEN=<your token> in .env. {PUBLIC_URL_HINT}"
        )
    host = normalise_domain(domain) if domain else None
    config = conf.PyngrokConfig(
        ngrok_path=os.fspath(ngrok_path) if ngrok_path else None,
        config_path=os.fspath(config_path) if config_path else None,
        auth_token=authtoken,
        startup_timeout=startup_timeout,
    )
    # pyngrok 9 speaks ngrok's v3 endpoints API: the endpoint's `url` picks the scheme and domain.
    # Without one, ngrok gives an http upstream a random https URL; `bind_tls` would become a
    # v2 `schemes` field that v3 endpoints do not have.
    options = {"url": f"https://{host}"} if host else {}
    try:
        opened = ngrok.connect(str(port), "http", pyngrok_config=config, **options)
    except PyngrokError as exc:
        ngrok.kill(pyngrok_config=config)
        raise explain(exc, ngrok_path=config.ngrok_path, domain=host, authtoken=authtoken) from None
    except OSError as exc:
        ngrok.kill(pyngrok_config=config)
        raise TunnelError(
            f"Dialtone could not run ngrok at {config.ngrok_path} ({exc.strerror or exc}). "
            "Check that it is the ngrok program for this machine and is executable, or delete it "
            f"so pyngrok downloads a fresh copy. {PUBLIC_URL_HINT}"
        ) from None
    public_url = (opened.public_url or "").rstrip("/")
    if not public_url.startswith("https://"):
        ngrok.kill(pyngrok_config=config)
        raise TunnelError(
            f"ngrok opened {public_url or 'a tunnel without a URL'} instead of an https URL, and "
            "Twilio only calls https webhooks. Check the endpoints in your ngrok config file. "
            + PUBLIC_URL_HINT
        )
    tunnel = Tunnel(public_url, port, opened.api_url or "http://127.0.0.1:4040", config)
    with _open_lock:
        _open.add(tunnel)
    log.debug("ngrok tunnel %s -> localhost:%s", public_url, port)
    return tunnel


def close_all() -> None:
    """Close every tunnel `open_tunnel` opened and stop their ngrok agents (exit paths, tests)."""
    with _open_lock:
        tunnels = list(_open)
    for tunnel in tunnels:
        tunnel.close()


def normalise_domain(domain: str) -> str:
    """`https://Demo.ngrok.app/` -> `demo.ngrok.app`; NgrokDomainError if it is not a hostname."""
    host = re.sub(r"^[a-z]+://", "", domain.strip().lower()).rstrip("/")
    if not DOMAIN_RE.match(host):
        raise NgrokDomainError(
            f"NGROK_DOMAIN={domain!r} is not a domain name. Set it to the domain you reserved at "
            "https://dashboard.ngrok.com/domains, like dialtone-demo.ngrok.app, or leave it empty "
            "for a random URL."
        )
    return host


def explain(
    exc: PyngrokError,
    *,
    ngrok_path: str,
    domain: str | None = None,
    authtoken: str | None = None,
) -> TunnelError:
    """The TunnelError for a pyngrok failure: what happened and what to do, never a traceback."""
    if isinstance(exc, PyngrokNgrokInstallError):
        return NgrokNotInstalled(
            f"The ngrok program is not at {ngrok_path} and pyngrok could not download it "
            f"({_redact(_first_line(str(exc)), authtoken)}). Are you offline? Connect once so "
            "pyngrok can fetch ngrok (it keeps it there for next time), or install ngrok yourself "
            f"and set NGROK_PATH to it. {PUBLIC_URL_HINT}"
        )
    detail = _redact(ngrok_detail(exc), authtoken)
    match = ERROR_CODE_RE.search(detail)
    code = match.group(0) if match else None
    log.debug("ngrok failed: %s", detail)
    if code == "ERR_NGROK_4018":
        return NgrokAuthtokenError(
            "ngrok refused to start without a verified account and authtoken (ERR_NGROK_4018). "
            f"Check that NGROK_AUTHTOKEN in .env is the token shown at {AUTH_SETUP_URL} and that your "
            f"ngrok account's email address is verified. {PUBLIC_URL_HINT}"
        )
    if code in AUTHTOKEN_CODES:
        return NgrokAuthtokenError(
            f"ngrok rejected NGROK_AUTHTOKEN as invalid ({code}): it may have been reset or "
            f"mistyped. Copy it again from {AUTH_SETUP_URL} into .env. {PUBLIC_URL_HINT}"
        )
    if code == SESSION_LIMIT_CODE:
        return NgrokSessionLimit(
            "Another ngrok agent is already running on your ngrok account (ERR_NGROK_108), and "
            "the free plan allows one at a time. Stop it and try again: on this machine "
            "`pgrep -a ngrok` finds it (stop that `make dev` or `ngrok`, or `kill` the pid); "
            "elsewhere, see https://dashboard.ngrok.com/agents. Or keep it and run with "
            "--public-url URL set to the tunnel it already serves."
        )
    if code in DOMAIN_CODES:
        return NgrokDomainError(_domain_advice(code, domain))
    summary = _first_line(detail) or "no reason given"
    if UNREACHABLE_RE.search(detail):
        return NgrokUnreachable(
            f"ngrok started but could not reach ngrok's servers ({summary}). Are you offline or "
            "behind a firewall that blocks connect.ngrok-agent.com? Check the connection and try "
            f"again, or use the local sandbox (no Twilio credentials needed). {PUBLIC_URL_HINT}"
        )
    if isinstance(exc, PyngrokNgrokURLError):
        return TunnelError(
            f"The ngrok agent stopped answering on its local API ({summary}). Try again; if it "
            f"keeps happening, run with LOG_LEVEL=DEBUG to see ngrok's log. {PUBLIC_URL_HINT}"
        )
    more = f" See https://ngrok.com/docs/errors/{code.lower()}." if code else ""
    return TunnelError(
        f"ngrok could not open the tunnel: {summary}{more} Run with LOG_LEVEL=DEBUG to see "
        f"ngrok's own log. {PUBLIC_URL_HINT}"
    )


def ngrok_detail(exc: PyngrokError) -> str:
    """ngrok's own error text inside a pyngrok exception, with its escapes turned into newlines."""
    text = ""
    if isinstance(exc, PyngrokNgrokHTTPError):
        # The agent API answers {"error_code", "status_code", "msg", "details": {"err": ...}}.
        try:
            body = json.loads(exc.body)
        except ValueError:
            body = None
        if isinstance(body, dict):
            details = body.get("details")
            err = details.get("err") if isinstance(details, dict) else None
            text = str(err or body.get("msg") or "")
        text = text or exc.body or str(exc)
    elif isinstance(exc, PyngrokNgrokError) and exc.ngrok_error:
        text = exc.ngrok_error
    else:
        text = str(exc)
    # Startup errors come from ngrok's log line, where newlines are still written as \n.
    return text.replace("\\r\\n", "\n").replace("\\n", "\n").replace("\r\n", "\n").strip()


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines()]
    useful = [line for line in lines if line and not ERROR_CODE_RE.fullmatch(line)]
    return useful[0].rstrip(".") if useful else ""


def _redact(text: str, secret: str | None) -> str:
    return text.replace(secret, "(hidden)") if secret else text


def _domain_advice(code: str, domain: str | None) -> str:
    shown = f"https://{domain}" if domain else "the domain in your ngrok config"
    if code == "ERR_NGROK_334":
        return (
            f"{shown} is already online in another ngrok agent (ERR_NGROK_334). Stop that agent "
            "(`pgrep -a ngrok` finds one on this machine) and try again, or run with "
            f"--public-url {shown} to use it as it is."
        )
    if code == "ERR_NGROK_320":
        why = "is reserved by a different ngrok account than the one NGROK_AUTHTOKEN belongs to"
    else:
        why = "is not reserved on the ngrok account NGROK_AUTHTOKEN belongs to"
    return (
        f"ngrok would not open {shown}: that domain {why} ({code}). Check NGROK_DOMAIN for typos "
        "and compare it with https://dashboard.ngrok.com/domains (a free account gets one static "
        "domain), or remove NGROK_DOMAIN from .env to get a random URL."
    )
