"""Fuzzing the Twilio-facing routes with hypothesis: arbitrary form bodies, signed and not.

Bodies: random Unicode, very long values, missing and repeated fields, bad percent-encodings
and raw bytes that are not UTF-8. Properties: never a 500; every answer is TwiML with a
<Response> root, a 204, or a 400/403/413; the record never holds a half-written row.

Bounded for `make test` (FUZZ_EXAMPLES, default 40 per route family); `make fuzz` runs more.
"""

from __future__ import annotations

import os
import sqlite3
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
import webtest
from bottle import _parse_qsl  # the parser Bottle applies to form bodies
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dialtone.app import close_app, create_app
from dialtone.record.store import IDEMPOTENCY_HEADER
from dialtone.twilio_api import make_client
from tests.conftest import AUTH_TOKEN, CALLER, PHONE_NUMBER, PUBLIC_URL, settings_for
from tests.support.twilio_signing import sign

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))
MAX_BODY = 64 * 1024
SMS = ["/sms_url"]
VOICE = [
    "/voice_url",
    "/voice_url/menu",
    "/voice_url/recorded",
    "/voice_url/dialed",
    "/voice_url/hold",
    "/voice_url/agent",
]
STATUS = ["/status"]
FIELDS = [
    "MessageSid",
    "SmsSid",
    "CallSid",
    "AccountSid",
    "From",
    "To",
    "Body",
    "NumMedia",
    "MediaUrl0",
    "MediaContentType0",
    "SmsStatus",
    "MessageStatus",
    "CallStatus",
    "Direction",
    "Digits",
    "ErrorCode",
    "ErrorMessage",
    "CallDuration",
    "DialCallStatus",
    "QueuePosition",
    "RecordingUrl",
]
STATUSES = ["queued", "sent", "delivered", "failed", "received", "ringing", "completed", ""]

fuzz = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

values = st.one_of(
    st.text(max_size=40),
    st.sampled_from(STATUSES),
    st.sampled_from([CALLER, PHONE_NUMBER, "+", "whatsapp:" + CALLER, "STOP", "HELP", "START"]),
    st.from_regex(r"\A(SM|MM|CA)[0-9a-f]{32}\Z"),
    st.integers(-5, 20).map(str),
    st.integers(0, 70_000).map(lambda n: "é" * n),  # very long, over the body limit at the top
)
pairs = st.lists(
    st.tuples(st.one_of(st.sampled_from(FIELDS), st.text(max_size=12)), values), max_size=12
)


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    """A urlencoded body, sometimes damaged: bad escapes, raw bytes, or bytes alone."""
    body = urlencode(draw(pairs)).encode()
    damage = draw(st.sampled_from(["none", "none", "escape", "bytes", "raw"]))
    if damage == "escape":
        at = draw(st.integers(0, len(body)))
        bad = draw(st.sampled_from([b"%", b"%Z", b"%ZZ", b"%E2%82", b"%FF", b"%C0%80", b"=&=&&"]))
        body = body[:at] + bad + body[at:]
    elif damage == "bytes":
        body += b"&Body=" + draw(st.binary(min_size=1, max_size=30))
    elif damage == "raw":
        body = draw(st.binary(max_size=200))
    return body


def signature_for(path: str, body: bytes, how: str) -> str | None:
    """The X-Twilio-Signature for the form as the server will read it (or a wrong one, or none)."""
    if how == "none":
        return None
    if how == "wrong":
        return "bm90IGEgc2lnbmF0dXJl"
    try:
        form = [
            (k.encode("latin-1").decode(), v.encode("latin-1").decode())
            for k, v in _parse_qsl(body.decode("latin-1"))
        ]
    except UnicodeError:
        return "bm90IGEgc2lnbmF0dXJl"  # the server answers 400 before it checks anyway
    return sign(AUTH_TOKEN, PUBLIC_URL + path, form)


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "dialtone.db"


@pytest.fixture(scope="module")
def fuzz_app(database: Path) -> Iterator[webtest.TestApp]:
    # Option 3 of the voice menu texts a link: to a port that refuses, never the internet.
    settings = settings_for(database, twilio_api_url="http://127.0.0.1:9")
    app = create_app(settings, twilio=make_client(settings, backoff_seconds=0.001))
    yield webtest.TestApp(app)
    close_app(app)


def post(app: webtest.TestApp, path: str, body: bytes, how: str, token: str | None) -> None:
    """POST `body` and check the answer's properties."""
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    signature = signature_for(path, body, how)
    if signature is not None:
        headers["X-Twilio-Signature"] = signature
    if token is not None:
        headers[IDEMPOTENCY_HEADER] = token
    answer = app.post(path, body, headers=headers, expect_errors=True)
    assert answer.status_int in (200, 204, 400, 403, 413), answer.text[:500]
    if answer.status_int == 200:
        assert answer.content_type == "text/xml"
        assert ET.fromstring(answer.body).tag == "Response"
    if how != "correct" and answer.status_int not in (400, 413):
        assert answer.status_int == 403
    if len(body) > MAX_BODY:
        assert answer.status_int == 413


def assert_whole(database: Path) -> None:
    """No half-written rows: every row has its SID and direction; every event has its row."""
    with sqlite3.connect(database) as conn:
        bad = conn.execute(
            "SELECT count(*) FROM messages WHERE sid = '' OR direction NOT IN ('inbound', 'outbound')"
            " OR status = ''"
        ).fetchone()[0]
        bad += conn.execute(
            "SELECT count(*) FROM calls WHERE sid = '' OR direction NOT IN ('inbound', 'outbound')"
        ).fetchone()[0]
        orphans = conn.execute(
            "SELECT count(*) FROM events e WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.sid = e.sid)"
            " AND NOT EXISTS (SELECT 1 FROM calls c WHERE c.sid = e.sid)"
        ).fetchone()[0]
    conn.close()
    assert (bad, orphans) == (0, 0)


signing = st.sampled_from(["correct", "correct", "wrong", "none"])
tokens = st.one_of(st.none(), st.text(max_size=20), st.sampled_from(["t-1", "t-2"]))


@fuzz
@given(path=st.sampled_from(SMS), body=bodies(), how=signing, token=tokens)
def test_fuzz_sms(
    fuzz_app: webtest.TestApp, database: Path, path: str, body: bytes, how: str, token: str | None
) -> None:
    post(fuzz_app, path, body, how, token)
    assert_whole(database)


@fuzz
@given(path=st.sampled_from(VOICE), body=bodies(), how=signing, token=tokens)
def test_fuzz_voice(
    fuzz_app: webtest.TestApp, database: Path, path: str, body: bytes, how: str, token: str | None
) -> None:
    post(fuzz_app, path, body, how, token)
    assert_whole(database)


@fuzz
@given(path=st.sampled_from(STATUS), body=bodies(), how=signing, token=tokens)
def test_fuzz_status(
    fuzz_app: webtest.TestApp, database: Path, path: str, body: bytes, how: str, token: str | None
) -> None:
    post(fuzz_app, path, body, how, token)
    assert_whole(database)


def test_the_fuzzer_reaches_the_record(fuzz_app: webtest.TestApp, database: Path) -> None:
    # A correctly signed, well-formed body is recorded: the properties above are not vacuous.
    body = urlencode({"MessageSid": "SM" + "0" * 32, "From": CALLER, "Body": "hi"}).encode()
    post(fuzz_app, "/sms_url", body, "correct", None)
    with sqlite3.connect(database) as conn:
        assert (
            conn.execute(
                "SELECT count(*) FROM messages WHERE sid = ?", ("SM" + "0" * 32,)
            ).fetchone()[0]
            == 1
        )
    conn.close()
