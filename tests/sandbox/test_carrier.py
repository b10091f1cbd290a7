"""The carrier on its own (no REST server): calls from the phone, and stopping with calls live."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from twilio.twiml.messaging_response import MessagingResponse
from twilio.twiml.voice_response import Gather, VoiceResponse

from dialtone.bot import optout
from dialtone.sandbox.carrier.network import Carrier, PhoneError
from dialtone.sandbox.state import CallCreated, Event, SandboxState
from tests.support.twiml_app import TwimlApp, serve


def waiting_menu() -> VoiceResponse:
    """A Gather that waits (long enough) for keys that never come."""
    response = VoiceResponse()
    gather = Gather(action="/menu", num_digits=1, timeout=30)
    gather.say("Press 1.")
    response.append(gather)
    return response


@pytest.fixture
def state() -> SandboxState:
    return SandboxState()


@pytest.fixture
def app(state: SandboxState) -> Iterator[TwimlApp]:
    with serve(state.auth_token) as running:
        running.route("/voice", waiting_menu())
        running.route("/status", "")
        number = state.numbers()[0]
        state.update_number(
            number.sid, voice_url=running.url("/voice"), status_callback=running.url("/status")
        )
        yield running


@pytest.fixture
def carrier(state: SandboxState) -> Iterator[Carrier]:
    running = Carrier(state, time_scale=0.01).start()
    try:
        yield running
    finally:
        running.stop()


def wait_for(carrier: Carrier, kind: str, timeout: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    seen = 0
    while time.monotonic() < deadline:
        for event in carrier.events.since(seen, wait=0.1):
            seen = event["id"]
            if event["type"] == kind:
                return event
    raise AssertionError(f"no {kind} event within {timeout} s")


def test_two_quick_calls_from_the_phone_place_one(
    state: SandboxState, app: TwimlApp, carrier: Carrier
) -> None:
    # A slow listener widens the gap between "not on a call yet" and "now on this call".
    slowed = threading.Event()

    def slow(event: Event) -> None:
        if isinstance(event, CallCreated) and not slowed.is_set():
            slowed.set()
            time.sleep(0.2)

    state.subscribe(slow)
    results: list[str] = []

    def dial() -> None:
        try:
            results.append(carrier.place_call().sid)
        except PhoneError as exc:
            results.append(str(exc))

    first = threading.Thread(target=dial)
    first.start()
    assert slowed.wait(5)
    second = threading.Thread(target=dial)
    second.start()
    first.join(5)
    second.join(5)
    assert len(state.calls()) == 1
    assert sorted(results)[0].startswith("CA")
    assert "already on a call" in sorted(results)[1]


def test_stopping_ends_a_live_call_without_webhooks(
    state: SandboxState, app: TwimlApp, carrier: Carrier, caplog: pytest.LogCaptureFixture
) -> None:
    call = carrier.place_call()
    wait_for(carrier, "gather")
    carrier.stop()
    assert state.call(call.sid).status == "completed"
    assert app.requests_to("/status") == []  # Twilio's network is going away with the app
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_stopping_after_the_app_died_reports_nothing(
    state: SandboxState, carrier: Carrier, caplog: pytest.LogCaptureFixture
) -> None:
    # make dev on Ctrl-C: the app child goes first, then the sandbox stops with the call live.
    with serve(state.auth_token) as app:
        app.route("/voice", waiting_menu())
        state.update_number(
            state.numbers()[0].sid, voice_url=app.url("/voice"), status_callback=app.url("/status")
        )
        call = carrier.place_call()
        wait_for(carrier, "gather")
    carrier.stop()
    assert state.call(call.sid).status == "completed"
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_an_apps_own_stop_confirmation_is_refused_with_21610(
    state: SandboxState, carrier: Carrier
) -> None:
    # An app with SEND_OPT_OUT_CONFIRMATIONS on answers STOP with a <Message>: Twilio has
    # already confirmed, and refuses the app's reply to a number that just opted out.
    with serve(state.auth_token) as app:
        reply = MessagingResponse()
        reply.message("You are unsubscribed (from the app).")
        app.route("/sms", reply)
        state.update_number(state.numbers()[0].sid, sms_url=app.url("/sms"))
        carrier.send_sms("STOP")
        assert carrier.wait_idle()
        assert [r.params["Body"] for r in app.requests_to("/sms")] == ["STOP"]  # still passed on
    shown = carrier.events.since(0)
    texts = [e["body"] for e in shown if e["type"] == "message"]
    assert texts == [optout.DEFAULT_OPT_OUT_REPLY]
    (notice,) = [e for e in shown if e["type"] == "error"]
    assert "21610" in notice["text"]
    refused = [m for m in state.messages() if m.direction == "outbound-reply"]
    assert [(m.status, m.error_code) for m in refused] == [("failed", 21610)]
