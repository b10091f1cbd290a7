"""The record through the real routes: texts, opt-outs, status callbacks, calls, outbound sends."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping

import pytest
import webtest

from dialtone.bot import optout
from dialtone.bot.rules import NEAR_OPT_OUT_REPLY
from dialtone.record.base import IDEMPOTENCY_HEADER
from dialtone.record.base import RecordStore as Store
from dialtone.sandbox.server import SandboxServer
from dialtone.settings import Settings
from tests.conftest import API_TOKEN, AUTH_TOKEN, CALLER, PHONE_NUMBER, signed_post
from tests.support.forms import inbound_sms as text

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
Post = Callable[..., webtest.TestResponse]


def webhook(
    app: webtest.TestApp,
    path: str,
    form: Mapping[str, str],
    token: str | None = None,
    *,
    auth_token: str = AUTH_TOKEN,
) -> webtest.TestResponse:
    """POST a signed webhook as Twilio does, with an idempotency token when given; 2xx only."""
    headers = {IDEMPOTENCY_HEADER: token} if token else {}
    return signed_post(app, auth_token)(path, form, headers=headers, status=None)


def replies(response: webtest.TestResponse) -> list[str]:
    """The <Message> texts of a TwiML answer."""
    root = ET.fromstring(response.body)
    assert root.tag == "Response"
    return [child.text or "" for child in root if child.tag == "Message"]


# --- inbound texts ---------------------------------------------------------------------------


def test_an_inbound_text_is_recorded_before_the_answer(app: webtest.TestApp, store: Store) -> None:
    reply = webhook(app, "/sms_url", text("hello there"), token="tok-1")
    assert replies(reply)  # answered
    (message,) = store.messages()
    assert (message.direction, message.from_number, message.body) == (
        "inbound",
        CALLER,
        "hello there",
    )
    assert message.status == "received"


def test_a_retried_webhook_is_stored_once_and_answered_again(
    app: webtest.TestApp, store: Store
) -> None:
    first = webhook(app, "/sms_url", text("hours?"), token="tok-1")
    again = webhook(app, "/sms_url", text("hours?"), token="tok-1")
    assert replies(first) == replies(again)
    assert len(store.messages()) == 1
    assert len(store.events("SM" + "a" * 32)) == 1


def test_the_same_message_without_a_token_is_stored_once(
    app: webtest.TestApp, store: Store
) -> None:
    webhook(app, "/sms_url", text("hi"))
    webhook(app, "/sms_url", text("hi"))
    assert len(store.messages()) == 1


# --- opt-outs --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "word", ["STOP", "stop", " Unsubscribe ", "CANCEL", "END", "QUIT", "STOPALL"]
)
def test_stop_opts_out_and_gets_no_reply_by_default(
    app: webtest.TestApp, store: Store, word: str
) -> None:
    # Twilio answers STOP itself on long codes; a reply from here would fail with 21610.
    assert replies(webhook(app, "/sms_url", text(word))) == []
    assert store.is_opted_out(CALLER)
    (opt_out,) = store.opt_outs()
    assert opt_out.keyword == word.strip().upper()


def test_stop_with_punctuation_is_not_an_opt_out_but_says_what_is(
    app: webtest.TestApp, store: Store
) -> None:
    assert replies(webhook(app, "/sms_url", text("Stop."))) == [NEAR_OPT_OUT_REPLY]
    assert not store.is_opted_out(CALLER)


def test_an_opted_out_sender_gets_no_reply_until_start(app: webtest.TestApp, store: Store) -> None:
    webhook(app, "/sms_url", text("STOP", sid="SM" + "1" * 32))
    assert replies(webhook(app, "/sms_url", text("hours", sid="SM" + "2" * 32))) == []
    assert replies(webhook(app, "/sms_url", text("HELP", sid="SM" + "3" * 32))) == []
    assert replies(webhook(app, "/sms_url", text("START", sid="SM" + "4" * 32))) == []
    assert not store.is_opted_out(CALLER)
    assert replies(webhook(app, "/sms_url", text("hello", sid="SM" + "5" * 32))) != []
    assert len(store.messages(number=CALLER)) == 5  # every one of them recorded


@pytest.mark.parametrize("word", ["START", "yes", "UNSTOP"])
def test_start_and_its_synonyms_opt_back_in(app: webtest.TestApp, store: Store, word: str) -> None:
    webhook(app, "/sms_url", text("STOP", sid="SM" + "1" * 32))
    webhook(app, "/sms_url", text(word, sid="SM" + "2" * 32))
    assert not store.is_opted_out(CALLER)


def test_help_answers_the_rules_help_text(app: webtest.TestApp, settings: Settings) -> None:
    from dialtone.bot.rules import load_rules

    expected = load_rules(settings.rules_file).text_reply("help", sender=CALLER)
    assert replies(webhook(app, "/sms_url", text("HELP"))) == [expected]
    assert replies(webhook(app, "/sms_url", text("info", sid="SM" + "9" * 32))) == [expected]


def test_confirmations_when_dialtone_sends_them(
    settings: Settings, store: Store, make_app: Callable[..., webtest.TestApp]
) -> None:
    app = make_app(settings.with_overrides(send_opt_out_confirmations=True), store=store)
    stop = replies(webhook(app, "/sms_url", text("STOP", sid="SM" + "1" * 32)))
    assert stop == [optout.DEFAULT_OPT_OUT_REPLY]
    assert replies(webhook(app, "/sms_url", text("more", sid="SM" + "2" * 32))) == []
    start = replies(webhook(app, "/sms_url", text("START", sid="SM" + "3" * 32)))
    assert start == [optout.DEFAULT_OPT_IN_REPLY]


def test_stop_inside_a_sentence_is_an_ordinary_message(app: webtest.TestApp, store: Store) -> None:
    assert replies(webhook(app, "/sms_url", text("please stop"))) != []
    assert not store.is_opted_out(CALLER)


# --- status callbacks ------------------------------------------------------------------------


def message_status(sid: str, status: str, **extra: str) -> dict[str, str]:
    return {"MessageSid": sid, "MessageStatus": status, "To": CALLER, "From": PHONE_NUMBER, **extra}


def test_status_callbacks_out_of_order_never_move_backwards(
    app: webtest.TestApp, store: Store
) -> None:
    sid = "SM" + "b" * 32
    for i, status in enumerate(["queued", "delivered", "sent", "sending"]):
        assert webhook(app, "/status", message_status(sid, status), token=f"t{i}").status_int == 204
    message = store.message(sid)
    assert message is not None
    assert message.status == "delivered"
    events = store.events(sid)
    assert [(e.status, e.applied) for e in events] == [
        ("queued", True),
        ("delivered", True),
        ("sent", False),
        ("sending", False),
    ]


def test_a_repeated_status_callback_is_stored_once(app: webtest.TestApp, store: Store) -> None:
    sid = "SM" + "c" * 32
    webhook(app, "/status", message_status(sid, "delivered"), token="same")
    webhook(app, "/status", message_status(sid, "delivered"), token="same")
    assert len(store.events(sid)) == 1


def test_a_failed_delivery_keeps_its_error_code(app: webtest.TestApp, store: Store) -> None:
    sid = "SM" + "d" * 32
    webhook(app, "/status", message_status(sid, "undelivered", ErrorCode="30003"))
    message = store.message(sid)
    assert message is not None
    assert (message.status, message.error_code) == ("undelivered", 30003)


def test_call_status_callbacks_are_recorded(app: webtest.TestApp, store: Store) -> None:
    sid = "CA" + "e" * 32
    form = {
        "CallSid": sid,
        "CallStatus": "completed",
        "CallDuration": "42",
        "Direction": "outbound-api",
    }
    webhook(app, "/status", form)
    webhook(app, "/status", {**form, "CallStatus": "ringing"})
    call = store.call(sid)
    assert call is not None
    assert (call.status, call.duration, call.direction) == ("completed", 42, "outbound")


@pytest.mark.parametrize("path", ["/status", "/voice_url"])
def test_a_call_duration_beyond_the_columns_is_recorded_as_unknown(
    app: webtest.TestApp, store: Store, path: str
) -> None:
    # Signed, so Twilio's (or a leaked token's): the call is still recorded and answered.
    sid = "CA" + "9" * 32
    form = {"CallSid": sid, "CallStatus": "ringing", "Direction": "inbound", "From": CALLER}
    response = webhook(app, path, {**form, "CallDuration": "9" * 20})
    assert response.status_int == (204 if path == "/status" else 200)
    if path == "/voice_url":
        assert b"<Gather" in response.body  # the menu, not the apology
    call = store.call(sid)
    assert call is not None
    assert (call.status, call.duration) == ("ringing", None)


def test_an_error_code_beyond_the_columns_is_recorded_as_unknown(
    app: webtest.TestApp, store: Store
) -> None:
    sid = "SM" + "9" * 32
    webhook(app, "/status", message_status(sid, "undelivered", ErrorCode="9" * 20))
    message = store.message(sid)
    assert message is not None
    assert (message.status, message.error_code) == ("undelivered", None)


# --- calls -----------------------------------------------------------------------------------


def test_a_call_and_the_digits_pressed_are_recorded(app: webtest.TestApp, store: Store) -> None:
    sid = "CA" + "f" * 32
    call = {
        "CallSid": sid,
        "From": CALLER,
        "To": PHONE_NUMBER,
        "CallStatus": "ringing",
        "Direction": "inbound",
    }
    webhook(app, "/voice_url", call, token="v1")
    webhook(
        app, "/voice_url/menu", {**call, "CallStatus": "in-progress", "Digits": "1"}, token="v2"
    )
    recorded = store.call(sid)
    assert recorded is not None
    assert (recorded.direction, recorded.from_number, recorded.digits) == (
        "inbound",
        CALLER,
        ("1",),
    )


# --- outbound --------------------------------------------------------------------------------


@pytest.fixture
def live(
    sandbox_settings: Settings, store: Store, make_app: Callable[..., webtest.TestApp]
) -> webtest.TestApp:
    return make_app(sandbox_settings, store=store)


def test_a_sent_text_is_recorded_with_twilios_sid_and_status(
    live: webtest.TestApp, store: Store, sandbox: SandboxServer
) -> None:
    answer = live.post_json("/send_sms", {"to": CALLER, "body": "Hi!"}, headers=AUTH, status=201)
    message = store.message(answer.json["sid"])
    assert message is not None
    assert (message.direction, message.to_number, message.body) == ("outbound", CALLER, "Hi!")
    assert message.status == answer.json["status"]


def test_a_text_to_an_opted_out_number_is_refused_before_twilio(
    live: webtest.TestApp, store: Store, sandbox: SandboxServer
) -> None:
    webhook(live, "/sms_url", text("STOP"), auth_token=sandbox.state.auth_token)
    answer = live.post_json("/send_sms", {"to": CALLER, "body": "Hi!"}, headers=AUTH, status=409)
    assert answer.json["error"]["opted_out"] is True
    assert "START" in answer.json["error"]["message"]
    assert sandbox.faults.seen == []  # no request reached Twilio
    assert sandbox.state.messages() == []


def test_a_refused_text_is_recorded_with_twilios_code(
    sandbox_settings: Settings,
    store: Store,
    sandbox: SandboxServer,
    make_app: Callable[..., webtest.TestApp],
) -> None:
    app = make_app(sandbox_settings.with_overrides(phone_number="+15550009999"), store=store)
    app.post_json("/send_sms", {"to": CALLER, "body": "Hi!"}, headers=AUTH, status=502)
    (message,) = store.messages()
    assert (message.status, message.error_code, message.to_number) == ("failed", 21606, CALLER)
    assert sandbox.take_violations() == []  # a well-formed request Twilio refuses


def test_a_placed_call_is_recorded(
    live: webtest.TestApp, store: Store, sandbox: SandboxServer
) -> None:
    answer = live.post_json("/make_call", {"to": CALLER}, headers=AUTH, status=201)
    call = store.call(answer.json["sid"])
    assert call is not None
    assert (call.direction, call.to_number) == ("outbound", CALLER)


def test_a_refused_call_is_recorded_with_its_code(
    sandbox_settings: Settings,
    store: Store,
    sandbox: SandboxServer,
    make_app: Callable[..., webtest.TestApp],
) -> None:
    app = make_app(sandbox_settings.with_overrides(auth_token="wrong"), store=store)
    app.post_json("/make_call", {"to": CALLER}, headers=AUTH, status=502)
    (call,) = store.calls()
    assert call.status == "failed"
    (event,) = store.events(call.sid)
    assert event.payload["ErrorCode"] == "20003"


def test_twilios_21610_records_the_opt_out(
    sandbox_settings: Settings,
    store: Store,
    sandbox: SandboxServer,
    make_app: Callable[..., webtest.TestApp],
) -> None:
    # A STOP Dialtone never saw (sent while it was down): Twilio refuses, and the record learns.
    sandbox.state.opt_out(str(sandbox_settings.phone_number), CALLER)
    app = make_app(sandbox_settings, store=store)
    answer = app.post_json("/send_sms", {"to": CALLER, "body": "hi"}, headers=AUTH, status=502)
    assert answer.json["error"]["twilio_code"] == 21610
    assert store.is_opted_out(CALLER)
    assert sandbox.state.messages() == []
    app.post_json("/send_sms", {"to": CALLER, "body": "hi"}, headers=AUTH, status=409)
