"""The sandbox's REST API: through the real twilio library (no special cases), and raw for errors."""

from __future__ import annotations

import re
from typing import Any

import pytest
import requests
from twilio.base.exceptions import TwilioRestException

from dialtone.sandbox.server import SandboxServer
from dialtone.sandbox.state import ACCOUNT_SID, AUTH_TOKEN, Event, NumberUpdated
from dialtone.settings import Settings
from dialtone.twilio_api import TwilioHandle, make_client

PHONE = "+15555550100"
RFC2822 = re.compile(r"^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} \+0000$")
WEBHOOKS = {
    "voice_url": "https://app.example.com/voice_url",
    "voice_method": "GET",
    "voice_fallback_url": "https://app.example.com/voice_fallback",
    "voice_fallback_method": "GET",
    "status_callback": "https://app.example.com/status",
    "status_callback_method": "GET",
    "sms_url": "https://app.example.com/sms_url",
    "sms_method": "GET",
    "sms_fallback_url": "https://app.example.com/sms_fallback",
    "sms_fallback_method": "GET",
}


def api(sandbox: SandboxServer, resource: str) -> str:
    return f"{sandbox.url}/2010-04-01/Accounts/{ACCOUNT_SID}/{resource}"


def post(sandbox: SandboxServer, resource: str, data: Any, auth: Any = None) -> requests.Response:
    return requests.post(
        api(sandbox, resource), data=data, auth=auth or (ACCOUNT_SID, AUTH_TOKEN), timeout=5
    )


def get(sandbox: SandboxServer, resource: str, auth: Any = None) -> requests.Response:
    return requests.get(api(sandbox, resource), auth=auth or (ACCOUNT_SID, AUTH_TOKEN), timeout=5)


def assert_twilio_error(response: requests.Response, status: int, code: int) -> dict[str, Any]:
    assert response.status_code == status
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"code", "message", "more_info", "status"}
    assert body["code"] == code
    assert body["status"] == status
    assert body["more_info"] == f"https://www.twilio.com/docs/errors/{code}"
    return body


# --- through the twilio library -----------------------------------------------------------


def test_find_fetch_and_update_the_number(
    sandbox: SandboxServer, sandbox_settings: Settings
) -> None:
    events: list[Event] = []
    sandbox.state.subscribe(events.append)
    client = make_client(sandbox_settings)

    found = client.incoming_phone_numbers.list(phone_number=sandbox_settings.phone_number)
    assert [n.phone_number for n in found] == [sandbox_settings.phone_number]
    assert re.fullmatch(r"PN[0-9a-f]{32}", found[0].sid)
    assert client.incoming_phone_numbers.list(phone_number="+19998887777") == []

    updated = client.incoming_phone_numbers(found[0].sid).update(**WEBHOOKS)
    for field, value in WEBHOOKS.items():
        assert getattr(updated, field) == value
    fetched = client.incoming_phone_numbers(found[0].sid).fetch()
    assert {f: getattr(fetched, f) for f in WEBHOOKS} == WEBHOOKS
    assert sandbox.state.number(found[0].sid).sms_url == WEBHOOKS["sms_url"]
    assert [type(e) for e in events] == [NumberUpdated]
    assert isinstance(events[0], NumberUpdated)
    assert events[0].changed == frozenset(WEBHOOKS)

    # Clearing a URL is an update to "", as Twilio does it.
    cleared = client.incoming_phone_numbers(found[0].sid).update(voice_url="")
    assert cleared.voice_url == ""


def test_phone_number_filter_takes_partial_numbers_and_wildcards(
    sandbox: SandboxServer, sandbox_settings: Settings
) -> None:
    sandbox.state.add_number("+15555550199")
    client = make_client(sandbox_settings)
    assert len(client.incoming_phone_numbers.list(phone_number="555")) == 2
    assert [n.phone_number for n in client.incoming_phone_numbers.list(phone_number="01*9")] == [
        "+15555550199"
    ]


def test_send_fetch_and_list_messages(sandbox: SandboxServer, sandbox_settings: Settings) -> None:
    client = make_client(sandbox_settings)
    sms = client.messages.create(to=PHONE, from_=sandbox_settings.phone_number, body="Héllo 👋")
    assert re.fullmatch(r"SM[0-9a-f]{32}", sms.sid)
    assert (sms.status, sms.direction, sms.body) == ("queued", "outbound-api", "Héllo 👋")
    assert (sms.num_segments, sms.num_media, sms.price) == ("1", "0", None)
    assert sms.date_created is not None  # the library parsed Twilio's RFC 2822 timestamp

    mms = client.messages.create(
        to=PHONE, from_=sandbox_settings.phone_number, media_url=["https://x.example/a.png"]
    )
    assert re.fullmatch(r"MM[0-9a-f]{32}", mms.sid)
    assert sandbox.state.message(mms.sid).media_urls == ("https://x.example/a.png",)

    assert client.messages(sms.sid).fetch().body == "Héllo 👋"
    assert [m.sid for m in client.messages.list(to=PHONE)] == [mms.sid, sms.sid]
    assert client.messages.list(to="+19998887777") == []


def test_long_and_unicode_bodies_count_segments(
    sandbox: SandboxServer, sandbox_settings: Settings
) -> None:
    client = make_client(sandbox_settings)
    send = sandbox_settings.phone_number
    assert client.messages.create(to=PHONE, from_=send, body="a" * 160).num_segments == "1"
    assert client.messages.create(to=PHONE, from_=send, body="a" * 161).num_segments == "2"
    assert client.messages.create(to=PHONE, from_=send, body="é" * 1600).num_segments == "11"
    assert client.messages.create(to=PHONE, from_=send, body="Ж" * 71).num_segments == "2"


def test_twilio_handle_sends_through_the_sandbox(
    sandbox: SandboxServer, sandbox_settings: Settings
) -> None:
    message = TwilioHandle(sandbox_settings).send_message(PHONE, "hi", ["https://x.example/a.png"])
    stored = sandbox.state.message(message.sid)
    assert (stored.to, stored.from_, stored.body) == (PHONE, sandbox_settings.phone_number, "hi")
    assert stored.status_callback == f"{sandbox_settings.public_url}/status"

    whatsapp = TwilioHandle(sandbox_settings).send_message("whatsapp:" + PHONE, "hi")
    assert whatsapp.from_ == "whatsapp:" + str(sandbox_settings.phone_number)

    service = sandbox_settings.with_overrides(messaging_service_sid="MG" + "0" * 32)
    via_service = TwilioHandle(service).send_message(PHONE, "hi")
    assert via_service.messaging_service_sid == "MG" + "0" * 32
    # Twilio's API description: accepted, no sender and num_segments "0" until one is assigned.
    assert (via_service.status, via_service.from_, via_service.num_segments) == (
        "accepted",
        None,
        "0",
    )


def test_create_list_fetch_and_end_calls(
    sandbox: SandboxServer, sandbox_settings: Settings
) -> None:
    client = make_client(sandbox_settings)
    number = str(sandbox_settings.phone_number)
    call = client.calls.create(
        to=PHONE,
        from_=number,
        url="https://app.example.com/voice_url",
        status_callback="https://app.example.com/status",
        status_callback_event=["initiated", "completed"],
    )
    assert re.fullmatch(r"CA[0-9a-f]{32}", call.sid)
    assert (call.status, call.direction, call.to) == ("queued", "outbound-api", PHONE)
    assert call.from_formatted == "(500) 555-0006"
    stored = sandbox.state.call(call.sid)
    assert stored.status_callback_events == ("initiated", "completed")
    assert stored.phone_number_sid == sandbox.state.numbers()[0].sid

    inline = client.calls.create(to=PHONE, from_=number, twiml="<Response><Say>Hi</Say></Response>")
    assert [c.sid for c in client.calls.list()] == [inline.sid, call.sid]
    assert client.calls(call.sid).fetch().status == "queued"

    # An unanswered call is canceled; an answered one completes, with a duration.
    assert client.calls(inline.sid).update(status="canceled").status == "canceled"
    sandbox.state.set_call_status(call.sid, "in-progress")
    ended = client.calls(call.sid).update(status="completed")
    assert ended.status == "completed"
    assert ended.duration == "0"
    assert ended.end_time is not None
    assert [c.sid for c in client.calls.list(status="completed")] == [call.sid]


def test_redirecting_a_live_call_and_not_an_ended_one(
    sandbox: SandboxServer, sandbox_settings: Settings
) -> None:
    client = make_client(sandbox_settings)
    call = client.calls.create(
        to=PHONE, from_=sandbox_settings.phone_number, url="https://a.example/1"
    )
    redirected = client.calls(call.sid).update(url="https://a.example/2", method="GET")
    assert redirected.status == "queued"
    assert (sandbox.state.call(call.sid).url, sandbox.state.call(call.sid).method) == (
        "https://a.example/2",
        "GET",
    )
    client.calls(call.sid).update(status="completed")
    with pytest.raises(TwilioRestException) as caught:
        client.calls(call.sid).update(twiml="<Response><Hangup/></Response>")
    assert (caught.value.status, caught.value.code) == (400, 21220)


def test_library_raises_twilios_errors(sandbox: SandboxServer, sandbox_settings: Settings) -> None:
    client = make_client(sandbox_settings)
    with pytest.raises(TwilioRestException) as caught:
        client.messages.create(to="12345", from_=sandbox_settings.phone_number, body="x")
    assert (caught.value.status, caught.value.code) == (400, 21211)
    assert "12345" in caught.value.msg

    wrong = make_client(sandbox_settings.with_overrides(auth_token="not-the-token"))
    with pytest.raises(TwilioRestException) as caught:
        wrong.messages.create(to=PHONE, from_=sandbox_settings.phone_number, body="x")
    assert (caught.value.status, caught.value.code) == (401, 20003)


@pytest.mark.parametrize(
    ("to", "code"),
    [
        ("+15005550001", 21211),  # invalid
        ("+15005550002", 21612),  # Twilio cannot route to it
        ("+15005550003", 21408),  # no international permission
        ("+15005550004", 21610),  # blocked (unsubscribed)
        ("+15005550009", 21614),  # not a mobile number
    ],
)
def test_twilios_magic_to_numbers_are_refused_as_twilio_documents(
    sandbox: SandboxServer, sandbox_settings: Settings, to: str, code: int
) -> None:
    client = make_client(sandbox_settings)
    with pytest.raises(TwilioRestException) as caught:
        client.messages.create(to=to, from_=sandbox_settings.phone_number, body="x")
    assert (caught.value.status, caught.value.code) == (400, code)
    assert to in caught.value.msg
    assert sandbox.state.messages() == []  # refused: nothing queued, nothing delivered


def test_other_numbers_in_the_magic_range_are_sent(
    sandbox: SandboxServer, sandbox_settings: Settings
) -> None:
    client = make_client(sandbox_settings)
    sent = client.messages.create(to="+15005550005", from_=sandbox_settings.phone_number, body="x")
    assert sent.status == "queued"


def test_paging_follows_next_page_uri(sandbox: SandboxServer, sandbox_settings: Settings) -> None:
    for i in range(5):
        sandbox.state.create_message(
            to=PHONE, from_=str(sandbox_settings.phone_number), body=str(i)
        )
    client = make_client(sandbox_settings)
    assert [m.body for m in client.messages.list(page_size=2)] == ["4", "3", "2", "1", "0"]

    first = get(sandbox, "Messages.json?To=%2B15555550100&PageSize=2").json()
    assert [m["body"] for m in first["messages"]] == ["4", "3"]
    assert (first["page"], first["page_size"], first["start"], first["end"]) == (0, 2, 0, 1)
    assert first["previous_page_uri"] is None
    assert first["uri"] == first["first_page_uri"]
    assert first["next_page_uri"].startswith(f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json?")
    assert "To=%2B15555550100" in first["next_page_uri"]

    last = requests.get(
        sandbox.url + first["next_page_uri"].replace("Page=1", "Page=2"),
        auth=(ACCOUNT_SID, AUTH_TOKEN),
        timeout=5,
    ).json()
    assert [m["body"] for m in last["messages"]] == ["0"]
    assert (last["page"], last["start"], last["end"], last["next_page_uri"]) == (2, 4, 4, None)
    assert last["previous_page_uri"] is not None


def test_responses_use_twilios_timestamps_and_uris(sandbox: SandboxServer) -> None:
    body = post(
        sandbox, "Messages.json", {"To": PHONE, "From": sandbox.state.phone_number, "Body": "x"}
    )
    message = body.json()
    assert body.status_code == 201
    assert RFC2822.match(message["date_created"])
    assert message["uri"] == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{message['sid']}.json"
    assert message["subresource_uris"]["media"].endswith(f"/Messages/{message['sid']}/Media.json")
    assert message["api_version"] == "2010-04-01"


# --- errors, raw ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "auth",
    [None, (ACCOUNT_SID, "wrong-token"), ("AC" + "f" * 32, AUTH_TOKEN)],
    ids=["no credentials", "wrong token", "wrong account"],
)
def test_bad_credentials_are_401_with_20003(sandbox: SandboxServer, auth: Any) -> None:
    response = requests.get(api(sandbox, "IncomingPhoneNumbers.json"), auth=auth, timeout=5)
    body = assert_twilio_error(response, 401, 20003)
    assert body["message"] == "Authenticate"
    assert response.headers["WWW-Authenticate"].startswith("Basic")
    assert AUTH_TOKEN not in response.text


def test_another_accounts_sid_in_the_path_is_401(sandbox: SandboxServer) -> None:
    other = f"{sandbox.url}/2010-04-01/Accounts/AC{'f' * 32}/Messages.json"
    response = requests.get(other, auth=(ACCOUNT_SID, AUTH_TOKEN), timeout=5)
    assert_twilio_error(response, 401, 20003)


def test_message_without_to_is_21604(sandbox: SandboxServer) -> None:
    response = post(sandbox, "Messages.json", {"From": sandbox.state.phone_number, "Body": "x"})
    assert_twilio_error(response, 400, 21604)
    # The request also disagrees with the description; the checker saw it.
    assert [v.problem for v in sandbox.take_violations()] == ["required parameter To is missing"]


@pytest.mark.parametrize(
    ("data", "code", "violations"),
    [
        ({"To": "555-0100", "Body": "x"}, 21211, []),
        ({"To": "whatsapp:0100", "Body": "x"}, 21211, []),
        ({"To": PHONE}, 21602, []),
        ({"To": PHONE, "Body": ""}, 21602, []),
        ({"To": PHONE, "Body": "x" * 1601}, 21617, []),
        ({"To": PHONE, "Body": "x", "StatusCallback": "not a url"}, 21609,
         ["parameter StatusCallback='not a url' is not an absolute http(s) URL"]),
        ({"To": PHONE, "Body": "x", "From": "+19998887777"}, 21606, []),
    ],
    ids=["invalid To", "invalid WhatsApp To", "no Body or MediaUrl", "empty Body", "long Body",
         "bad StatusCallback", "From not ours"],
)  # fmt: skip
def test_invalid_messages_are_rejected_as_twilio_does(
    sandbox: SandboxServer, data: dict[str, str], code: int, violations: list[str]
) -> None:
    data.setdefault("From", str(sandbox.state.phone_number))
    assert_twilio_error(post(sandbox, "Messages.json", data), 400, code)
    assert sandbox.state.messages() == []
    # A bad StatusCallback is also against the description; the checker must see it.
    assert [v.problem for v in sandbox.take_violations()] == violations


def test_message_without_from_or_service_is_21603(sandbox: SandboxServer) -> None:
    assert_twilio_error(post(sandbox, "Messages.json", {"To": PHONE, "Body": "x"}), 400, 21603)


@pytest.mark.parametrize(
    ("data", "code", "violations"),
    [
        (
            {"From": "+15005550006", "Url": "https://a.example/"},
            21201,
            ["required parameter To is missing"],
        ),
        ({"To": PHONE, "Url": "https://a.example/"}, 21213, ["required parameter From is missing"]),
        ({"To": "0100", "From": "+15005550006", "Url": "https://a.example/"}, 21211, []),
        ({"To": PHONE, "From": "+19998887777", "Url": "https://a.example/"}, 21210, []),
        ({"To": PHONE, "From": "+15005550006"}, 21205, []),
        (
            {"To": PHONE, "From": "+15005550006", "Url": "/relative"},
            21205,
            ["parameter Url='/relative' is not an absolute http(s) URL"],
        ),
    ],
    ids=["no To", "no From", "invalid To", "From not ours", "no Url or Twiml", "relative Url"],
)
def test_invalid_calls_are_rejected_as_twilio_does(
    sandbox: SandboxServer, data: dict[str, str], code: int, violations: list[str]
) -> None:
    assert_twilio_error(post(sandbox, "Calls.json", data), 400, code)
    assert sandbox.state.calls() == []
    # Missing To/From and a relative Url are against the description too.
    assert [v.problem for v in sandbox.take_violations()] == violations


@pytest.mark.parametrize(
    "resource",
    [
        "Messages/SM" + "0" * 32 + ".json",
        "Calls/CA" + "0" * 32 + ".json",
        "IncomingPhoneNumbers/PN" + "0" * 32 + ".json",
    ],
)
def test_unknown_sids_are_404_with_20404(sandbox: SandboxServer, resource: str) -> None:
    body = assert_twilio_error(get(sandbox, resource), 404, 20404)
    assert resource in body["message"]
    if not resource.startswith("Messages/"):  # updates, for the resources that have them
        assert_twilio_error(post(sandbox, resource, {}), 404, 20404)


def test_unknown_paths_are_404_and_a_violation(sandbox: SandboxServer) -> None:
    assert_twilio_error(get(sandbox, "Queues.json"), 404, 20404)
    assert [v.problem for v in sandbox.take_violations()] == [
        "no such operation in the description"
    ]


def test_number_update_with_a_bad_url_is_21402(sandbox: SandboxServer) -> None:
    sid = sandbox.state.numbers()[0].sid
    response = post(sandbox, f"IncomingPhoneNumbers/{sid}.json", {"SmsUrl": "ftp://x"})
    assert_twilio_error(response, 400, 21402)
    assert sandbox.state.number(sid).sms_url == ""
    assert [v.problem for v in sandbox.take_violations()] == [
        "parameter SmsUrl='ftp://x' is not an absolute http(s) URL"
    ]


def test_bad_paging_values_are_400(sandbox: SandboxServer) -> None:
    assert_twilio_error(get(sandbox, "Calls.json?PageSize=lots"), 400, 400)
    assert sandbox.take_violations()


def test_a_failing_listener_does_not_break_the_api(sandbox: SandboxServer) -> None:
    def broken(event: Event) -> None:
        raise RuntimeError("listener bug")

    sandbox.state.subscribe(broken)
    response = post(
        sandbox, "Messages.json", {"To": PHONE, "From": sandbox.state.phone_number, "Body": "x"}
    )
    assert response.status_code == 201
