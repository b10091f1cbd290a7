"""The inspector without a browser: who may talk to it, the capture middleware, TwiML as steps,
the timeline's grouping, and replay re-signed so that the real app accepts it."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import webtest

from dialtone.app import create_app
from dialtone.devloop.capture import Capture, from_environment
from dialtone.devloop.inspector import twiml_view
from dialtone.devloop.inspector.guard import is_loopback_host
from dialtone.devloop.inspector.replay import ReplayError, Target, replay
from dialtone.devloop.inspector.server import PageInfo, create_inspector_app
from dialtone.devloop.inspector.timeline import Timeline
from dialtone.settings import Settings
from tests.conftest import AUTH_TOKEN, settings_for
from tests.support.live_server import free_socket, serve_app

PORT = 5057
TOKEN = "run-token-0123456789"
SMS = [("MessageSid", "SM" + "a" * 32), ("From", "+15557654321"), ("To", "+15550001111")]


@pytest.fixture
def timeline() -> Timeline:
    return Timeline()


@pytest.fixture
def inspector(timeline: Timeline) -> webtest.TestApp:
    app = create_inspector_app(
        port=PORT,
        token=TOKEN,
        timeline=timeline,
        target=Target("http://127.0.0.1:9", "https://example.ngrok.app", AUTH_TOKEN),
        info=PageInfo(mode="Twilio", phone_number="+15550001111", public_url="https://x"),
        phone=None,
    )
    return webtest.TestApp(
        app, extra_environ={"HTTP_HOST": f"127.0.0.1:{PORT}", "REMOTE_ADDR": "127.0.0.1"}
    )


def post_json(app: webtest.TestApp, path: str, body: Any, **headers: str) -> webtest.TestResponse:
    return app.post(
        path,
        json.dumps(body),
        headers={"Content-Type": "application/json", **headers},
        status="*",
    )


# --- who may talk to it ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        (f"127.0.0.1:{PORT}", True),
        (f"localhost:{PORT}", True),
        (f"[::1]:{PORT}", True),
        (f"127.0.0.2:{PORT}", True),
        (f"evil.example:{PORT}", False),  # DNS rebinding: a foreign name resolving to 127.0.0.1
        ("127.0.0.1:80", False),
        ("127.0.0.1", False),
        (f"10.0.0.5:{PORT}", False),
        (f"127.0.0.1.evil.example:{PORT}", False),
    ],
)
def test_only_a_loopback_host_on_the_inspectors_port(host: str, allowed: bool) -> None:
    assert is_loopback_host(host, PORT) is allowed


def test_the_page_and_reads_need_the_token(inspector: webtest.TestApp) -> None:
    assert inspector.get("/api/info", status=403).json["error"].startswith("Missing or wrong")
    assert inspector.get("/api/info?token=nope", status=403)
    assert inspector.get(f"/api/info?token={TOKEN}").json["mode"] == "Twilio"
    assert inspector.get("/api/info", headers={"X-Dialtone-Token": TOKEN}).status_int == 200
    assert inspector.get("/static/style.css").status_int == 200  # no data in the assets
    # The banner's Inspector row, clicked: the page without its token says why, readably.
    page = inspector.get("/", status=403)
    assert page.content_type == "text/plain"
    assert page.text.startswith("Missing or wrong token. Open the URL make dev printed")


def test_a_foreign_host_or_origin_is_refused(inspector: webtest.TestApp) -> None:
    foreign = inspector.get(
        f"/api/info?token={TOKEN}", headers={"Host": f"evil.example:{PORT}"}, status=403
    )
    assert "loopback" in foreign.json["error"]
    cross = post_json(
        inspector,
        "/api/replay",
        {"id": 1},
        **{"X-Dialtone-Token": TOKEN, "Origin": "http://evil.example"},
    )
    assert cross.status_int == 403
    assert "cross-site" in cross.json["error"]


@pytest.mark.parametrize("kind", ["application/x-www-form-urlencoded", "text/plain", ""])
def test_changes_take_json_only_with_the_token_in_a_header(
    inspector: webtest.TestApp, kind: str
) -> None:
    headers = (
        {"X-Dialtone-Token": TOKEN, "Content-Type": kind} if kind else {"X-Dialtone-Token": TOKEN}
    )
    answer = inspector.post("/api/replay", "id=1", headers=headers, status="*")
    assert answer.status_int == 415
    # The token in the query string is not enough for a change.
    refused = inspector.post(
        f"/api/replay?token={TOKEN}", "{}", headers={"Content-Type": "application/json"}, status="*"
    )
    assert refused.status_int == 403


def test_bad_requests_are_plain_json_errors(inspector: webtest.TestApp) -> None:
    headers = {"X-Dialtone-Token": TOKEN}
    assert post_json(inspector, "/api/replay", [1], **headers).status_int == 400
    assert post_json(inspector, "/api/replay", {"id": "x"}, **headers).status_int == 400
    assert post_json(inspector, "/api/replay", {"id": 99}, **headers).status_int == 404
    broken = inspector.post(
        "/api/replay", "{", headers={**headers, "Content-Type": "application/json"}, status=400
    )
    assert "Traceback" not in broken.text
    assert inspector.get(f"/api/phone/info?token={TOKEN}", status=404).json["error"]


def test_pages_carry_a_strict_content_security_policy(inspector: webtest.TestApp) -> None:
    page = inspector.get(f"/?token={TOKEN}")
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["Referrer-Policy"] == "no-referrer"  # the token never leaves as a Referer


# --- the capture middleware -------------------------------------------------------------------


def test_capture_passes_the_body_through_and_ships_the_exchange() -> None:
    shipped: list[dict[str, Any]] = []

    def echo(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        body = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
        environ["dialtone.webhook"] = {"route": "/sms", "verdict": "valid", "url": "https://x/sms"}
        start_response("200 OK", [("Content-Type", "text/xml")])
        return [b"<Response><Message>", body, b"</Message></Response>"]

    capture = Capture(echo, shipped.extend)
    answer = webtest.TestApp(capture).post("/sms?x=1", {"Body": "hi & bye", "From": "+1555"})
    capture.close()
    assert answer.text == "<Response><Message>Body=hi+%26+bye&From=%2B1555</Message></Response>"
    (event,) = shipped
    assert event["form"] == [["Body", "hi & bye"], ["From", "+1555"]]
    assert (event["path"], event["query"], event["status"]) == ("/sms", "x=1", 200)
    assert event["webhook"]["verdict"] == "valid"
    assert event["answer"].startswith("<Response>")


def test_capture_is_installed_only_when_the_dev_loop_asks() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        return []

    assert from_environment(app, {}) is app
    foreign = {"DIALTONE_INSPECTOR_INGEST": "http://evil.example/", "DIALTONE_INSPECTOR_TOKEN": "t"}
    assert from_environment(app, foreign) is app
    wanted = {
        "DIALTONE_INSPECTOR_INGEST": "http://127.0.0.1:9/api/ingest",
        "DIALTONE_INSPECTOR_TOKEN": "t",
    }
    wrapped = from_environment(app, wanted)
    assert isinstance(wrapped, Capture)
    wrapped.close()


def test_a_broken_inspector_never_breaks_the_app() -> None:
    def refuse(batch: list[dict[str, Any]]) -> None:
        raise OSError("connection refused")

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("204 No Content", [])
        return []

    capture = Capture(app, refuse)
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/status", "wsgi.input": io.BytesIO()}
    assert capture(environ, lambda *args: None) == []
    capture.close()


# --- TwiML and the timeline ------------------------------------------------------------------


def test_twiml_as_plain_steps() -> None:
    twiml = (
        '<?xml version="1.0" encoding="UTF-8"?><Response><Say>Hello there</Say>'
        '<Gather numDigits="1" action="/voice_url/menu"><Say>Press 1</Say></Gather>'
        '<Play>https://x/a.mp3</Play><Record maxLength="30" action="/done"/>'
        '<Message to="+1555">Hi</Message><Redirect>/again</Redirect><Hangup/></Response>'
    )
    assert twiml_view.steps(twiml) == [
        "Say 'Hello there'",
        "Gather 1 key, then /voice_url/menu",
        "  Say 'Press 1'",
        "Play https://x/a.mp3",
        "Record up to 30 s, then /done",
        "Text 'Hi' to +1555",
        "Redirect to /again",
        "Hang up",
    ]
    assert twiml_view.steps("<Response/>") == ["Nothing (an empty <Response/>)"]
    assert twiml_view.steps("not xml") == []
    assert twiml_view.pretty(twiml).startswith("<Response>\n  <Say>Hello there</Say>")


def test_the_timeline_groups_by_sid_and_tells_what_to_fix(timeline: Timeline) -> None:
    webhook = timeline.add(
        {"method": "POST", "path": "/sms_url", "form": [list(p) for p in SMS], "answer": ""}
    )
    callback = timeline.add(
        {
            "method": "POST",
            "path": "/status",
            "form": [["MessageSid", SMS[0][1]], ["MessageStatus", "delivered"]],
            "webhook": {"verdict": "mismatch", "url": "https://x/status"},
        }
    )
    api = timeline.add(
        {
            "method": "POST",
            "path": "/send_sms",
            "json": {"to": "+15557654321", "body": "hi"},
            "answer": json.dumps({"sid": "SM" + "b" * 32}),
        }
    )
    assert (webhook["kind"], callback["kind"], api["kind"]) == ("webhook", "status", "api")
    assert webhook["group"] == callback["group"] == SMS[0][1]
    assert api["group"] == "SM" + "b" * 32
    assert api["numbers"] == ["+15557654321"]
    assert "PUBLIC_URL" in callback["verdict_help"]
    assert [e["id"] for e in timeline.since(1)] == [2, 3]


# --- replay ------------------------------------------------------------------------------------


@pytest.fixture
def live_app(tmp_path: Path) -> Iterator[tuple[str, Settings]]:
    sock = free_socket()
    public = "https://abc.ngrok.app"
    settings = settings_for(tmp_path / "dialtone.db").with_overrides(public_url=public)
    app = create_app(settings)
    try:
        with serve_app(app, settings, sock) as url:
            yield url, settings
    finally:
        app.close()


def test_replay_is_signed_for_the_public_url_and_the_real_app_accepts_it(
    live_app: tuple[str, Settings], timeline: Timeline
) -> None:
    url, settings = live_app
    form = [*SMS, ("Body", "hours"), ("AccountSid", "AC" + "0" * 32)]
    event = timeline.add(
        {"method": "POST", "path": "/sms_url", "query": "", "form": form, "status": 200}
    )
    first = replay(Target(url, str(settings.public_url), AUTH_TOKEN), event)
    assert first["status"] == 200
    assert any("open" in step for step in first["steps"])
    edited = [[k, "joke" if k == "Body" else v] for k, v in form]
    second = replay(Target(url, str(settings.public_url), AUTH_TOKEN), event, edited)
    assert second["status"] == 200
    assert any(line.startswith("+ Text") for line in second["changes"])
    # Signed with another token, the app refuses it: the signature really is checked.
    wrong = replay(Target(url, str(settings.public_url), "another-token"), event)
    assert wrong["status"] == 403
    assert wrong["changes"][0] == "status 200 -> 403"


def test_only_webhooks_are_replayed(timeline: Timeline) -> None:
    api = timeline.add({"method": "POST", "path": "/send_sms", "json": {"to": "+1555"}})
    with pytest.raises(ReplayError, match="Only webhooks"):
        replay(Target("http://127.0.0.1:9", "https://x", AUTH_TOKEN), api)
    hook = timeline.add({"method": "POST", "path": "/sms_url", "form": [list(p) for p in SMS]})
    with pytest.raises(ReplayError, match="pair of strings"):
        replay(Target("http://127.0.0.1:9", "https://x", AUTH_TOKEN), hook, [["only one"]])
