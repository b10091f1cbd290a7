"""Issue 10, messaging and failure on demand: statuses, callbacks, keywords and Messaging Service
behaviour as Twilio documents them, driven as an app would (the twilio library with
TWILIO_API_URL, a webhook app on loopback, the phone API). docs/sandbox-fidelity.md lists them."""

from __future__ import annotations

from typing import Any

import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.twiml.messaging_response import MessagingResponse

from dialtone.bot import optout
from dialtone.sandbox.phone.client import PhoneApiError
from tests.sandbox.conftest import Rig, kinds

SERVICE = "MG" + "0" * 32
STATUS_PAGE = "Outbound Message Status in Status Callbacks"  # the Twilio page these follow


def callbacks(rig: Rig, sid: str, count: int) -> list[tuple[str, str | None]]:
    """(MessageStatus, ErrorCode) of the first `count` status callbacks about message `sid`."""
    received = [r.params for r in rig.requests("/status", count)]  # waits for `count` (bounded)
    about = [p for p in received if p.get("MessageSid") == sid]
    return [(p["MessageStatus"], p.get("ErrorCode")) for p in about]


def reply(text: str) -> MessagingResponse:
    response = MessagingResponse()
    response.message(text)
    return response


def test_no_callback_for_the_initial_queued_status(rig: Rig) -> None:
    # STATUS_PAGE: "A status callback request is not sent for the initial status".
    message = rig.client.messages.create(
        to=rig.phone_number, from_=rig.number, body="hi", status_callback=rig.app.url("/status")
    )
    assert message.status == "queued"
    assert callbacks(rig, message.sid, 2) == [("sent", None), ("delivered", None)]


def test_a_messaging_service_message_starts_accepted_without_a_sender(rig: Rig) -> None:
    # STATUS_PAGE: with a Messaging Service the initial status is accepted; the API description:
    # num_segments "is initially 0, since a sender hasn't yet been assigned".
    message = rig.client.messages.create(
        to=rig.phone_number,
        messaging_service_sid=SERVICE,
        body="hi",
        status_callback=rig.app.url("/status"),
    )
    assert (message.status, message.from_, message.num_segments) == ("accepted", None, "0")
    got = callbacks(rig, message.sid, 3)
    assert [status for status, _ in got] == ["queued", "sent", "delivered"]  # never "sending"
    fetched = rig.client.messages(message.sid).fetch()
    assert (fetched.from_, fetched.num_segments) == (rig.number, "1")
    params = rig.app.requests_to("/status")[0].params
    assert params["MessagingServiceSid"] == SERVICE


def test_a_messaging_services_opt_out_covers_its_whole_pool(rig: Rig) -> None:
    # Twilio's opt-out keywords article (and its Proxy page): with a Messaging Service an
    # opt-out applies to every number in the service; a lone number's only to that number.
    rig.app.route("/sms", "")
    other = rig.sandbox.state.add_number("+15557770000").phone_number
    rig.phone.send_sms("STOP")
    rig.requests("/sms", 1)
    with pytest.raises(TwilioRestException) as refused:
        rig.client.messages.create(to=rig.phone_number, messaging_service_sid=SERVICE, body="x")
    assert refused.value.code == 21610
    sent = rig.client.messages.create(to=rig.phone_number, from_=other, body="from another")
    assert sent.status == "queued"


def test_help_gets_twilios_default_reply_and_still_reaches_the_app(rig: Rig) -> None:
    # Twilio's opt-out keywords article: HELP and INFO get Twilio's default reply on long codes,
    # and the message still goes to the app, so the sender gets both answers.
    rig.app.route("/sms", reply("App help: call us."))
    rig.phone.send_sms("help")
    texts = [rig.phone.wait_for(lambda e: e["type"] == "message") for _ in range(2)]
    twilios = [t for t in texts if t.get("auto_reply")]
    apps = [t for t in texts if not t.get("auto_reply")]
    assert [t["body"] for t in twilios] == [optout.DEFAULT_HELP_REPLY]
    assert [t["body"] for t in apps] == ["App help: call us."]
    assert rig.app.requests_to("/sms")[0].params["Body"] == "help"


def test_a_sender_who_opted_out_gets_no_help_reply(rig: Rig) -> None:
    rig.app.route("/sms", "")
    rig.phone.send_sms("STOP")
    rig.phone.send_sms("INFO")
    rig.requests("/sms", 2)
    assert rig.sandbox.carrier is not None
    rig.sandbox.carrier.wait_idle()
    auto = [e["body"] for e in kinds(rig.phone.events(), "message") if e.get("auto_reply")]
    assert auto == [optout.DEFAULT_OPT_OUT_REPLY]


def test_a_content_sid_alone_is_a_message(rig: Rig) -> None:
    # Messages resource: ContentSid may replace Body (a Content Template); no 21602.
    message = rig.client.messages.create(
        to=rig.phone_number, from_=rig.number, content_sid="HX" + "0" * 32
    )
    assert message.status == "queued"


# --- failure on demand ----------------------------------------------------------------------


@pytest.mark.parametrize("code", [30003, 30005, 30006, 30007, 30008])
def test_the_next_message_can_be_made_undelivered(rig: Rig, code: int) -> None:
    # STATUS_PAGE: undelivered follows sent, and its callback carries the ErrorCode.
    rig.phone.fail_messages(code)
    message = rig.client.messages.create(
        to=rig.phone_number, from_=rig.number, body="hi", status_callback=rig.app.url("/status")
    )
    assert callbacks(rig, message.sid, 2) == [("sent", None), ("undelivered", str(code))]
    fetched = rig.client.messages(message.sid).fetch()
    assert (fetched.status, fetched.error_code) == ("undelivered", code)
    shown = rig.phone.wait_for(lambda e: e["type"] == "message_status" and e["status"] != "sent")
    assert (shown["status"], shown["error_code"]) == ("undelivered", code)


def test_the_next_messages_can_be_made_failed_then_delivery_resumes(rig: Rig) -> None:
    rig.phone.fail_messages(30001, status="failed", count=2)
    sids = [
        rig.client.messages.create(
            to=rig.phone_number,
            from_=rig.number,
            body=f"try {n}",
            status_callback=rig.app.url("/status"),
        ).sid
        for n in range(3)
    ]
    rig.requests("/status", 4)
    assert callbacks(rig, sids[0], 4) == [("failed", "30001")]  # never sent
    assert callbacks(rig, sids[1], 4) == [("failed", "30001")]
    assert callbacks(rig, sids[2], 4) == [("sent", None), ("delivered", None)]
    assert rig.sandbox.carrier is not None
    assert rig.sandbox.carrier.failures.pending() == {"messages": [], "calls": []}


@pytest.mark.parametrize(
    ("status", "sequence"),
    [
        ("busy", ["initiated", "ringing", "busy"]),
        ("no-answer", ["initiated", "ringing", "no-answer"]),
        ("failed", ["initiated", "failed"]),  # never rings
    ],
)
def test_the_next_call_can_be_made_busy_no_answer_or_failed(
    rig: Rig, status: str, sequence: list[str]
) -> None:
    # Calls resource (Status values) and "Receive status callbacks" (StatusCallbackEvent).
    rig.app.route("/call-status", "")
    rig.phone.fail_calls(status)
    call = rig.client.calls.create(
        to=rig.phone_number,
        from_=rig.number,
        url=rig.app.url("/voice"),
        status_callback=rig.app.url("/call-status"),
        status_callback_event=["initiated", "ringing", "answered", "completed"],
    )
    got = rig.requests("/call-status", len(sequence))
    assert [r.params["CallStatus"] for r in got] == sequence
    assert rig.client.calls(call.sid).fetch().status == status
    assert rig.app.requests_to("/voice") == []


def test_failures_are_planned_over_http_with_clear_errors(rig: Rig) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"kind": "message", "error_code": 12345}, "30003"),
        ({"kind": "message", "error_code": 30003, "status": "delivered"}, "undelivered"),
        ({"kind": "call", "status": "completed"}, "busy"),
        ({"kind": "fax"}, "kind"),
        ({"kind": "call", "status": "busy", "count": 0}, "count"),
    ]
    for payload, message in cases:
        with pytest.raises(PhoneApiError) as refused:
            rig.phone._request("POST", "/_phone/failures", payload)
        assert refused.value.status == 400
        assert message in str(refused.value)
    planned = rig.phone.fail_calls("busy", to="+15551234567", count=2)
    assert planned == {"kind": "call", "to": "+15551234567", "status": "busy", "count": 2}
    pending = rig.phone.failures()
    assert pending["calls"] == [{"to": "+15551234567", "status": "busy"}] * 2
