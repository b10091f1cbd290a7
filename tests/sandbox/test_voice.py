"""The voice engine over real HTTP on loopback: webhooks signed, TwiML carried out like Twilio."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from twilio.twiml.messaging_response import MessagingResponse
from twilio.twiml.voice_response import Dial, Gather, VoiceResponse

from dialtone.sandbox.carrier import messaging
from dialtone.sandbox.carrier.call_peer import CallInfo, RecordResult
from dialtone.sandbox.carrier.queues import QueueRegistry
from dialtone.sandbox.carrier.voice import Call, voice_params
from dialtone.sandbox.carrier.webhook_client import Hook, WebhookClient
from dialtone.sandbox.carrier.webhook_errors import Notice
from tests.support.twiml_app import TwimlApp, serve

AUTH_TOKEN = "sandbox-auth-token-0123456789ab"
ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
NUMBER = "+15550001111"
CALLER = "+15557654321"


class ScriptedPeer:
    """A phone that answers from a script and remembers everything it was shown."""

    def __init__(self, digits: list[str | None] | None = None, **answers: Any) -> None:
        self.digits = list(digits or [])
        self.answers = answers
        self.events: list[tuple[str, Any]] = []
        self.notices: list[Notice] = []
        self.on_gather: Any = None

    def say(self, text: str, voice: str | None, language: str | None) -> None:
        self.events.append(("say", text))

    def play(self, url: str) -> None:
        self.events.append(("play", url))

    def pause(self, seconds: int) -> None:
        self.events.append(("pause", seconds))

    def gather(self, num_digits: int | None, timeout: int, finish_on_key: str) -> str | None:
        self.events.append(("gather", (num_digits, timeout, finish_on_key)))
        return self.digits.pop(0) if self.digits else None

    def record(
        self, max_length: int, timeout: int, finish_on_key: str, play_beep: bool
    ) -> RecordResult | None:
        self.events.append(("record", max_length))
        result: RecordResult | None = self.answers.get("record")
        return result

    def dialled(self, kind: str, target: str) -> str | None:
        self.events.append(("dialled", (kind, target)))
        status: str | None = self.answers.get("dial_status")
        return status

    def connected(self, party: str) -> None:
        self.events.append(("connected", party))

    def sms(self, to: str, body: str) -> None:
        self.events.append(("sms", (to, body)))

    def ended(self, status: str, reason: str) -> None:
        self.events.append(("ended", status))

    def error(self, notice: Notice) -> None:
        self.notices.append(notice)

    def said(self) -> list[str]:
        return [text for kind, text in self.events if kind == "say"]


@pytest.fixture
def app() -> Iterator[TwimlApp]:
    with serve(AUTH_TOKEN) as running:
        yield running


@pytest.fixture
def client() -> WebhookClient:
    return WebhookClient(AUTH_TOKEN, connect_timeout=2, total_timeout=5)


def make_call(
    app: TwimlApp,
    client: WebhookClient,
    peer: ScriptedPeer,
    path: str = "/voice",
    *,
    sid: str = "CA" + "1" * 32,
    **kwargs: Any,
) -> tuple[Call, list[tuple[str, dict[str, str]]]]:
    statuses: list[tuple[str, dict[str, str]]] = []
    call = Call(
        CallInfo(sid, ACCOUNT_SID, CALLER, NUMBER),
        kwargs.pop("hook", Hook(app.url(path))),
        client=client,
        peer=peer,
        on_status=lambda status, params: statuses.append((status, dict(params))),
        time_scale=0.01,
        **kwargs,
    )
    return call, statuses


def say_twiml(text: str) -> VoiceResponse:
    response = VoiceResponse()
    response.say(text)
    return response


def hangup_twiml() -> VoiceResponse:
    response = VoiceResponse()
    response.hangup()
    return response


def menu() -> VoiceResponse:
    response = VoiceResponse()
    gather = Gather(action="/menu", num_digits=1, timeout=3)
    gather.say("Press 1 for news, 2 for weather.")
    response.append(gather)
    response.say("We did not hear anything.")
    return response


def test_a_gather_walk_posts_digits_to_the_action(app: TwimlApp, client: WebhookClient) -> None:
    app.route("/voice", menu())
    app.route("/menu", lambda form: say_twiml(f"You chose {form['Digits']}."))
    peer = ScriptedPeer(digits=["2"])
    call, statuses = make_call(app, client, peer)

    assert call.run() == "completed"

    first, menu_post = app.received
    assert all(request.signature_ok for request in app.received)
    assert first.params["CallStatus"] == "ringing"
    assert menu_post.path == "/menu"
    assert menu_post.params["Digits"] == "2"
    assert menu_post.params["CallStatus"] == "in-progress"
    for key, value in {
        "CallSid": "CA" + "1" * 32,
        "AccountSid": ACCOUNT_SID,
        "From": CALLER,
        "Caller": CALLER,
        "To": NUMBER,
        "Called": NUMBER,
        "Direction": "inbound",
        "ApiVersion": "2010-04-01",
    }.items():
        assert menu_post.params[key] == value
    assert menu_post.headers["User-Agent"].startswith("TwilioProxy/")
    assert menu_post.headers["I-Twilio-Idempotency-Token"]
    assert peer.said() == ["Press 1 for news, 2 for weather.", "You chose 2."]
    assert ("gather", (1, 3, "#")) in peer.events
    assert [status for status, _ in statuses] == ["in-progress", "completed"]
    assert "CallDuration" in statuses[-1][1]


def test_no_input_carries_on_with_the_next_verb(app: TwimlApp, client: WebhookClient) -> None:
    app.route("/voice", menu())
    peer = ScriptedPeer(digits=[None])
    call, _ = make_call(app, client, peer)
    assert call.run() == "completed"
    assert peer.said()[-1] == "We did not hear anything."
    assert app.requests_to("/menu") == []


def test_finish_on_key_is_stripped_and_get_puts_params_in_the_query(
    app: TwimlApp, client: WebhookClient
) -> None:
    response = VoiceResponse()
    response.gather(action="/pin?step=1", method="GET")
    app.route("/voice", response)
    app.route("/pin", VoiceResponse())
    call, _ = make_call(app, client, ScriptedPeer(digits=["1234#"]))
    call.run()
    (pin,) = app.requests_to("/pin")
    assert pin.method == "GET"
    assert pin.signature_ok
    assert pin.params["Digits"] == "1234"
    assert pin.params["FinishedOnKey"] == "#"
    assert pin.params["step"] == "1"


def test_record_posts_its_fields(app: TwimlApp, client: WebhookClient) -> None:
    response = VoiceResponse()
    response.record(action="/recorded", max_length=30)
    app.route("/voice", response)
    app.route("/recorded", say_twiml("Thanks"))
    peer = ScriptedPeer(record=RecordResult(duration=7, digits="#"))
    call, _ = make_call(app, client, peer, recording_base_url="http://sandbox.local")
    call.run()
    (recorded,) = app.requests_to("/recorded")
    sid = recorded.params["RecordingSid"]
    assert re.fullmatch(r"RE[0-9a-f]{32}", sid)
    assert recorded.params["RecordingUrl"] == (
        f"http://sandbox.local/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/{sid}"
    )
    assert recorded.params["RecordingDuration"] == "7"
    assert recorded.params["Digits"] == "#"
    assert ("record", 30) in peer.events


def test_dial_reports_the_number_and_posts_dial_call_status(
    app: TwimlApp, client: WebhookClient
) -> None:
    response = VoiceResponse()
    response.dial("+15550002222", action="/dialled", timeout=10)
    app.route("/voice", response)
    app.route("/dialled", hangup_twiml())
    peer = ScriptedPeer(dial_status="busy")
    call, _ = make_call(app, client, peer)
    call.run()
    assert ("dialled", ("number", "+15550002222")) in peer.events
    (dialled,) = app.requests_to("/dialled")
    assert dialled.params["DialCallStatus"] == "busy"
    assert re.fullmatch(r"CA[0-9a-f]{32}", dialled.params["DialCallSid"])


def test_a_redirect_loop_ends_the_call(app: TwimlApp, client: WebhookClient) -> None:
    response = VoiceResponse()
    response.say("Looping")
    response.redirect("/voice")
    app.route("/voice", response)
    peer = ScriptedPeer()
    call, _ = make_call(app, client, peer, max_redirects=3)
    assert call.run() == "completed"
    assert len(app.requests_to("/voice")) == 4
    assert [n.code for n in peer.notices] == [None]
    assert "Redirect" in peer.notices[0].message


def test_reject_ends_an_unanswered_call_as_busy(app: TwimlApp, client: WebhookClient) -> None:
    response = VoiceResponse()
    response.reject(reason="busy")
    app.route("/voice", response)
    call, statuses = make_call(app, client, ScriptedPeer())
    assert call.run() == "busy"
    assert [status for status, _ in statuses] == ["busy"]
    assert statuses[0][1]["CallDuration"] == "0"


def test_sms_inside_a_call_goes_through_the_callback(app: TwimlApp, client: WebhookClient) -> None:
    response = VoiceResponse()
    response.sms("Here is the link", action="/sent")
    app.route("/voice", response)
    app.route("/sent", say_twiml("Sent"))
    sent: list[messaging.OutboundMessage] = []

    def send(message: messaging.OutboundMessage) -> str:
        sent.append(message)
        return "SM" + "9" * 32

    peer = ScriptedPeer()
    call, _ = make_call(app, client, peer, send_sms=send)
    call.run()
    assert [(m.to, m.from_, m.body) for m in sent] == [(CALLER, NUMBER, "Here is the link")]
    (after,) = app.requests_to("/sent")
    assert after.params["SmsSid"] == "SM" + "9" * 32
    assert peer.said() == ["Sent"]


def test_a_500_is_11200_and_the_fallback_url_is_used(app: TwimlApp, client: WebhookClient) -> None:
    app.route("/voice", "boom", status=500, content_type="text/plain")
    app.route("/fallback", say_twiml("From the fallback"))
    peer = ScriptedPeer()
    hook = Hook(app.url("/voice"), fallback_url=app.url("/fallback"))
    call, _ = make_call(app, client, peer, hook=hook)
    assert call.run() == "completed"
    assert [n.code for n in peer.notices] == [11200]
    assert "500" in peer.notices[0].message
    (fallback,) = app.requests_to("/fallback")
    assert fallback.params["ErrorCode"] == "11200"
    assert fallback.params["ErrorUrl"] == app.url("/voice")
    assert fallback.signature_ok
    assert peer.said() == ["From the fallback"]


def test_a_slow_answer_times_out_with_11205(app: TwimlApp) -> None:
    app.route("/voice", say_twiml("too late"), delay=1.0)
    quick = WebhookClient(AUTH_TOKEN, connect_timeout=1, total_timeout=0.2)
    peer = ScriptedPeer()
    call, statuses = make_call(app, quick, peer)
    assert call.run() == "completed"
    assert [n.code for n in peer.notices] == [11205]
    # Twilio answers to play its announcement, even when the first webhook failed.
    assert [status for status, _ in statuses] == ["in-progress", "completed"]
    assert peer.said() == ["We are sorry, an application error has occurred. Goodbye."]


def test_invalid_twiml_in_an_action_is_12100_and_the_caller_hears_the_error(
    app: TwimlApp, client: WebhookClient
) -> None:
    app.route("/voice", menu())
    app.route("/menu", "<Response><Say>unclosed</Response>")  # deliberately broken
    peer = ScriptedPeer(digits=["1"])
    call, _ = make_call(app, client, peer)
    assert call.run() == "completed"
    assert [n.code for n in peer.notices] == [12100]
    assert peer.said()[-1].startswith("We are sorry, an application error has occurred")


def test_a_misplaced_verb_is_12200(app: TwimlApp, client: WebhookClient) -> None:
    app.route("/voice", "<Response><Dial><Say>hi</Say></Dial></Response>")  # deliberately wrong
    peer = ScriptedPeer()
    call, _ = make_call(app, client, peer)
    assert call.run() == "completed"
    assert [n.code for n in peer.notices] == [12200]
    assert peer.said() == ["We are sorry, an application error has occurred. Goodbye."]


def test_enqueue_waits_until_another_calls_dial_queue_connects(
    app: TwimlApp, client: WebhookClient
) -> None:
    caller_twiml = VoiceResponse()
    caller_twiml.enqueue("support", wait_url="/hold", action="/left-queue")
    hold = VoiceResponse()
    hold.say("Please hold")
    hold.pause(length=1)
    agent_twiml = VoiceResponse()
    dial = Dial(action="/agent-done", timeout=200)
    dial.queue("support")
    agent_twiml.append(dial)
    app.route("/caller", caller_twiml)
    app.route("/hold", hold)
    app.route("/agent", agent_twiml)
    app.route("/agent-done", hangup_twiml())
    app.route("/left-queue", VoiceResponse())
    queues = QueueRegistry()
    caller_peer, agent_peer = ScriptedPeer(), ScriptedPeer()
    caller, _ = make_call(app, client, caller_peer, "/caller", sid="CA" + "a" * 32, queues=queues)
    agent, _ = make_call(app, client, agent_peer, "/agent", sid="CA" + "b" * 32, queues=queues)

    caller_thread = threading.Thread(target=caller.run)
    caller_thread.start()
    wait_for(lambda: queues.size("support") == 1 and app.requests_to("/hold"))
    agent_thread = threading.Thread(target=agent.run)
    agent_thread.start()
    wait_for(lambda: ("connected", "CA" + "b" * 32) in caller_peer.events)
    caller.hangup()
    caller_thread.join(timeout=10)
    agent_thread.join(timeout=10)

    assert ("connected", "CA" + "a" * 32) in agent_peer.events
    assert "Please hold" in caller_peer.said()
    hold_request = app.requests_to("/hold")[0]
    assert hold_request.params["QueuePosition"] == "1"
    assert hold_request.params["QueueSid"].startswith("QU")
    (done,) = app.requests_to("/agent-done")
    assert done.params["DialCallStatus"] == "completed"
    assert done.params["DialCallSid"] == "CA" + "a" * 32
    (left,) = app.requests_to("/left-queue")
    assert left.params["QueueResult"] == "bridged"
    assert caller.status == agent.status == "completed"
    assert queues.size("support") == 0


def test_dial_to_an_empty_queue_gives_up_after_its_timeout(
    app: TwimlApp, client: WebhookClient
) -> None:
    response = VoiceResponse()
    dial = Dial(action="/agent-done", timeout=5)
    dial.queue("empty")
    response.append(dial)
    app.route("/voice", response)
    app.route("/agent-done", VoiceResponse())
    call, _ = make_call(app, client, ScriptedPeer())
    call.run()
    assert app.requests_to("/agent-done")[0].params["DialCallStatus"] == "no-answer"


def test_messaging_reply_follows_redirects(app: TwimlApp, client: WebhookClient) -> None:
    first = MessagingResponse()
    first.message("One")
    first.redirect("/more")
    more = MessagingResponse()
    more.message("Two", to="+15550009999")
    app.route("/sms", first)
    app.route("/more", more)
    params = messaging.inbound_params(
        message_sid="SM" + "c" * 32, account_sid=ACCOUNT_SID, from_=CALLER, to=NUMBER, body="hi"
    )
    result = messaging.reply(client, Hook(app.url("/sms")), params)
    assert [(m.to, m.from_, m.body) for m in result.messages] == [
        (CALLER, NUMBER, "One"),
        ("+15550009999", NUMBER, "Two"),
    ]
    assert result.notices == ()
    assert all(r.signature_ok and r.params["Body"] == "hi" for r in app.received)


def test_a_plain_text_answer_is_sent_as_the_reply(app: TwimlApp, client: WebhookClient) -> None:
    app.route("/sms", "Thanks! 😀", content_type="text/plain; charset=utf-8")
    params = messaging.inbound_params(
        message_sid="SM1", account_sid=ACCOUNT_SID, from_=CALLER, to=NUMBER, body="hi"
    )
    result = messaging.reply(client, Hook(app.url("/sms")), params)
    assert [m.body for m in result.messages] == ["Thanks! 😀"]


def test_a_json_answer_is_12300(app: TwimlApp, client: WebhookClient) -> None:
    app.route("/sms", '{"ok": true}', content_type="application/json")
    params = messaging.inbound_params(
        message_sid="SM1", account_sid=ACCOUNT_SID, from_=CALLER, to=NUMBER, body="hi"
    )
    result = messaging.reply(client, Hook(app.url("/sms")), params)
    assert result.messages == ()
    assert [n.code for n in result.notices] == [12300]


def test_connection_refused_is_11202(client: WebhookClient) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    params = messaging.inbound_params(
        message_sid="SM1", account_sid=ACCOUNT_SID, from_=CALLER, to=NUMBER, body="hi"
    )
    result = messaging.reply(client, Hook(f"http://127.0.0.1:{port}/sms"), params)
    assert [n.code for n in result.notices] == [11202]


def test_a_url_that_is_not_http_is_11100(client: WebhookClient) -> None:
    params = {"From": CALLER, "To": NUMBER}
    result = messaging.reply(client, Hook("ftp://example.com/sms"), params)
    assert [n.code for n in result.notices] == [11100]


def wait_for(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.01)


def test_voice_params_are_a_plain_function_of_the_call() -> None:
    info = CallInfo("CA" + "0" * 32, ACCOUNT_SID, CALLER, NUMBER, "outbound-api")
    params = voice_params(info, "completed", {"CallDuration": "3"})
    assert params["CallSid"] == info.call_sid
    assert params["CallStatus"] == "completed"
    assert params["Direction"] == "outbound-api"
    assert (params["From"], params["Caller"], params["To"], params["Called"]) == (
        CALLER,
        CALLER,
        NUMBER,
        NUMBER,
    )
    assert params["ToCountry"] == "US"
    assert params["CallDuration"] == "3"


def test_webhooks_never_go_through_a_proxy(
    app: TwimlApp, client: WebhookClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"  # a proxy that is not there
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.setenv(name, dead)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    app.route("/voice", say_twiml("Straight to the app."))
    call, _ = make_call(app, client, ScriptedPeer())
    assert call.run() == "completed"
    assert len(app.received) == 1
