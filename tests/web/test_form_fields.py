"""Rejections are cheap (issue 9.9): a request without a signature is refused before its body is
read, and a form with more than MAX_FORM_FIELDS fields before it is parsed or any HMAC computed.
Counted, not timed: the answer, the handler's calls and the signature checker's log say which
step refused it."""

from __future__ import annotations

import http.client
import logging
from collections.abc import Iterator
from urllib.parse import urlencode

import pytest

from dialtone.app import close_app, create_app
from dialtone.settings import Settings
from dialtone.web.routing import routes_of, webhook
from dialtone.web.signature import MAX_FORM_FIELDS
from tests.conftest import AUTH_TOKEN, PUBLIC_URL
from tests.support.live_server import free_socket, serve_app
from tests.support.twilio_signing import sign

CALLS: list[int] = []


@webhook("/counted")
def counted(form: dict[str, str]) -> None:
    CALLS.append(len(form))


@pytest.fixture
def served(settings: Settings) -> Iterator[int]:
    """An app with the one counted route, on real waitress; yields the port."""
    CALLS.clear()
    limits = settings.with_overrides(max_body_bytes=1024 * 1024)  # the field cap, not the size
    app = create_app(limits, routes=routes_of(counted))
    sock = free_socket()
    with serve_app(app, limits, sock):
        yield sock.getsockname()[1]
    close_app(app)


def post(port: int, fields: list[tuple[str, str]], signature: str | None) -> tuple[int, str]:
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if signature is not None:
        headers["X-Twilio-Signature"] = signature
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", "/counted", body=urlencode(fields).encode(), headers=headers)
        answer = conn.getresponse()
        return answer.status, answer.read().decode()
    finally:
        conn.close()


def fields(n: int) -> list[tuple[str, str]]:
    return [(f"F{i}", "x") for i in range(n)]


FORGED = "bm90IGEgc2lnbmF0dXJl"


def test_twelve_thousand_forged_fields_are_refused_before_parsing_or_hmac(
    served: int, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="dialtone.web.signature"):
        status, text = post(served, fields(12_000), FORGED)
    assert status == 400
    assert f"more than {MAX_FORM_FIELDS} fields" in text
    assert "Traceback" not in text
    assert CALLS == []
    # Had the signature been checked, it would have been refused with a 403 and a log line.
    assert "signature does not match" not in caplog.text


def test_twelve_thousand_unsigned_fields_are_refused_before_the_body_is_read(
    served: int, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="dialtone.web.signature"):
        status, text = post(served, fields(12_000), None)
    assert status == 403
    assert "X-Twilio-Signature" in text
    assert "missing X-Twilio-Signature" in caplog.text
    assert CALLS == []


def test_the_cap_is_exact_and_a_signed_form_under_it_is_answered(
    served: int, caplog: pytest.LogCaptureFixture
) -> None:
    at_cap = fields(MAX_FORM_FIELDS)
    with caplog.at_level(logging.WARNING, logger="dialtone.web.signature"):
        assert post(served, at_cap, FORGED)[0] == 403  # reached the signature check
    assert "signature does not match" in caplog.text
    assert "403 for POST /counted from 127.0.0.1:" in caplog.text  # who sent it
    assert post(served, fields(MAX_FORM_FIELDS + 1), FORGED)[0] == 400
    signed = sign(AUTH_TOKEN, PUBLIC_URL + "/counted", at_cap)
    assert post(served, at_cap, signed)[0] == 204
    assert CALLS == [MAX_FORM_FIELDS]
