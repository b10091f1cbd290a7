"""TwiML parsing and checking, and messaging's pure parts: segments and webhook parameters."""

from __future__ import annotations

import pytest
from twilio.twiml.messaging_response import Body, Media, Message, MessagingResponse
from twilio.twiml.voice_response import Dial, Gather, VoiceResponse

from dialtone.sandbox.carrier import messaging, twiml
from dialtone.sandbox.carrier.webhook_errors import Notice, TwilioFailure

# Documents Twilio would refuse cannot be built with the twilio library (it only makes valid
# TwiML), so the broken ones below are written out as raw strings on purpose.
NOT_XML = "<Response><Say>unclosed</Response>"


def codes(document: twiml.Document) -> list[int | None]:
    return [notice.code for notice in document.warnings]


def test_a_valid_voice_document_parses_into_verbs() -> None:
    response = VoiceResponse()
    gather = Gather(action="/menu", num_digits=1, timeout=5)
    gather.say("Press 1")
    gather.pause(length=1)
    response.append(gather)
    response.redirect("/voice")
    document = twiml.parse(str(response), "voice", "https://app.example/voice")
    assert [verb.name for verb in document.verbs] == ["Gather", "Redirect"]
    assert [child.name for child in document.verbs[0].children] == ["Say", "Pause"]
    assert document.verbs[0].get("numDigits") == "1"
    assert document.warnings == ()


def test_invalid_xml_is_12100() -> None:
    with pytest.raises(TwilioFailure) as caught:
        twiml.parse(NOT_XML, "voice")
    assert caught.value.notice.code == 12100


def test_a_root_other_than_response_is_12102() -> None:
    with pytest.raises(TwilioFailure) as caught:
        twiml.parse("<Reply><Say>hi</Say></Reply>", "voice")
    assert caught.value.notice.code == 12102


@pytest.mark.parametrize(
    "document",
    [
        "<Response><Shout>hi</Shout></Response>",  # unknown verb
        "<Response><say>hi</say></Response>",  # TwiML is case-sensitive
        "<Response><Dial><Say>hi</Say></Dial></Response>",  # Say nested in Dial
        "<Response><Gather><Gather/></Gather></Response>",  # Gather nested in Gather
        "<Response><Gather><Say>x</Say><Record/></Gather></Response>",
        "<Response><Queue>support</Queue></Response>",  # a noun used as a verb
        "<Response>loose text</Response>",
    ],
)
def test_unknown_or_misplaced_voice_elements_are_12200(document: str) -> None:
    with pytest.raises(TwilioFailure) as caught:
        twiml.parse(document, "voice")
    assert caught.value.notice.code == 12200
    assert caught.value.notice.fatal


def test_the_nesting_message_names_what_is_allowed() -> None:
    with pytest.raises(TwilioFailure) as caught:
        twiml.parse("<Response><Gather><Dial>+15550001111</Dial></Gather></Response>", "voice")
    message = caught.value.notice.message
    assert "<Dial> cannot be nested in <Gather>" in message
    assert "Pause, Play, Say" in message
    assert "13320" in message


def test_voice_verbs_are_refused_in_a_messaging_reply() -> None:
    response = VoiceResponse()
    response.say("hello")
    with pytest.raises(TwilioFailure) as caught:
        twiml.parse(str(response), "messaging")
    assert caught.value.notice.code == 12200


def test_bad_attribute_values_are_warnings_with_the_verbs_code() -> None:
    document = twiml.parse(
        '<Response><Gather timeout="soon" numDigits="0" finishOnKey="ab" method="PUT">'
        '<Say loop="-1">x</Say></Gather><Pause length="x"/><Record maxLength="0"/>'
        '<Redirect method="DELETE">/next</Redirect><Say></Say>'
        '<Dial timeout="0"><Number>not a number</Number></Dial>'
        '<Enqueue waitUrl="ftp://x/y">support</Enqueue></Response>',
        "voice",
    )
    assert sorted(c for c in codes(document) if c) == sorted(
        [13313, 13314, 13310, 13312, 13322, 13910, 13612, 13710, 13520, 13212, 13223, 14202]
    )
    assert not any(notice.fatal for notice in document.warnings)


def test_queue_names_are_checked() -> None:
    dial = Dial()
    dial.queue("q" * 65)
    response = VoiceResponse()
    response.append(dial)
    response.enqueue("")
    assert codes(twiml.parse(str(response), "voice")) == [14213, 14204]


def test_messaging_document_becomes_messages() -> None:
    response = MessagingResponse()
    response.message("Hello")
    message = Message(to="+15550009999")
    message.append(Body("With a picture"))
    message.append(Media("/cat.jpg"))
    response.append(message)
    response.redirect("/more")
    response.message("never sent: after the Redirect")
    document = twiml.parse(str(response), "messaging", "https://app.example/sms")
    messages = messaging.messages_from(document, default_to="+15557654321", default_from="+1555")
    assert [(m.to, m.from_, m.body, m.media_urls) for m in messages] == [
        ("+15557654321", "+1555", "Hello", ()),
        ("+15550009999", "+1555", "With a picture", ("https://app.example/cat.jpg",)),
    ]


def test_an_empty_message_is_warning_14103() -> None:
    response = MessagingResponse()
    response.message("")
    document = twiml.parse(str(response), "messaging")
    assert codes(document) == [14103]
    assert messaging.messages_from(document, default_to="+1", default_from="+2") == []


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("", 1),
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("€" * 80, 1),  # extension-table characters take two septets: 160
        ("€" * 81, 2),
        ("é" * 160, 1),  # é is in the GSM-7 alphabet
        ("ç" * 70, 1),  # ç is not (only Ç is): UCS-2, 70 per segment
        ("ç" * 71, 2),
        ("😀" * 35, 1),  # an emoji is two UTF-16 units: 70
        ("😀" * 36, 2),
        ("Привет" * 20, 2),  # 120 UCS-2 characters: 67 per segment once split
    ],
)
def test_segment_counting(body: str, expected: int) -> None:
    assert messaging.segments(body) == expected


def test_inbound_params_are_twilios() -> None:
    params = messaging.inbound_params(
        message_sid="SM" + "a" * 32,
        account_sid="AC" + "b" * 32,
        from_="+15557654321",
        to="+15550001111",
        body="hi 😀",
        media=[messaging.Media("https://example.com/cat.jpg", "image/jpeg")],
    )
    assert params["MessageSid"] == params["SmsSid"] == params["SmsMessageSid"] == "SM" + "a" * 32
    assert params["NumMedia"] == "1"
    assert params["NumSegments"] == "1"
    assert params["MediaUrl0"] == "https://example.com/cat.jpg"
    assert params["MediaContentType0"] == "image/jpeg"
    assert params["SmsStatus"] == "received"
    assert params["ApiVersion"] == "2010-04-01"
    assert params["FromCountry"] == "US"
    assert {"FromCity", "FromState", "FromZip", "ToCity", "ToState", "ToZip"} <= set(params)
    assert "MessagingServiceSid" not in params


def test_status_params_carry_the_error_code_only_when_failed() -> None:
    common = {"message_sid": "SM1", "account_sid": "AC1", "from_": "+1", "to": "+2"}
    delivered = messaging.status_params(status="delivered", error_code=30003, **common)
    failed = messaging.status_params(status="failed", error_code=30003, **common)
    assert delivered["MessageStatus"] == delivered["SmsStatus"] == "delivered"
    assert "ErrorCode" not in delivered
    assert failed["ErrorCode"] == "30003"


def test_a_notice_names_its_code_or_the_sandbox_once() -> None:
    coded = Notice(11200, "the server answered HTTP 500", "http://app/sms")
    assert (
        str(coded)
        == "Error 11200: HTTP retrieval failure: the server answered HTTP 500 (http://app/sms)"
    )
    warning = Notice(12200, "unknown verb", fatal=False)
    assert str(warning) == "Warning 12200: Schema validation warning: unknown verb"
    assert str(Notice(None, "no SmsUrl")) == "Sandbox: no SmsUrl"
