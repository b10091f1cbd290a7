"""Fuzzing the Twilio-facing routes and the JSON API with hypothesis, signed and not.

Webhook bodies: random Unicode, very long values, missing and repeated fields, bad
percent-encodings and raw bytes that are not UTF-8. API requests (with the right token, and
sometimes a wrong or missing one): random JSON payloads and query strings, damaged JSON, wrong
content types. Properties: never a 5xx; every webhook answer is TwiML with a <Response> root, a
204, or a 400/403/413; every API answer is JSON; the record never holds a half-written row.
Twilio is a small fake on loopback that accepts every message and call.

Bounded for `make test` (FUZZ_EXAMPLES, default 40 per route family, five families); `make fuzz`
runs more and prints the bodies sent and the 5xx answers (docs/security.md has the last figure).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
import webtest
from bottle import _parse_qsl  # the parser Bottle applies to form bodies
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dialtone.app import close_app, create_app
from dialtone.record.store import IDEMPOTENCY_HEADER
from dialtone.twilio_api import make_client
from tests.conftest import API_TOKEN, AUTH_TOKEN, CALLER, PHONE_NUMBER, PUBLIC_URL, settings_for
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
    "/voice_url/agent/pin",
]
STATUS = ["/status"]
API_POST = ["/send_sms", "/make_call"]
API_GET = ["/messages", "/calls"]
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


COUNTS: Counter[str] = Counter()  # bodies sent and 5xx answers, for the report at the end


class FakeTwilio(BaseHTTPRequestHandler):
    """Twilio's REST API as far as the app uses it here: every message and call is created."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        kind = "SM" if self.path.endswith("/Messages.json") else "CA"
        if not self.path.endswith(("/Messages.json", "/Calls.json")):
            self.answer(404, {"code": 20404, "message": "not found", "status": 404})
            return
        sid = kind + uuid.uuid4().hex
        self.answer(201, {"sid": sid, "status": "queued", "from": PHONE_NUMBER, "to": CALLER})

    def answer(self, status: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def fake_twilio() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeTwilio)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "dialtone.db"


@pytest.fixture(scope="module")
def fuzz_app(
    database: Path, fake_twilio: str, request: pytest.FixtureRequest
) -> Iterator[webtest.TestApp]:
    # The API's rate limits would answer most of a long run with 429: raised out of the way.
    settings = settings_for(
        database,
        twilio_api_url=fake_twilio,
        rate_limit_per_minute=10**9,
        link_texts_per_hour=10**9,
        link_texts_total_per_hour=10**9,
        agent_numbers=frozenset({CALLER}),
        agent_pin="246810",
    )
    app = create_app(settings, twilio=make_client(settings, backoff_seconds=0.001))
    started = time.monotonic()
    COUNTS.clear()
    yield webtest.TestApp(app)
    close_app(app)
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(
                f"\nfuzz: {COUNTS['bodies']} bodies sent ({COUNTS['webhook']} to webhooks, "
                f"{COUNTS['api']} to the API), {COUNTS['5xx']} answers 5xx, "
                f"in {time.monotonic() - started:.0f} s; answers: "
                + ", ".join(f"{k} x{n}" for k, n in sorted(COUNTS.items()) if " " in k)
            )


def counted(kind: str, status: int) -> None:
    COUNTS["bodies"] += 1
    COUNTS[kind] += 1
    COUNTS[f"{kind} {status}"] += 1
    if status >= 500:
        COUNTS["5xx"] += 1


def post(app: webtest.TestApp, path: str, body: bytes, how: str, token: str | None) -> None:
    """POST `body` and check the answer's properties."""
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    signature = signature_for(path, body, how)
    if signature is not None:
        headers["X-Twilio-Signature"] = signature
    if token is not None:
        headers[IDEMPOTENCY_HEADER] = token
    answer = app.post(path, body, headers=headers, expect_errors=True)
    counted("webhook", answer.status_int)
    assert answer.status_int in (200, 204, 400, 403, 413), answer.text[:500]
    if answer.status_int == 200:
        assert answer.content_type == "text/xml"
        assert ET.fromstring(answer.body).tag == "Response"
    if how != "correct" and answer.status_int not in (400, 413):
        assert answer.status_int == 403
    if len(body) > MAX_BODY:
        assert answer.status_int == 413


CHECKED: dict[str, int] = {}  # the highest rowid of each table already checked


def assert_whole(database: Path) -> None:
    """No half-written rows: every row has its SID and direction; every event has its row.

    Only the rows written since the last check are read, so a long run stays linear.
    """
    with sqlite3.connect(database) as conn:
        seen = {t: CHECKED.get(t, 0) for t in ("messages", "calls", "events")}
        bad = conn.execute(
            "SELECT count(*) FROM messages WHERE rowid > ? AND (sid = ''"
            " OR direction NOT IN ('inbound', 'outbound') OR status = '')",
            (seen["messages"],),
        ).fetchone()[0]
        bad += conn.execute(
            "SELECT count(*) FROM calls WHERE rowid > ? AND (sid = ''"
            " OR direction NOT IN ('inbound', 'outbound'))",
            (seen["calls"],),
        ).fetchone()[0]
        orphans = conn.execute(
            "SELECT count(*) FROM events e WHERE e.rowid > ?"
            " AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.sid = e.sid)"
            " AND NOT EXISTS (SELECT 1 FROM calls c WHERE c.sid = e.sid)",
            (seen["events"],),
        ).fetchone()[0]
        for table in seen:
            CHECKED[table] = conn.execute(
                f"SELECT coalesce(max(rowid), 0) FROM {table}"  # noqa: S608 (fixed names)
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


# --- the JSON API, with the right token (and sometimes not) -----------------------------------

DESTINATIONS = [
    CALLER,
    PHONE_NUMBER,
    "whatsapp:" + CALLER,
    "+12",
    "+19005551234",
    "+88212345678",
    "+447700900123",
    "+" + "9" * 20,
    "",
]
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**30), 10**30),
    st.floats(allow_nan=True),
    st.text(max_size=40),
    st.sampled_from(DESTINATIONS),
    st.sampled_from(["https://example.com/a.png", "ftp://x", "http://", "https://u:p@h/x"]),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
well_formed = st.fixed_dictionaries(
    {"to": st.sampled_from(DESTINATIONS)},
    optional={
        "body": st.text(max_size=200),
        "media_url": st.sampled_from(["https://example.com/a.png", ["https://example.com/b.jpg"]]),
        "message": st.text(max_size=100),
    },
)
payloads = st.dictionaries(
    st.one_of(st.sampled_from(["to", "body", "media_url", "message"]), st.text(max_size=8)),
    json_values,
    max_size=5,
)


@st.composite
def api_bodies(draw: st.DrawFn) -> tuple[bytes, str]:
    """A JSON body and its content type, sometimes damaged or not JSON at all."""
    body = json.dumps(draw(st.one_of(well_formed, well_formed, payloads))).encode()
    damage = draw(st.sampled_from(["none", "none", "none", "cut", "bytes", "deep", "type"]))
    content_type = "application/json"
    if damage == "cut":
        body = body[: draw(st.integers(0, len(body)))]
    elif damage == "bytes":
        body = draw(st.binary(max_size=200))
    elif damage == "deep":
        body = b"[" * draw(st.integers(1, 5000)) + b"]"
    elif damage == "type":
        content_type = draw(
            st.sampled_from(["text/plain", "application/x-www-form-urlencoded", ""])
        )
    return body, content_type


query_values = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["inbound", "outbound", "delivered", "queued", CALLER, "+12", "%ff", "%"]),
    st.integers(-10, 10**6).map(str),
    st.integers(1, 6000).map(lambda n: "9" * n),
    st.sampled_from(
        [
            "9999-12-31T23:59:59-12:00",
            "0001-01-01T00:00:00+14:00",
            "2025-01-31",
            "2025-01-31T09:00:00Z",
        ]
    ),
)
query_keys = st.one_of(
    st.sampled_from(["number", "since", "status", "direction", "limit", "before"]),
    st.text(max_size=8),
)
auth = st.sampled_from(["right", "right", "right", "right", "wrong", "none"])


def client(how: str) -> dict[str, str]:
    """The client's address: wrong tokens each from a new one, as a guesser with many addresses
    (one address would be locked out, right token included, after ten)."""
    if how == "right":
        return {"REMOTE_ADDR": "127.0.0.1"}
    n = COUNTS["bodies"]
    return {"REMOTE_ADDR": f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"}


def authorization(how: str) -> dict[str, str]:
    if how == "right":
        return {"Authorization": f"Bearer {API_TOKEN}"}
    if how == "wrong":
        return {"Authorization": "Bearer not-the-token"}
    return {}


def check_api(answer: webtest.TestResponse, how: str) -> None:
    """Never a 5xx; always JSON; the right token is never refused as wrong."""
    counted("api", answer.status_int)
    assert answer.status_int < 500, answer.text[:500]
    assert answer.content_type == "application/json", answer.text[:200]
    json.loads(answer.text)
    if how != "right":
        assert answer.status_int in (401, 403, 429)


@fuzz
@given(path=st.sampled_from(API_POST), body=api_bodies(), how=auth)
def test_fuzz_api_post(
    fuzz_app: webtest.TestApp, database: Path, path: str, body: tuple[bytes, str], how: str
) -> None:
    content, content_type = body
    headers = {**authorization(how), "Content-Type": content_type}
    answer = fuzz_app.post(
        path, content, headers=headers, extra_environ=client(how), expect_errors=True
    )
    check_api(answer, how)
    assert answer.status_int in (201, 400, 401, 403, 409, 413, 429), answer.text[:500]
    assert_whole(database)


@fuzz
@given(
    path=st.sampled_from(API_GET),
    query=st.lists(st.tuples(query_keys, query_values), max_size=4),
    raw=st.booleans(),
    how=auth,
)
def test_fuzz_api_get(
    fuzz_app: webtest.TestApp, path: str, query: list[tuple[str, str]], raw: bool, how: str
) -> None:
    # raw: the values go into the URL as they are (so "%ff" is a bad escape); else quoted.
    pairs = [(quote(k, safe=""), v if raw else quote(v, safe="")) for k, v in query]
    url = path + ("?" + "&".join(f"{k}={v}" for k, v in pairs) if pairs else "")
    try:
        answer = fuzz_app.get(
            url, headers=authorization(how), extra_environ=client(how), expect_errors=True
        )
    except UnicodeEncodeError:
        return  # a raw value WebTest cannot put in a URL; no client could send it either
    check_api(answer, how)
    assert answer.status_int in (200, 400, 401, 403, 429), answer.text[:500]


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
