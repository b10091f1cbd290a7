"""The phone API's guard rails, in process with WebTest: loopback only, plain JSON errors."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import webtest

from dialtone.sandbox.carrier.network import Carrier
from dialtone.sandbox.phone.api import create_phone_app
from dialtone.sandbox.state import SandboxState


@pytest.fixture
def carrier() -> Iterator[Carrier]:
    running = Carrier(SandboxState(), time_scale=0.01).start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def api(carrier: Carrier) -> webtest.TestApp:
    return webtest.TestApp(create_phone_app(carrier), extra_environ={"REMOTE_ADDR": "127.0.0.1"})


def test_only_loopback_clients_are_served(api: webtest.TestApp) -> None:
    answer = api.get("/_phone/info", extra_environ={"REMOTE_ADDR": "192.0.2.7"}, status=403)
    assert "loopback" in answer.json["error"]
    assert api.get("/_phone/info", extra_environ={"REMOTE_ADDR": "::1"}).status_int == 200


def test_info_names_both_numbers(api: webtest.TestApp, carrier: Carrier) -> None:
    info = api.get("/_phone/info").json
    assert info["phone_number"] == carrier.phone_number
    assert info["sandbox_number"] == carrier.state.phone_number
    assert info["current_call"] is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"body": 5}', '"body" must be a string'),
        (b'{"body": "hi", "media": ["ftp://x/y.png"]}', "http(s) URL"),
    ],
)
def test_bad_message_requests_are_400(api: webtest.TestApp, body: bytes, message: str) -> None:
    answer = api.post(
        "/_phone/messages", body, content_type="application/json", status=400, expect_errors=True
    )
    assert message in answer.json["error"]


def test_an_empty_text_and_keys_without_a_call_are_409(api: webtest.TestApp) -> None:
    assert "body or media" in api.post_json("/_phone/messages", {}, status=409).json["error"]
    refused = api.post_json("/_phone/calls/current/digits", {"digits": "1"}, status=409)
    assert "not on a call" in refused.json["error"]
    assert api.post_json("/_phone/calls/current/dance", {}, status=404).json["error"]


def test_a_text_with_no_sms_url_is_a_notice(api: webtest.TestApp, carrier: Carrier) -> None:
    sid = api.post_json("/_phone/messages", {"body": "hi"}, status=201).json["sid"]
    events: list[dict[str, Any]] = []
    for _ in range(5):  # each poll waits up to 1 s for something new
        after = events[-1]["id"] if events else 0
        events += api.get(f"/_phone/events?after={after}&wait=1").json["events"]
        if any(e["type"] == "error" for e in events):
            break
    notice = next(e for e in events if e["type"] == "error")
    assert notice["message_sid"] == sid
    assert "no SmsUrl" in notice["message"]


def test_a_text_after_stop_comes_with_a_notice_until_start(
    api: webtest.TestApp, carrier: Carrier
) -> None:
    def text(body: str) -> dict[str, Any]:
        return dict(api.post_json("/_phone/messages", {"body": body}, status=201).json)

    to, phone = carrier.state.phone_number, carrier.phone_number
    assert to is not None
    assert "notice" not in text("hello")
    assert "notice" not in text("STOP")  # a keyword: Twilio's own reply says what happened
    assert carrier.state.optouts.is_opted_out(to, phone)
    notice = text("hello?")["notice"]
    assert notice.startswith(f"This phone texted STOP to {to}")
    assert "START" in notice
    # HELP gets no answer from Twilio or the app while opted out: the notice says why.
    assert text("HELP")["notice"] == notice
    assert "notice" not in text("START")
    assert not carrier.state.optouts.is_opted_out(to, phone)
    assert "notice" not in text("hello again")


def test_twilios_keyword_reply_takes_the_delivery_steps_a_reply_takes() -> None:
    # Like the app's replies, so "Stop." (answered by the app) and then STOP (answered by
    # Twilio) are answered on the phone in that order, not the other way round.
    slow = Carrier(SandboxState(), time_scale=0.5).start()  # a delivery step is 0.5 s
    try:
        started = time.time()
        sent = slow.send_sms("STOP")
        assert slow.state.optouts.is_opted_out(sent.to, sent.from_)  # carried out at once
        early = [e for e in slow.events.since(0) if e["type"] == "message"]
        assert early == []  # shown only once delivered, like any message
        assert slow.wait_idle(5)
        (reply,) = [e for e in slow.events.since(0) if e["type"] == "message"]
        assert reply["auto_reply"]
        assert reply["time"] - started >= 0.9  # two delivery steps of 0.5 s
    finally:
        slow.stop()


def test_events_wait_at_most_what_was_asked(api: webtest.TestApp) -> None:
    answer = api.get("/_phone/events?after=999&wait=0.05").json
    assert answer["events"] == []
    assert api.get("/_phone/events?wait=soon", status=400).json["error"] == "wait must be a number."
