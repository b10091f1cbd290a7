"""The voice menu: POST /voice_url and its sibling routes, TwiML parsed with ElementTree."""

from __future__ import annotations

import logging
import socket
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest
import webtest

from dialtone.bot.voice_menu import HOLD_QUEUE, parse_attempt
from dialtone.devloop.sandbox import app_settings
from dialtone.record.store import Store
from dialtone.sandbox.server import SandboxServer
from dialtone.settings import Settings
from tests.conftest import ACCOUNT_SID, CALLER, PHONE_NUMBER, PUBLIC_URL, signed_post

Post = Callable[..., webtest.TestResponse]

FORWARD_TO = "+15550002222"
CALL = {
    "CallSid": "CA" + "1" * 32,
    "AccountSid": ACCOUNT_SID,
    "From": CALLER,
    "To": PHONE_NUMBER,
    "CallStatus": "in-progress",
    "Direction": "inbound",
}


def with_settings(**changes: Any) -> pytest.MarkDecorator:
    """Run a test with these settings changed (the `settings` fixture below applies them)."""
    return pytest.mark.parametrize("settings", [changes], indirect=True)


@pytest.fixture
def settings(
    settings: Settings, request: pytest.FixtureRequest, sandbox: SandboxServer
) -> Settings:
    """The tests' settings, changed by with_settings, with the sandbox as Twilio (given an
    account: `with_settings(account_sid=None)` keeps none). The app checks webhooks with the
    sandbox's auth token then, and post_webhook signs with it."""
    changed = settings.with_overrides(**getattr(request, "param", {}))
    return app_settings(sandbox, changed) if changed.has_credentials else changed


def twiml(reply: webtest.TestResponse) -> ET.Element:
    """The reply's <Response> element, after checking it is TwiML."""
    assert reply.status_int == 200
    assert reply.content_type == "text/xml"
    root = ET.fromstring(reply.body)
    assert root.tag == "Response"
    return root


def one(root: ET.Element, path: str) -> ET.Element:
    """The element at `path`, which must be there."""
    found = root.find(path)
    assert found is not None, f"no {path} in {ET.tostring(root, encoding='unicode')}"
    return found


def verbs(root: ET.Element) -> list[str]:
    return [child.tag for child in root]


def spoken(root: ET.Element) -> str:
    return " ".join(say.text or "" for say in root.iter("Say"))


def press(post_webhook: Post, digits: str, attempt: int = 1, **extra: str) -> ET.Element:
    return twiml(
        post_webhook(f"/voice_url/menu?attempt={attempt}", {**CALL, "Digits": digits, **extra})
    )


# --- the greeting and the menu --------------------------------------------------------------


def test_greeting_offers_a_one_key_dtmf_menu(post_webhook: Post) -> None:
    root = twiml(post_webhook("/voice_url", CALL))
    assert verbs(root) == ["Say", "Gather", "Say", "Redirect"]
    gather = one(root, "Gather")
    assert gather.get("input") == "dtmf"
    assert gather.get("numDigits") == "1"
    assert gather.get("action") == "/voice_url/menu?attempt=1"
    assert gather.get("method") == "POST"
    assert "Press 1" in spoken(gather)
    assert "Press 4" not in spoken(gather)  # no FORWARD_TO configured


@with_settings(forward_to=FORWARD_TO)
def test_greeting_lists_forwarding_when_configured(post_webhook: Post) -> None:
    gather = one(twiml(post_webhook("/voice_url", CALL)), "Gather")
    assert "Press 4" in spoken(gather)


@with_settings(blocked_callers=frozenset({CALLER}))
def test_blocked_caller_is_rejected(post_webhook: Post) -> None:
    root = twiml(post_webhook("/voice_url", CALL))
    assert verbs(root) == ["Reject"]
    other = twiml(post_webhook("/voice_url", {**CALL, "From": "+15559990000"}))
    assert "Gather" in verbs(other)


@with_settings(say_voice="Polly.Hans", say_language="de-DE", forward_to=FORWARD_TO)
def test_every_say_uses_the_configured_voice_and_language(post_webhook: Post) -> None:
    replies = [twiml(post_webhook("/voice_url", CALL))]
    replies += [press(post_webhook, digits) for digits in "1245789"]
    replies.append(twiml(post_webhook("/voice_url/hold", {**CALL, "QueuePosition": "1"})))
    says = [say for root in replies for say in root.iter("Say")]
    assert len(says) > 10
    assert {(say.get("voice"), say.get("language")) for say in says} == {("Polly.Hans", "de-DE")}


def test_utf8_caller_name_is_fine(post_webhook: Post) -> None:
    root = twiml(post_webhook("/voice_url", {**CALL, "CallerName": "José Müller 李雷 👋🏽"}))
    assert "Gather" in verbs(root)


# --- retries: no input or a wrong key, bounded ----------------------------------------------


def follow(redirect: ET.Element) -> str:
    """The path + query Twilio would request for a relative <Redirect>."""
    url = urljoin(PUBLIC_URL + "/voice_url/menu", redirect.text or "")
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


@pytest.mark.parametrize("settings", [{"menu_attempts": n} for n in (1, 3, 5)], indirect=True)
def test_silence_redirects_back_until_the_bound_then_hangs_up(
    post_webhook: Post, settings: Settings
) -> None:
    # The <Gather> times out, so Twilio runs the verbs after it: follow them as Twilio would.
    path, visits = "/voice_url", 0
    while True:
        root = twiml(post_webhook(path, CALL))
        visits += 1
        assert "I did not hear a choice" in spoken(root)
        redirect = root.find("Redirect")
        if redirect is None:
            break
        path = follow(redirect)
        assert path == f"/voice_url?attempt={visits + 1}"
    assert visits == settings.menu_attempts
    assert verbs(root)[-1] == "Hangup"


def test_wrong_key_says_so_and_redirects_with_the_next_attempt(post_webhook: Post) -> None:
    root = press(post_webhook, "7", attempt=1)
    assert "7 is not on the menu" in spoken(root)
    assert verbs(root) == ["Say", "Redirect"]
    redirect = one(root, "Redirect")
    assert follow(redirect) == "/voice_url?attempt=2"
    # The menu comes back without the welcome.
    again = twiml(post_webhook(follow(redirect), CALL))
    assert verbs(again)[0] == "Gather"
    assert one(again, "Gather").get("action") == "/voice_url/menu?attempt=2"


def test_wrong_key_on_the_last_attempt_hangs_up(post_webhook: Post, settings: Settings) -> None:
    root = press(post_webhook, "*", attempt=settings.menu_attempts)
    assert verbs(root)[-1] == "Hangup"
    assert root.find("Redirect") is None


def test_empty_digits_count_as_no_input(post_webhook: Post) -> None:
    root = press(post_webhook, "", attempt=2)
    assert "I did not hear a choice" in spoken(root)
    assert follow(one(root, "Redirect")) == "/voice_url?attempt=3"


def test_attempt_parameter_is_forgiving() -> None:
    assert parse_attempt(None) == 1
    assert parse_attempt("4") == 4
    assert parse_attempt("0") == 1
    assert parse_attempt("lots") == 1


# --- the choices ----------------------------------------------------------------------------


def test_option_1_speaks_a_message_and_hangs_up(post_webhook: Post) -> None:
    root = press(post_webhook, "1")
    assert verbs(root)[-1] == "Hangup"
    assert "Dialtone" in spoken(root)


def test_option_2_records_and_the_action_thanks_and_logs(
    post_webhook: Post, caplog: pytest.LogCaptureFixture
) -> None:
    root = press(post_webhook, "2")
    assert verbs(root) == ["Say", "Record", "Say", "Hangup"]
    record = one(root, "Record")
    assert record.get("action") == "/voice_url/recorded"
    assert record.get("finishOnKey") == "#"

    recording = {
        **CALL,
        "RecordingUrl": "https://api.twilio.com/2010-04-01/Accounts/AC/Recordings/RE123",
        "RecordingDuration": "7",
        "RecordingSid": "RE" + "3" * 32,
    }
    with caplog.at_level(logging.INFO, logger="dialtone.voice"):
        thanks = twiml(post_webhook("/voice_url/recorded", recording))
    assert "Thank you" in spoken(thanks)
    assert verbs(thanks)[-1] == "Hangup"
    assert recording["RecordingUrl"] in caplog.text
    assert "(7 s)" in caplog.text


def test_option_3_texts_the_link_through_the_rest_api(
    post_webhook: Post, sandbox: SandboxServer, settings: Settings
) -> None:
    root = press(post_webhook, "3")
    assert "sent you a text message" in spoken(root)
    assert verbs(root)[-1] == "Hangup"
    [sent] = sandbox.state.messages()
    assert sent.direction == "outbound-api"
    assert (sent.to, sent.from_) == (CALLER, sandbox.state.phone_number)
    assert settings.sms_link in sent.body
    assert sent.status_callback == PUBLIC_URL + "/status"


def test_option_3_records_the_text_as_an_outbound_message(
    post_webhook: Post, sandbox: SandboxServer, store: Store
) -> None:
    press(post_webhook, "3")
    [sent] = sandbox.state.messages()
    recorded = store.message(sent.sid)
    assert recorded is not None
    assert (recorded.direction, recorded.to_number, recorded.from_number) == (
        "outbound",
        CALLER,
        sandbox.state.phone_number,
    )
    assert (recorded.body, recorded.status) == (sent.body, sent.status)


def test_option_3_does_not_text_a_caller_who_opted_out(
    post_webhook: Post, sandbox: SandboxServer, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    store.set_opt_out(CALLER, True, keyword="STOP")
    with caplog.at_level(logging.INFO, logger="dialtone.voice"):
        root = press(post_webhook, "3")
    assert "asked not to get text messages" in spoken(root)
    assert "START" in spoken(root)
    assert verbs(root)[-1] == "Hangup"
    assert sandbox.faults.seen == []  # nothing reached Twilio
    assert store.messages() == []
    assert "opted out" in caplog.text
    # Back in (START): the link is texted again.
    store.set_opt_out(CALLER, False, keyword="START")
    assert "sent you a text message" in spoken(press(post_webhook, "3"))
    assert len(sandbox.state.messages()) == 1


def test_option_3_on_a_call_dialtone_placed_texts_the_callee(
    post_webhook: Post, sandbox: SandboxServer
) -> None:
    callee = "+15553334444"
    press(post_webhook, "3", From=PHONE_NUMBER, To=callee, Direction="outbound-api")
    [sent] = sandbox.state.messages()
    assert sent.to == callee


def test_option_3_twilio_error_is_a_polite_sorry_and_recorded(
    sandbox: SandboxServer,
    settings: Settings,
    store: Store,
    make_app: Callable[..., webtest.TestApp],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A From that is not a number on the account: Twilio refuses with 21606.
    app = make_app(settings.with_overrides(phone_number="+15550009999"), store=store)
    post = signed_post(app, settings.auth_token or "")
    with caplog.at_level(logging.WARNING, logger="dialtone.voice"):
        root = press(post, "3")
    assert "Sorry, I could not send you a text message" in spoken(root)
    assert "not a valid, SMS-capable" in caplog.text
    assert sandbox.state.messages() == []
    [refused] = store.messages()
    assert (refused.status, refused.error_code, refused.to_number) == ("failed", 21606, CALLER)


def test_option_3_twilio_server_error_is_a_polite_sorry(
    post_webhook: Post, sandbox: SandboxServer, store: Store
) -> None:
    # Not retried: Twilio may have sent it (see dialtone.twilio_api).
    sandbox.faults.fail_next(1, status=503)
    root = press(post_webhook, "3")
    assert "Sorry, I could not send you a text message" in spoken(root)
    assert sandbox.state.messages() == []
    [refused] = store.messages()
    assert (refused.status, refused.error_code) == ("failed", 20503)


@pytest.mark.parametrize("caller", ["anonymous", "client:alice", ""])
def test_option_3_does_not_text_a_caller_without_a_number(
    post_webhook: Post, sandbox: SandboxServer, caller: str
) -> None:
    root = press(post_webhook, "3", From=caller)
    assert "Sorry, I could not send you a text message" in spoken(root)
    assert sandbox.faults.seen == []


@with_settings(account_sid=None)
def test_option_3_without_credentials_is_a_polite_sorry(
    post_webhook: Post, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="dialtone.voice"):
        root = press(post_webhook, "3")
    assert "Sorry, I could not send you a text message" in spoken(root)
    assert "TWILIO_ACCOUNT_SID" in caplog.text


@pytest.fixture
def silent_api() -> Iterator[str]:
    """A loopback port that accepts connections and never answers: a Twilio API that hangs."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        host, port = listener.getsockname()
        yield f"http://{host}:{port}"


def test_option_3_timeout_is_a_polite_sorry(
    silent_api: str,
    make_app: Callable[..., webtest.TestApp],
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The real client made from settings, through TWILIO_API_URL, with a short timeout.
    app = make_app(settings.with_overrides(twilio_api_url=silent_api, twilio_timeout=0.2))
    params = {**CALL, "Digits": "3"}
    path = "/voice_url/menu?attempt=1"
    with caplog.at_level(logging.WARNING, logger="dialtone.voice"):
        reply = signed_post(app, settings.auth_token or "")(path, params)
    assert "Sorry, I could not send you a text message" in spoken(twiml(reply))
    assert "timed out" in caplog.text


@with_settings(forward_to=FORWARD_TO)
def test_option_4_dials_the_forwarding_number(post_webhook: Post) -> None:
    root = press(post_webhook, "4")
    dial = one(root, "Dial")
    assert (dial.text or "").strip() == FORWARD_TO
    assert dial.get("action") == "/voice_url/dialed"


def test_option_4_without_forwarding_says_not_available(post_webhook: Post) -> None:
    root = press(post_webhook, "4", attempt=2)
    assert root.find("Dial") is None
    assert "not available" in spoken(root)
    assert follow(one(root, "Redirect")) == "/voice_url?attempt=3"  # it counts as a wrong key


@with_settings(menu_attempts=2)
def test_option_4_without_forwarding_cannot_loop_forever(post_webhook: Post) -> None:
    root = press(post_webhook, "4", attempt=2)
    assert root.find("Redirect") is None
    assert verbs(root)[-1] == "Hangup"


@pytest.mark.parametrize("status", ["busy", "no-answer", "failed"])
def test_unanswered_forward_offers_a_message(post_webhook: Post, status: str) -> None:
    root = twiml(post_webhook("/voice_url/dialed", {**CALL, "DialCallStatus": status}))
    assert "leave a message" in spoken(root)
    record = one(root, "Record")
    assert record.get("action") == "/voice_url/recorded"


def test_answered_forward_just_hangs_up(post_webhook: Post) -> None:
    root = twiml(post_webhook("/voice_url/dialed", {**CALL, "DialCallStatus": "completed"}))
    assert verbs(root) == ["Hangup"]


def test_option_5_enqueues_with_a_wait_url_that_plays_music(
    post_webhook: Post, settings: Settings
) -> None:
    root = press(post_webhook, "5")
    enqueue = one(root, "Enqueue")
    assert enqueue.text == HOLD_QUEUE
    wait_url = enqueue.get("waitUrl")
    assert wait_url == "/voice_url/hold"

    hold = {**CALL, "QueuePosition": "2", "QueueSid": "QU" + "4" * 32, "QueueTime": "5"}
    music = twiml(post_webhook(wait_url, hold))
    assert verbs(music) == ["Say", "Play", "Pause"]
    assert one(music, "Play").text == settings.hold_music_url
    assert "number 2 in line" in spoken(music)


PIN = "246810"


def pin_prompt(root: ET.Element) -> ET.Element:
    """The <Gather> that asks for the agent PIN (and nothing connected yet)."""
    assert root.find("Dial") is None
    gather = one(root, "Gather")
    assert gather.get("action") == "/voice_url/agent/pin"
    assert gather.get("finishOnKey") == "#"
    assert "PIN" in spoken(gather)
    return gather


@with_settings(agent_numbers=frozenset({CALLER}), agent_pin=PIN)
@pytest.mark.parametrize("route", ["/voice_url/menu?attempt=1", "/voice_url/agent"])
def test_option_9_and_the_agent_route_ask_for_the_pin_then_dial_the_queue(
    post_webhook: Post, route: str
) -> None:
    pin_prompt(twiml(post_webhook(route, {**CALL, "Digits": "9"})))
    root = twiml(post_webhook("/voice_url/agent/pin", {**CALL, "Digits": PIN}))
    assert one(root, "Dial/Queue").text == HOLD_QUEUE
    assert "9" not in spoken(one(twiml(post_webhook("/voice_url", CALL)), "Gather"))


@with_settings(forward_to=CALLER, agent_pin=PIN)
def test_the_forwarding_number_is_an_agent(post_webhook: Post) -> None:
    pin_prompt(press(post_webhook, "9"))
    root = twiml(post_webhook("/voice_url/agent/pin", {**CALL, "Digits": PIN}))
    assert one(root, "Dial/Queue").text == HOLD_QUEUE


@with_settings(agent_numbers=frozenset({CALLER}), agent_pin=PIN)
def test_a_spoofed_agent_caller_id_without_the_pin_connects_nobody(post_webhook: Post) -> None:
    # The attacker sends an agent's caller ID (anyone can): the PIN is still asked, and a
    # wrong one, or none, hangs up without dialing the queue.
    for digits in ["", "000000", PIN + "0", "1" * 200]:
        root = twiml(post_webhook("/voice_url/agent/pin", {**CALL, "Digits": digits}))
        assert root.find("Dial") is None
        assert verbs(root)[-1] == "Hangup"


@with_settings(agent_numbers=frozenset({CALLER}), agent_pin=PIN)
def test_the_right_pin_from_a_number_that_is_not_an_agent_connects_nobody(
    post_webhook: Post,
) -> None:
    stranger = {**CALL, "From": "+15559998888", "Digits": PIN}
    root = twiml(post_webhook("/voice_url/agent/pin", stranger))
    assert root.find("Dial") is None
    assert "agents only" in spoken(root)


@with_settings(agent_numbers=frozenset({CALLER}), agent_pin=PIN)
def test_wrong_pins_pause_agent_pickup_even_for_the_right_pin(post_webhook: Post) -> None:
    for _ in range(5):  # AGENT_PIN_FAILURES_PER_HOUR
        post_webhook("/voice_url/agent/pin", {**CALL, "Digits": "999999"})
    root = twiml(post_webhook("/voice_url/agent/pin", {**CALL, "Digits": PIN}))
    assert root.find("Dial") is None
    assert "paused" in spoken(root)


@with_settings(agent_numbers=frozenset({CALLER}))
def test_without_an_agent_pin_agent_pickup_is_off(post_webhook: Post) -> None:
    menu = press(post_webhook, "9")
    assert menu.find("Dial") is None
    assert menu.find("Gather") is None
    assert "9 is not on the menu" in spoken(menu)
    for route in ["/voice_url/agent", "/voice_url/agent/pin"]:
        root = twiml(post_webhook(route, {**CALL, "Digits": "123456"}))
        assert root.find("Dial") is None
        assert "agents only" in spoken(root)


def test_strangers_cannot_pick_up_callers_on_hold(post_webhook: Post) -> None:
    menu = press(post_webhook, "9")
    assert menu.find("Dial") is None
    assert "9 is not on the menu" in spoken(menu)
    agent_line = twiml(post_webhook("/voice_url/agent", CALL))
    assert agent_line.find("Dial") is None
    assert "agents only" in spoken(agent_line)


@with_settings(link_texts_per_hour=2)
def test_the_link_is_texted_a_bounded_number_of_times_per_caller(
    post_webhook: Post, sandbox: SandboxServer
) -> None:
    answers = [spoken(press(post_webhook, "3")) for _ in range(3)]
    assert ["sent you a text" in answer for answer in answers] == [True, True, False]
    assert len(sandbox.state.messages()) == 2


# --- security and errors --------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/voice_url",
        "/voice_url/menu",
        "/voice_url/recorded",
        "/voice_url/dialed",
        "/voice_url/hold",
        "/voice_url/agent",
        "/voice_url/agent/pin",
    ],
)
def test_unsigned_wrong_signature_and_get_are_refused(
    app: webtest.TestApp, post_webhook: Post, path: str
) -> None:
    app.post(path, CALL, status=403)
    post_webhook(path, CALL, signature="bm90IGEgc2lnbmF0dXJl", status=403)
    post_webhook(path, CALL, url="https://evil.example.com" + path, status=403)
    app.get(path, status=405)


def test_attempt_query_is_signed(post_webhook: Post) -> None:
    # Signed for attempt=1 but sent with attempt=2: a tampered redirect is refused.
    post_webhook("/voice_url?attempt=2", CALL, url=PUBLIC_URL + "/voice_url?attempt=1", status=403)


class FallingOverStore(Store):
    """A record that fails in a way nobody planned for (not a StoreError) on every call."""

    def record_call(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the record fell over")


def test_an_exception_in_a_voice_route_is_an_apology_and_a_logged_traceback(
    settings: Settings,
    make_app: Callable[..., webtest.TestApp],
    caplog: pytest.LogCaptureFixture,
) -> None:
    with FallingOverStore(settings.database_path) as broken:
        app = make_app(settings, store=broken)
        with caplog.at_level(logging.ERROR, logger="dialtone.web.signature"):
            root = twiml(signed_post(app, settings.auth_token or "")("/voice_url", CALL))
    assert verbs(root) == ["Say", "Hangup"]
    assert "Sorry, something went wrong" in spoken(root)
    [record] = [r for r in caplog.records if r.exc_info]
    assert "/voice_url" in record.getMessage()
    assert "RuntimeError: the record fell over" in caplog.text
    assert "Traceback" in caplog.text


@pytest.mark.parametrize(
    ("route", "form"),
    [
        ("/voice_url/menu?attempt=1", {"Digits": "\x1f"}),
        ("/voice_url/menu?attempt=1", {"Digits": "7\x00\x1b"}),
        ("/voice_url/hold", {"QueuePosition": "2\x01"}),
    ],
)
def test_control_characters_from_the_webhook_never_break_the_twiml(
    post_webhook: Post, route: str, form: dict[str, str]
) -> None:
    # Found by make fuzz: a Digits of "\x1f" was said back inside <Say>, which XML cannot carry.
    root = twiml(post_webhook(route, {**CALL, **form}))
    assert all(ch.isprintable() for ch in spoken(root))
