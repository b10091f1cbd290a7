"""What every Twilio webhook goes through (dialtone.web.handlers puts it together):

1. the form read as UTF-8 (Bottle's own `request.forms` is latin-1; a 400 if it is not UTF-8),
   after its fields are counted in the raw body: more than MAX_FORM_FIELDS is a 400 before any
   field is parsed or any HMAC computed, and a body that is not a form a 415 (Bottle parses
   any body as urlencoded, uncounted),
2. X-Twilio-Signature checked with twilio's RequestValidator against the public URL: PUBLIC_URL +
   path + query, or without PUBLIC_URL the URL waitress rebuilt from trusted proxy headers
   (never the raw X-Forwarded-* headers, which anyone can send); a 403 and a log line otherwise,
   and a request without the header is refused before its body is read,
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache
from typing import Any, NoReturn
from urllib.parse import unquote, urlparse

from bottle import FormsDict, HTTPError, request
from twilio.request_validator import (
    HMAC_SHA1,
    HMAC_SHA256,
    RequestValidator,
    add_port,
    compare,
    get_signature_algorithm,
    remove_port,
)

from dialtone.web import accesslog
from dialtone.web.api_auth import client_address

log = logging.getLogger("dialtone.web.signature")

SIGNATURE_HEADER = "X-Twilio-Signature"
SIGNATURE_SETTINGS_HEADER = "X-Twilio-Webhooks-Signature-Settings"
URLENCODED = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"
NOT_A_FORM = (
    "A webhook's body is a form (application/x-www-form-urlencoded, as Twilio sends it); this "
    "one's Content-Type is {kind}."
)
SUPPORTED_ALGORITHMS = frozenset({HMAC_SHA1, HMAC_SHA256})
# Twilio's webhooks carry fewer than a hundred fields (an MMS with ten media about 45, a call
# with caller-name and geography fields about 40). Above this, a form is refused before it is
# parsed: 12,000 fields cost 41 ms of parsing and HMAC before the signature was refused.
MAX_FORM_FIELDS = 256
TOO_MANY_FIELDS = f"The form has more than {MAX_FORM_FIELDS} fields; Twilio sends fewer than 100."


def read_form() -> FormsDict:
    """The request's form fields decoded as UTF-8; HTTP 400 if they are not valid UTF-8 or
    cannot be read, 415 for a body that is not a form (Bottle would parse it as one)."""
    cached = request.environ.get("dialtone.form")
    if cached is not None:
        return cached
    kind = (request.content_type or "").split(";", 1)[0].strip().lower()
    body = request.body.read()
    if body and kind not in (URLENCODED, MULTIPART):
        raise HTTPError(415, NOT_A_FORM.format(kind=kind or "not given"))
    if count_fields(body, urlencoded=kind == URLENCODED) > MAX_FORM_FIELDS:
        raise HTTPError(400, TOO_MANY_FIELDS)
    try:
        if kind == MULTIPART:  # Bottle's parser, which decodes the parts as UTF-8 itself
            form = FormsDict()
            for key, value in request.forms.allitems():
                if not key:
                    raise HTTPError(400, "A part of the multipart form has no name.")
                form.append(key, value)
        else:
            form = parse_urlencoded(body)
    except UnicodeError:
        raise HTTPError(400, "The form is not valid UTF-8.") from None
    except LookupError:  # a charset= Python does not know
        raise HTTPError(400, "The form's charset is not one Python knows.") from None
    request.environ["dialtone.form"] = form
    return form


def count_fields(body: bytes, *, urlencoded: bool) -> int:
    """An upper bound on the number of fields in a raw body, counted without parsing it."""
    if urlencoded:
        return body.count(b"&") + 1
    # multipart: every part has its own Content-Disposition header.
    return body.lower().count(b"content-disposition")


def parse_urlencoded(body: bytes) -> FormsDict:
    """An x-www-form-urlencoded body as UTF-8 fields, strictly (UnicodeDecodeError otherwise).

    The fields `urllib.parse.parse_qsl(..., keep_blank_values=True, errors="strict")` gives, and
    so what Bottle's `request.forms` + re-decoding gave, at a fraction of the cost: most of a
    webhook's fields need no unquoting at all, and parse_qsl checks and copies each one anyway.
    """
    form = FormsDict()
    for pair in body.decode("utf-8").split("&"):
        if not pair:
            continue
        key, _, value = pair.partition("=")
        if "+" in key or "%" in key:
            key = unquote(key.replace("+", " "), errors="strict")
        if "+" in value or "%" in value:
            value = unquote(value.replace("+", " "), errors="strict")
        form.append(key, value)
    return form


def request_url(public_url: str | None) -> str:
    """The URL Twilio signed: PUBLIC_URL + path + query, or the URL as waitress saw it."""
    environ = request.environ
    path = environ.get("bottle.raw_path") or environ.get("PATH_INFO", "/")
    query = environ.get("QUERY_STRING", "")
    suffix = path + ("?" + query if query else "")
    if public_url:
        return public_url + suffix
    # wsgi.url_scheme and HTTP_HOST are what waitress derived, honouring X-Forwarded-* only
    # from TRUSTED_PROXY. Bottle's request.url would trust those headers from anyone.
    scheme = environ.get("wsgi.url_scheme", "http")
    host = environ.get("HTTP_HOST") or f"{environ['SERVER_NAME']}:{environ['SERVER_PORT']}"
    return f"{scheme}://{host}{environ.get('SCRIPT_NAME', '')}{suffix}"


# A Host header as a URL may hold it: a name or an IPv4 address, or an IPv6 literal, then a
# port. Anything else (a "/", a "?", a space) would move text between the host and the path of
# the URL the signature is checked against.
_HOST_RE = re.compile(r"(?:[A-Za-z0-9._~-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")


def host_is_well_formed(environ: dict[str, Any]) -> bool:
    """True when the request's Host (as waitress derived it) is a host and a port, nothing
    more, or when there is none (request_url() then uses SERVER_NAME and SERVER_PORT)."""
    host = environ.get("HTTP_HOST")
    return host is None or _HOST_RE.fullmatch(host) is not None


BAD_HOST = "the request's host is not a valid URL host"


WEBHOOK_KEY = "dialtone.webhook"  # environ: {"route", "verdict", "url"} for the dev inspector


class SignatureChecker:
    """Checks X-Twilio-Signature with twilio's RequestValidator against the public URL."""

    def __init__(self, auth_token: str | None, *, public_url: str | None, validate: bool = True):
        if validate and not auth_token:
            raise ValueError("checking signatures needs TWILIO_AUTH_TOKEN")
        self.validator = RequestValidator(auth_token) if auth_token and validate else None
        self.public_url = public_url

    def precheck(self, route: str) -> None:
        """403 at once for a request with no signature header: its body is never parsed."""
        if self.validator is None:
            request.environ[WEBHOOK_KEY] = {"route": route, "verdict": "off", "url": ""}
        elif not request.headers.get(SIGNATURE_HEADER):
            self._refuse(route, "missing", "missing X-Twilio-Signature", self._url())

    def check(self, route: str, form: FormsDict) -> None:
        """Raise HTTP 403 unless the request carries a valid signature for its public URL."""
        if self.validator is None:
            return
        url = self._url()
        signature = request.headers.get(SIGNATURE_HEADER, "")
        # Twilio names the algorithm (HMAC-SHA1 unless it says otherwise) in a header.
        algorithm = get_signature_algorithm(request.headers.get(SIGNATURE_SETTINGS_HEADER))
        if not self.public_url and not host_is_well_formed(request.environ):
            self._refuse(route, "bad-host", BAD_HOST, url)  # a Host such as "x/y?"
        try:
            if signature and signature_matches(self.validator, url, form, signature, algorithm):
                request.environ[WEBHOOK_KEY] = {"route": route, "verdict": "valid", "url": url}
                return
            verdict, reason = "mismatch", "signature does not match"
        except ValueError:
            # The validator parses the URL; a Host header such as "x:abc" makes that fail.
            verdict, reason = "bad-host", BAD_HOST
        self._refuse(route, verdict, reason, url)

    def _url(self) -> str:
        return request_url(self.public_url)

    def _refuse(self, route: str, verdict: str, reason: str, url: str) -> NoReturn:
        request.environ[WEBHOOK_KEY] = {"route": route, "verdict": verdict, "url": url}
        shown = accesslog.printable(url)
        accesslog.note(request.environ, rejected=f"{reason} for {shown}")
        log.warning(
            "403 for %s %s from %s: %s; checked against %s "
            "(is PUBLIC_URL right, or TRUSTED_PROXY set for the proxy in front?)",
            request.method,
            accesslog.printable(request.path),
            accesslog.printable(client_address(), 60),
            reason,
            shown,
        )
        raise HTTPError(403, "Invalid or missing X-Twilio-Signature.")


def signature_matches(
    validator: RequestValidator, url: str, form: FormsDict, signature: str, algorithm: str
) -> bool:
    """RequestValidator.validate()'s answer for a form, with the second HMAC only if needed.

    validate() always signs two spellings of the URL (without and with the default port) and
    accepts either; a genuine webhook matches the first, so this halves the HMAC work of every
    accepted request. An algorithm twilio does not know goes to validate(), which logs it.
    """
    if (algorithm or HMAC_SHA1).upper() not in SUPPORTED_ALGORITHMS:
        return bool(validator.validate(url, form, signature, algorithm))
    return any(
        compare(validator.compute_signature(candidate, form, algorithm), signature)
        for candidate in url_spellings(url)
    )


@lru_cache(maxsize=256)
def url_spellings(url: str) -> tuple[str, str]:
    """The two spellings of `url` validate() signs: without and with the default port.

    Cached: a server sees a handful of webhook URLs, and parsing one costs more than its HMAC.
    """
    parsed = urlparse(url)
    return remove_port(parsed), add_port(parsed)
