"""End to end over real HTTP on loopback: the phone -> the sandbox's carrier -> the app, and back.

The `world` fixture (tests/sandbox_world.py) serves the real app with the sandbox's account and
points the sandbox number at it through the REST API, as `make dev` does.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from pathlib import Path

import pytest
import requests
from twilio.base.exceptions import TwilioRestException

from dialtone.bot import optout
from dialtone.sandbox.phone.client import PhoneApiError, PhoneClient, SandboxUnavailable
from dialtone.sandbox.server import SandboxServer
from dialtone.sandbox.state import PHONE_USER_NUMBER
from dialtone.twilio_api import make_client
from tests.conftest import API_TOKEN
from tests.support.sandbox_world import TIME_SCALE, World


def status_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "dialtone.status"]


def test_a_text_gets_the_reply_from_the_rules_file(world: World) -> None:
    world.phone.send_sms("Hours?")
    reply = world.phone.wait_for(lambda e: e["type"] == "message")
    assert reply["body"] == "We're open 9:00 to 17:00, Monday to Friday."
    assert reply["from_"] == world.settings.phone_number
    assert reply["direction"] == "outbound-reply"
    directions = [m.direction for m in world.sandbox.state.messages()]
    assert sorted(directions) == ["inbound", "outbound-reply"]


def test_an_mms_is_acknowledged_with_its_types(world: World) -> None:
    world.phone.send_sms("", media=[("https://example.com/cat.jpg", "image/jpeg")])
    reply = world.phone.wait_for(lambda e: e["type"] == "message")
    assert "1 attachment (image/jpeg)" in reply["body"]
    inbound = [m for m in world.sandbox.state.messages() if m.direction == "inbound"]
    assert inbound[0].media_urls == ("https://example.com/cat.jpg",)


def test_a_call_walks_the_menu_to_option_1(world: World) -> None:
    world.phone.call()
    gather = world.phone.wait_for(lambda e: e["type"] == "gather")
    assert gather["num_digits"] == 1
    world.phone.digits("1")
    said, ended = world.said_until_end()
    assert any("answered by Dialtone" in text for text in said)
    assert ended["status"] == "completed"
    assert world.sandbox.state.calls()[0].status == "completed"


def test_option_2_records_a_message(world: World, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    world.phone.call()
    world.phone.wait_for(lambda e: e["type"] == "gather")
    world.phone.digits("2")
    world.phone.wait_for(lambda e: e["type"] == "record")
    world.phone.digits("#")
    said, ended = world.said_until_end()
    assert "Thank you, your message has been recorded. Goodbye." in said
    assert any("recording from call" in r.getMessage() for r in caplog.records)
    assert ended["status"] == "completed"


def test_option_3_texts_the_link_through_the_rest_api(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    world.phone.call()
    world.phone.wait_for(lambda e: e["type"] == "gather")
    world.phone.digits("3")
    seen = world.until_all("message", "say", "call_ended")
    text = seen["message"]
    assert text["body"].startswith("Here is your link from Dialtone: https://")
    assert text["direction"] == "outbound-api"
    assert seen["say"]["text"] == "I have sent you a text message with the link. Goodbye."
    # The REST-sent message asked for status callbacks: they reach /status in order, with none
    # for the initial status (Twilio's "Outbound Message Status in Status Callbacks" page).
    sid = text["sid"]
    deadline = time.monotonic() + 5
    wanted = [f"message {sid} is {s}" for s in ("sent", "delivered")]
    while time.monotonic() < deadline and len(_about(status_lines(caplog), sid)) < 2:
        time.sleep(0.02)
    assert _about(status_lines(caplog), sid) == [f"status: {w}" for w in wanted]


def _about(lines: list[str], sid: str) -> list[str]:
    """The status lines about `sid`, without the record's outcome such as " (new)"."""
    return [line.rsplit(" (", 1)[0] for line in lines if sid in line]


def test_send_sms_status_callbacks_arrive_in_order(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    answer = requests.post(
        world.app_url + "/send_sms",
        json={"to": PHONE_USER_NUMBER, "body": "Hello from the API"},
        headers={"Authorization": f"Bearer {API_TOKEN}"},
        timeout=5,
    )
    assert answer.status_code == 201, answer.text
    sid = answer.json()["sid"]
    statuses = world.phone.collect(lambda e: e["type"] == "message" and e["sid"] == sid)
    shown = [e["status"] for e in statuses if e["type"] == "message_status"]
    assert shown == ["sent", "delivered"]  # the phone sees the changes; queued is the start
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(_about(status_lines(caplog), sid)) < 2:
        time.sleep(0.02)
    called_back = [line.rsplit(" ", 1)[-1] for line in _about(status_lines(caplog), sid)]
    assert called_back == ["sent", "delivered"]  # none for the initial status (queued)


@pytest.mark.parametrize(
    ("path", "code"),
    [("/broken/500", 11200), ("/broken/twiml", 12200), ("/broken/nothing-here", 11200)],
)
def test_a_broken_sms_route_is_reported_and_the_fallback_answers(
    world: World, path: str, code: int
) -> None:
    world.point(sms_url=path, sms_fallback_url="/sms_url")
    world.phone.send_sms("joke")
    error = world.phone.wait_for(lambda e: e["type"] == "error")
    assert error["code"] == code
    assert error["url"] == world.app_url + path
    reply = world.phone.wait_for(lambda e: e["type"] == "message")
    assert reply["body"] == "Why did the phone wear glasses? It lost its contacts."


def test_a_slow_answer_times_out_with_11205(world: World) -> None:
    assert world.sandbox.carrier is not None
    world.sandbox.carrier.client.total_timeout = 0.3
    world.point(sms_url="/broken/slow")
    world.phone.send_sms("hello")
    error = world.phone.wait_for(lambda e: e["type"] == "error")
    assert error["code"] == 11205
    assert "HTTP connection failure" in error["text"]


def test_a_slow_sms_answer_is_11205_and_the_fallback_answers(world: World) -> None:
    assert world.sandbox.carrier is not None
    world.sandbox.carrier.client.total_timeout = 0.3
    world.point(sms_url="/broken/slow", sms_fallback_url="/sms_url")
    world.phone.send_sms("joke")
    error = world.phone.wait_for(lambda e: e["type"] == "error")
    assert (error["code"], error["url"]) == (11205, world.app_url + "/broken/slow")
    reply = world.phone.wait_for(lambda e: e["type"] == "message")
    assert reply["body"] == "Why did the phone wear glasses? It lost its contacts."


def test_a_slow_voice_answer_is_11205_and_the_fallback_runs(world: World) -> None:
    assert world.sandbox.carrier is not None
    world.sandbox.carrier.client.total_timeout = 0.3
    world.point(voice_url="/broken/slow", voice_fallback_url="/voice_url")
    world.phone.call()
    error = world.phone.wait_for(lambda e: e["type"] == "error")
    assert (error["code"], error["url"]) == (11205, world.app_url + "/broken/slow")
    world.phone.wait_for(lambda e: e["type"] == "gather")  # the fallback's menu
    world.phone.hangup()
    assert world.phone.wait_for(lambda e: e["type"] == "call_ended")["status"] == "completed"


def test_a_broken_voice_route_uses_the_fallback(world: World) -> None:
    world.point(voice_url="/broken/500", voice_fallback_url="/voice_url")
    world.phone.call()
    error = world.phone.wait_for(lambda e: e["type"] == "error")
    assert error["code"] == 11200
    world.phone.wait_for(lambda e: e["type"] == "gather")
    world.phone.hangup()
    ended = world.phone.wait_for(lambda e: e["type"] == "call_ended")
    assert ended["status"] == "completed"


@pytest.mark.parametrize(("path", "code"), [("/broken/twiml", 12200), ("/broken/500", 11200)])
def test_an_inbound_call_whose_first_webhook_fails_hears_the_application_error(
    world: World, path: str, code: int
) -> None:
    # Twilio answers, plays its application-error announcement, then hangs up (issue 10.6;
    # Twilio's error pages for 11200 and 12200: "the caller hears an application error").
    world.point(voice_url=path)
    world.phone.call()
    seen = world.phone.collect(lambda e: e["type"] == "call_ended")
    errors = [e["code"] for e in seen if e["type"] == "error"]
    said = [e["text"] for e in seen if e["type"] == "say"]
    statuses = [e["status"] for e in seen if e["type"] == "call_status"]
    assert errors == [code]
    assert said == ["We are sorry, an application error has occurred. Goodbye."]
    assert "in-progress" in statuses  # answered, so that it can be heard
    assert seen[-1]["status"] == "completed"
    assert world.sandbox.state.calls()[0].status == "completed"


def test_make_call_rings_the_phone_and_runs_the_menu(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    answer = requests.post(
        world.app_url + "/make_call",
        json={"to": PHONE_USER_NUMBER},
        headers={"Authorization": f"Bearer {API_TOKEN}"},
        timeout=5,
    )
    assert answer.status_code == 201, answer.text
    sid = answer.json()["sid"]
    ringing = world.phone.wait_for(lambda e: e["type"] == "ringing")
    assert ringing["call_sid"] == sid
    assert ringing["from_"] == world.settings.phone_number
    world.phone.answer()
    world.phone.wait_for(lambda e: e["type"] == "gather")
    world.phone.digits("1")
    said, ended = world.said_until_end()
    assert any("answered by Dialtone" in text for text in said)
    assert ended["status"] == "completed"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not _about(status_lines(caplog), sid):
        time.sleep(0.02)
    assert _about(status_lines(caplog), sid)[0].startswith(f"status: call {sid} is completed")


def test_make_call_with_a_message_speaks_inline_twiml(world: World) -> None:
    requests.post(
        world.app_url + "/make_call",
        json={"to": PHONE_USER_NUMBER, "message": "Your table is ready."},
        headers={"Authorization": f"Bearer {API_TOKEN}"},
        timeout=5,
    ).raise_for_status()
    world.phone.wait_for(lambda e: e["type"] == "ringing")
    world.phone.answer()
    said, ended = world.said_until_end()
    assert said == ["Your table is ready."]
    assert ended["status"] == "completed"


def test_a_declined_call_is_busy(world: World) -> None:
    client = make_client(world.settings)
    call = client.calls.create(
        to=PHONE_USER_NUMBER, from_=world.settings.phone_number, url=world.app_url + "/voice_url"
    )
    world.phone.wait_for(lambda e: e["type"] == "ringing")
    world.phone.decline()
    world.phone.wait_for(lambda e: e["type"] == "call_ended")
    assert client.calls(call.sid).fetch().status == "busy"


def test_a_rest_update_hangs_up_a_live_call(world: World) -> None:
    sid = world.phone.call()
    world.phone.wait_for(lambda e: e["type"] == "gather")
    make_client(world.settings).calls(sid).update(status="completed")
    ended = world.phone.wait_for(lambda e: e["type"] == "call_ended")
    assert ended["status"] == "completed"
    with pytest.raises(PhoneApiError) as refused:
        world.phone.digits("1")
    assert refused.value.status == 409


def test_stopping_leaves_no_threads(tmp_path: Path) -> None:
    before = set(threading.enumerate())
    sandbox = SandboxServer(with_carrier=True, time_scale=TIME_SCALE).start()
    sandbox.state.update_number(sandbox.state.numbers()[0].sid, voice_url="http://127.0.0.1:9/x")
    phone = PhoneClient(sandbox.url)

    def long_poll() -> None:
        with contextlib.suppress(SandboxUnavailable):  # stopped before the poll reached it
            phone.events(wait=20)

    waiting = threading.Thread(target=long_poll)
    waiting.start()
    phone.send_sms("hello")  # no SmsUrl: a notice, no thread left behind
    sandbox.stop()
    waiting.join(timeout=5)
    assert not waiting.is_alive()  # the long poll was answered at once, not after 20 s
    time.sleep(0.05)
    left = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    assert left == []


def test_call_status_callbacks_follow_status_callback_event(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    call = make_client(world.settings).calls.create(
        to=PHONE_USER_NUMBER,
        from_=world.settings.phone_number,
        twiml="<Response><Say>Hi</Say></Response>",
        status_callback=world.app_url + "/status",
        status_callback_event=["initiated", "ringing", "answered", "completed"],
    )
    world.phone.wait_for(lambda e: e["type"] == "ringing")
    world.phone.answer()
    world.phone.wait_for(lambda e: e["type"] == "call_ended")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(_about(status_lines(caplog), call.sid)) < 4:
        time.sleep(0.02)
    statuses = [
        line.split(" is ")[1].split(",")[0] for line in _about(status_lines(caplog), call.sid)
    ]
    assert statuses == ["initiated", "ringing", "in-progress", "completed"]


def test_a_call_to_another_number_is_not_answered(world: World) -> None:
    client = make_client(world.settings)
    call = client.calls.create(
        to="+15557654321", from_=world.settings.phone_number, url=world.app_url + "/voice_url"
    )
    event = world.phone.wait_for(
        lambda e: e["type"] == "call_status" and e["status"] == "no-answer"
    )
    assert event["call_sid"] == call.sid
    assert client.calls(call.sid).fetch().status == "no-answer"


def test_stop_is_confirmed_by_twilio_and_later_texts_are_refused(world: World) -> None:
    carrier, state = world.sandbox.carrier, world.sandbox.state
    assert carrier is not None
    client = make_client(world.settings)
    send_sms = {"to": PHONE_USER_NUMBER, "body": "Sale today!"}
    auth = {"Authorization": f"Bearer {API_TOKEN}"}

    world.phone.send_sms("Stop")
    confirmation = world.phone.wait_for(lambda e: e["type"] == "message")
    assert confirmation["body"] == optout.DEFAULT_OPT_OUT_REPLY  # Twilio's own, from the sandbox
    assert confirmation["from_"] == world.settings.phone_number
    assert carrier.wait_idle()
    # The app got the STOP too, recorded it, and (SEND_OPT_OUT_CONFIRMATIONS off) sent nothing.
    assert [(m.direction, m.body) for m in state.messages()] == [("inbound", "Stop")]
    assert [e["type"] for e in world.phone.events() if e["type"] == "message"] == []

    # The app refuses from its own record (409): no request reaches Twilio.
    answer = requests.post(world.app_url + "/send_sms", json=send_sms, headers=auth, timeout=5)
    assert answer.status_code == 409
    assert len(state.messages()) == 1
    # An app that had not recorded it would hear Twilio's 21610.
    with pytest.raises(TwilioRestException) as refused:
        client.messages.create(to=PHONE_USER_NUMBER, from_=world.settings.phone_number, body="x")
    assert (refused.value.status, refused.value.code) == (400, 21610)

    world.phone.send_sms("START")
    confirmation = world.phone.wait_for(lambda e: e["type"] == "message")
    assert confirmation["body"] == optout.DEFAULT_OPT_IN_REPLY
    assert carrier.wait_idle()
    answer = requests.post(world.app_url + "/send_sms", json=send_sms, headers=auth, timeout=5)
    assert answer.status_code == 201
    assert world.phone.wait_for(lambda e: e["type"] == "message")["body"] == "Sale today!"
