"""Call an app's webhook the way Twilio does, and turn the answer into a TwiML document.

Form-encoded UTF-8 parameters (in the query string for GET), `X-Twilio-Signature` from twilio's
own RequestValidator, Twilio's User-Agent and idempotency header; 10 s to connect and 15 s in all;
HTTP redirects followed (at most 10); a failure reported with Twilio's code, and the fallback URL
tried when one is configured, with ErrorCode and ErrorUrl added as Twilio adds them.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit

from twilio.request_validator import RequestValidator

from dialtone.sandbox.carrier import twiml
from dialtone.sandbox.carrier.overrides import split_overrides
from dialtone.sandbox.carrier.webhook_errors import Notice, TwilioFailure, failure
from dialtone.untrusted import printable

USER_AGENT = "TwilioProxy/1.1"
MAX_BODY = 64 * 1024  # 11750 beyond this
MAX_HTTP_REDIRECTS = 10  # 11215 beyond this
TWIML_TYPES = ("text/xml", "application/xml", "text/html")


@dataclass(frozen=True)
class Hook:
    """Where a webhook goes: URL and method, and the fallback Twilio tries when it fails."""

    url: str
    method: str = "POST"
    fallback_url: str | None = None
    fallback_method: str = "POST"


@dataclass(frozen=True)
class Answer:
    """An HTTP answer: the URL that gave it (after redirects), status, Content-Type and body."""

    url: str
    status: int
    content_type: str
    body: bytes


ERROR_TEXT_CHARS = 300  # of a plain-text error answer, shown with the 11200 notice


def answered_text(answer: Answer) -> str:
    """A plain-text error answer's words (a server's reason, such as the dev loop's "the app
    cannot start: ..."), escaped and cut short; "" for HTML and anything else."""
    if not answer.content_type.lower().startswith("text/plain"):
        return ""
    text = " ".join(answer.body.decode("utf-8", "replace").split())
    return printable(text, ERROR_TEXT_CHARS)


@dataclass(frozen=True)
class Fetched:
    """A usable TwiML document, and the notices collected on the way (a failed primary URL...)."""

    document: twiml.Document
    notices: tuple[Notice, ...] = ()


@dataclass
class WebhookClient:
    """Sends Twilio-shaped, signed webhook requests; one per sandbox, shared by calls (stateless)."""

    auth_token: str = field(repr=False)
    connect_timeout: float = 10.0
    total_timeout: float = 15.0
    user_agent: str = USER_AGENT

    def send(self, url: str, params: Mapping[str, str], method: str = "POST") -> Answer:
        """One webhook request, following HTTP redirects and the URL's connection overrides
        (`#ct=...&rc=...`, never sent nor signed); raises TwilioFailure on any failure."""
        url, overrides = split_overrides(url)
        timeouts = (
            overrides.connect_timeout or self.connect_timeout,
            overrides.total_timeout or self.total_timeout,
        )
        for attempt in range(overrides.retries + 1):
            try:
                return self._follow(url, params, method.upper(), timeouts)
            except TwilioFailure as exc:
                if attempt == overrides.retries or not overrides.retry_on(exc):
                    raise
        raise AssertionError("unreachable")  # the last attempt returns or raises

    def _follow(
        self, url: str, params: Mapping[str, str], method: str, timeouts: tuple[float, float]
    ) -> Answer:
        for _ in range(MAX_HTTP_REDIRECTS + 1):
            answer, location = self._send_once(url, params, method, timeouts)
            if location is None:
                if not 200 <= answer.status < 300:
                    said = answered_text(answer)
                    message = f"the server answered HTTP {answer.status}" + (
                        f": {said}" if said else ""
                    )
                    exc = failure(11200, message, url)
                    exc.http_status = answer.status
                    raise exc
                return answer
            url = urljoin(url, location)
        raise failure(11215, f"more than {MAX_HTTP_REDIRECTS} HTTP redirects in a row", url)

    def fetch_twiml(self, hook: Hook, params: Mapping[str, str], kind: twiml.Kind) -> Fetched:
        """Request `hook` and parse its TwiML, trying the fallback URL if the primary fails."""
        try:
            return self._fetch_one(hook.url, params, hook.method, kind)
        except TwilioFailure as primary:
            if not hook.fallback_url:
                raise
            extra = {"ErrorCode": str(primary.notice.code or ""), "ErrorUrl": hook.url}
            try:
                fetched = self._fetch_one(
                    hook.fallback_url, {**params, **extra}, hook.fallback_method, kind
                )
            except TwilioFailure as fallback:
                raise TwilioFailure(fallback.notice, (primary.notice,)) from None
            notices = (primary.notice, *fetched.notices)
            return Fetched(fetched.document, notices)

    def _fetch_one(
        self, url: str, params: Mapping[str, str], method: str, kind: twiml.Kind
    ) -> Fetched:
        answer = self.send(url, params, method)
        document = to_document(answer, kind)
        return Fetched(document, document.warnings)

    def _send_once(
        self, url: str, params: Mapping[str, str], method: str, timeouts: tuple[float, float]
    ) -> tuple[Answer, str | None]:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise failure(11100, "the URL is not an absolute http(s) URL", url)
        body: bytes | None = None
        validator = RequestValidator(self.auth_token)
        if method == "GET":
            query = "&".join(q for q in (parts.query, urlencode(params)) if q)
            url = urlunsplit(parts._replace(query=query, fragment=""))
            signature = validator.compute_signature(url, {})
        else:
            body = urlencode(params).encode("utf-8")
            signature = validator.compute_signature(url, dict(params))
        headers = {
            "User-Agent": self.user_agent,
            "X-Twilio-Signature": signature,
            "I-Twilio-Idempotency-Token": str(uuid.uuid4()),
            "Accept": "*/*",
        }
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        return self._exchange(url, method, body, headers, timeouts)

    def _exchange(
        self,
        url: str,
        method: str,
        body: bytes | None,
        headers: dict[str, str],
        timeouts: tuple[float, float],
    ) -> tuple[Answer, str | None]:
        split = urlsplit(url)
        target = urlunsplit(("", "", split.path or "/", split.query, ""))
        connect_timeout, total_timeout = timeouts
        deadline = time.monotonic() + total_timeout
        cls = http.client.HTTPSConnection if split.scheme == "https" else http.client.HTTPConnection
        conn = cls(split.hostname or "", split.port, timeout=connect_timeout)
        watchdog: threading.Timer | None = None
        try:
            _connect(conn, url)
            sock = conn.sock
            assert sock is not None
            sock.settimeout(_remaining(deadline))
            # A server that trickles bytes would reset a per-read timeout forever: the watchdog
            # shuts the socket at the deadline, so 15 s is 15 s for the whole exchange.
            watchdog = threading.Timer(_remaining(deadline), _abort, (sock,))
            watchdog.daemon = True
            watchdog.start()
            conn.request(method, target, body=body, headers=headers)
            response = conn.getresponse()
            data = bytearray()
            while chunk := response.read(8192):
                data += chunk
                if len(data) > MAX_BODY:
                    raise failure(11750, f"the answer is larger than {MAX_BODY // 1024} kB", url)
            if time.monotonic() >= deadline:
                raise TimeoutError
        except TwilioFailure:
            raise
        except TimeoutError:
            raise failure(11205, f"no complete answer within {total_timeout:g} s", url) from None
        except ssl.SSLError as exc:
            raise failure(11220, f"TLS handshake failed: {exc.reason}", url) from None
        except (http.client.HTTPException, OSError) as exc:
            if time.monotonic() >= deadline:
                raise failure(
                    11205, f"no complete answer within {total_timeout:g} s", url
                ) from None
            if isinstance(exc, http.client.HTTPException):
                raise failure(11206, f"the answer is not valid HTTP ({exc!r})", url) from None
            raise failure(11205, f"the connection failed: {exc}", url) from None
        finally:
            if watchdog is not None:
                watchdog.cancel()
            conn.close()
        status = response.status
        location = response.getheader("Location") if 300 <= status < 400 else None
        content_type = response.getheader("Content-Type", "")
        return Answer(url, status, content_type, bytes(data)), location


def _connect(conn: http.client.HTTPConnection, url: str) -> None:
    try:
        conn.connect()
    except socket.gaierror:
        raise failure(11210, "the host name does not resolve", url) from None
    except ConnectionRefusedError:
        raise failure(11202, "the connection was refused: is the app running?", url) from None
    except TimeoutError:
        raise failure(11201, "no TCP connection within the connect timeout", url) from None


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left


def _abort(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed: the exchange finished just in time
        sock.shutdown(socket.SHUT_RDWR)


def media_type(content_type: str) -> str:
    """The bare media type of a Content-Type header, lower-cased ("text/xml")."""
    return content_type.split(";", 1)[0].strip().lower()


def to_document(answer: Answer, kind: twiml.Kind) -> twiml.Document:
    """Interpret an answer as Twilio does: TwiML, plain text (spoken or sent), or audio (played)."""
    mtype = media_type(answer.content_type)
    text = answer.body.decode("utf-8", errors="replace")
    if not answer.body.strip():
        if kind == "messaging":  # an empty answer is "no reply"
            return twiml.Document(kind=kind, verbs=(), url=answer.url)
        raise failure(12100, "the answer is empty; a call needs a TwiML document", answer.url)
    if mtype in TWIML_TYPES or mtype.endswith("+xml"):
        return twiml.parse(answer.body, kind, answer.url)
    if mtype == "text/plain":
        verb = twiml.Verb("Say" if kind == "voice" else "Message", text=text.strip())
        return twiml.Document(kind=kind, verbs=(verb,), url=answer.url)
    if kind == "voice" and mtype.startswith("audio/"):
        return twiml.Document(
            kind=kind, verbs=(twiml.Verb("Play", text=answer.url),), url=answer.url
        )
    shown = mtype or "no Content-Type"
    raise failure(12300, f"{shown} is not TwiML, text or audio", answer.url)
