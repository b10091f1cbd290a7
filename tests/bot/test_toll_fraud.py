"""Toll fraud (issue 9.3): one destination policy for every outbound path, premium and
high-risk ranges refused by default, an overall cap on the voice menu's texts, and agent pickup
off without AGENT_PIN (said at start-up)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

import pytest
import webtest

from dialtone.app import create_app, startup_warnings
from dialtone.bot.destinations import check_destination
from dialtone.devloop.sandbox import app_settings
from dialtone.errors import SettingsError
from dialtone.phone_numbers import DEFAULT_DENIED_PREFIXES, compact_number
from dialtone.record.store import Store
from dialtone.sandbox.server import SandboxServer
from dialtone.settings import Settings
from dialtone.twilio_api import DestinationRefused, TwilioHandle
from tests.bot.test_voice_menu import CALL, Post, press, spoken, verbs, with_settings
from tests.conftest import API_TOKEN, CALLER, PUBLIC_URL
from tests.support.live_server import free_socket, serve_app, urlopen
from tests.support.twilio_signing import sign

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
PREMIUM = ["+19005551234", "+19765551234"]
INTERNATIONAL_NETWORKS = ["+88212345678", "+88312345678"]
HIGH_RISK_COUNTRIES = ["+5371234567", "+2521234567", "+6745551234"]
IMPOSSIBLE = ["+12", "+1555", "+999999999999999", "+44123"]


@pytest.fixture
def settings(
    settings: Settings, request: pytest.FixtureRequest, sandbox: SandboxServer
) -> Settings:
    """As in test_voice_menu: with_settings changes, the sandbox as Twilio."""
    changed = settings.with_overrides(**getattr(request, "param", {}))
    return app_settings(sandbox, changed)


# --- the policy -------------------------------------------------------------------------------


@pytest.mark.parametrize("to", PREMIUM + INTERNATIONAL_NETWORKS + HIGH_RISK_COUNTRIES)
def test_premium_and_high_risk_ranges_are_refused_by_default(to: str) -> None:
    refusal = check_destination(to, Settings())
    assert refusal is not None
    assert refusal.status == 403
    assert "DENIED_PREFIXES" in refusal.message
    assert "ALLOW_HIGH_RISK_DESTINATIONS" in refusal.message
    assert check_destination("whatsapp:" + to, Settings()) is not None


@pytest.mark.parametrize("to", IMPOSSIBLE)
def test_impossible_numbers_are_not_phone_numbers(to: str) -> None:
    refusal = check_destination(to, Settings(allow_high_risk_destinations=True))
    assert refusal is not None
    assert refusal.status == 400


@pytest.mark.parametrize(
    "to",
    [
        "1" * 64_000 + "x",  # the old pattern's nested repeats took 11 s of CPU on this one
        "1 " * 40_000,
        "(" * 10,
        "+",
        "",
    ],
)
def test_what_is_not_a_written_number_is_refused_as_one(to: str) -> None:
    assert compact_number(to) is None
    refusal = check_destination(to, Settings())
    assert refusal is not None
    assert refusal.status == 400
    assert "E.164" in refusal.message


@pytest.mark.parametrize("to", ["+1 555 123 4567", "+1 (555) 123-4567", "+1.555.123.4567"])
def test_a_number_written_with_spaces_is_refused_with_its_compact_form(to: str) -> None:
    refusal = check_destination(to, Settings())
    assert refusal is not None
    assert refusal.status == 400
    assert refusal.message.endswith('without spaces, dashes, dots or brackets: "+15551234567".')


@pytest.mark.parametrize("to", [15551234567, ["+15551234567"]])
def test_a_to_that_is_not_a_string_is_told_so(to: object) -> None:
    refusal = check_destination(to, Settings())
    assert refusal is not None
    assert refusal.status == 400
    assert "must be a string" in refusal.message


def test_a_missing_to_is_told_it_is_required() -> None:
    refusal = check_destination(None, Settings())
    assert refusal is not None
    assert (refusal.status, refusal.message.split(":")[0]) == (400, '"to" is required')


@pytest.mark.parametrize("to", ["+15551234567", "+14155550100", "+447700900123", "+4930123456"])
def test_ordinary_numbers_pass(to: str) -> None:
    assert check_destination(to, Settings()) is None


def test_the_deny_list_can_be_switched_off_or_edited_on_purpose() -> None:
    assert check_destination("+19005551234", Settings(allow_high_risk_destinations=True)) is None
    assert check_destination("+19005551234", Settings(denied_prefixes=())) is None
    edited = Settings.from_env({"DENIED_PREFIXES": "+44, +1900"})
    assert edited.denied_prefixes == ("+44", "+1900")
    assert check_destination("+447700900123", edited) is not None
    assert check_destination("+5371234567", edited) is None
    assert Settings.from_env({"DENIED_PREFIXES": "none"}).denied_prefixes == ()
    assert Settings.from_env({}).denied_prefixes == DEFAULT_DENIED_PREFIXES
    with pytest.raises(SettingsError, match="DENIED_PREFIXES"):
        Settings.from_env({"DENIED_PREFIXES": "+1900,1976"})


def test_an_allow_list_decides_alone() -> None:
    listed = Settings(allowed_destinations=frozenset({"+19005551234", "+15551234567"}))
    assert check_destination("+19005551234", listed) is None  # listed on purpose
    assert check_destination("+15551234567", listed) is None
    refusal = check_destination("+15557654321", listed)
    assert refusal is not None
    assert "ALLOWED_DESTINATIONS" in refusal.message


# --- the API ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/send_sms", "/make_call"])
@pytest.mark.parametrize("to", [PREMIUM[0], INTERNATIONAL_NETWORKS[0], HIGH_RISK_COUNTRIES[0]])
def test_the_api_refuses_high_risk_destinations_before_twilio(
    app: webtest.TestApp, sandbox: SandboxServer, path: str, to: str
) -> None:
    reply = app.post_json(path, {"to": to, "body": "hi"}, headers=AUTH, status=403)
    assert "DENIED_PREFIXES" in reply.json["error"]["message"]
    assert sandbox.faults.seen == []


@pytest.mark.parametrize("path", ["/send_sms", "/make_call"])
def test_the_api_refuses_impossible_numbers(app: webtest.TestApp, path: str) -> None:
    reply = app.post_json(path, {"to": "+12", "body": "hi"}, headers=AUTH, status=400)
    assert '"to"' in reply.json["error"]["message"]


@with_settings(allow_high_risk_destinations=True)
def test_the_api_reaches_a_high_risk_number_only_when_allowed_on_purpose(
    app: webtest.TestApp, sandbox: SandboxServer
) -> None:
    reply = app.post_json("/send_sms", {"to": PREMIUM[0], "body": "hi"}, headers=AUTH, status=201)
    assert reply.json["to"] == PREMIUM[0]
    assert [m.to for m in sandbox.state.messages()] == [PREMIUM[0]]


# --- the voice menu's text (option 3) ---------------------------------------------------------


@pytest.mark.parametrize("spoofed", [PREMIUM[0], INTERNATIONAL_NETWORKS[0], "+12"])
def test_option_3_never_texts_a_spoofed_high_risk_caller_id(
    post_webhook: Post, sandbox: SandboxServer, spoofed: str
) -> None:
    root = press(post_webhook, "3", From=spoofed)
    assert "could not send you a text" in spoken(root)
    assert verbs(root)[-1] == "Hangup"
    assert sandbox.state.messages() == []


@with_settings(allowed_destinations=frozenset({"+15550009999"}))
def test_option_3_follows_allowed_destinations(post_webhook: Post, sandbox: SandboxServer) -> None:
    assert "could not send you a text" in spoken(press(post_webhook, "3"))
    assert "sent you a text" in spoken(press(post_webhook, "3", From="+15550009999"))
    assert [m.to for m in sandbox.state.messages()] == ["+15550009999"]


@with_settings(link_texts_per_hour=5, link_texts_total_per_hour=3)
def test_option_3_texts_are_capped_overall_whatever_the_caller_id(
    post_webhook: Post, sandbox: SandboxServer
) -> None:
    callers = [f"+1555000{n:04d}" for n in range(5)]
    answers = [spoken(press(post_webhook, "3", From=caller)) for caller in callers]
    assert ["sent you a text" in answer for answer in answers] == [True] * 3 + [False] * 2
    assert len(sandbox.state.messages()) == 3


# --- agent pickup needs a PIN -----------------------------------------------------------------


def test_start_up_says_agent_pickup_is_off_without_a_pin() -> None:
    warned = " ".join(startup_warnings(Settings(agent_numbers=frozenset({CALLER}))))
    assert "AGENT_PIN" in warned
    assert "spoofed" in warned
    warned = " ".join(startup_warnings(Settings(forward_to=CALLER)))
    assert "AGENT_PIN" in warned
    quiet = " ".join(startup_warnings(Settings(forward_to=CALLER, agent_pin="246810")))
    assert "AGENT_PIN" not in quiet


def test_agent_pin_is_digits_and_never_echoed() -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({"AGENT_PIN": "12ab"})
    assert "AGENT_PIN" in str(refused.value)
    assert "12ab" not in str(refused.value)
    assert Settings.from_env({"AGENT_PIN": "246810"}).agent_pin == "246810"


def test_the_twilio_handle_refuses_what_the_policy_refuses_as_a_last_line(
    settings: Settings, sandbox: SandboxServer
) -> None:
    # A path that forgot to ask the policy still cannot reach Twilio with a denied destination.
    handle = TwilioHandle(settings)
    with pytest.raises(DestinationRefused, match="DENIED_PREFIXES"):
        handle.send_message(PREMIUM[0], "hi")
    with pytest.raises(DestinationRefused, match="DENIED_PREFIXES"):
        handle.create_call(INTERNATIONAL_NETWORKS[0], twiml="<Response/>")
    assert sandbox.state.messages() == []
    assert handle.send_message(CALLER, "hi").sid.startswith("SM")


def test_on_the_real_server_a_premium_number_is_refused_on_every_path(
    settings: Settings, store: Store, sandbox: SandboxServer
) -> None:
    app = create_app(settings, store=store)
    sock = free_socket()
    with serve_app(app, settings, sock):
        base = f"http://127.0.0.1:{sock.getsockname()[1]}"
        for path in ["/send_sms", "/make_call"]:
            request = urllib.request.Request(
                base + path,
                json.dumps({"to": PREMIUM[0], "body": "hi"}).encode(),
                {**AUTH, "Content-Type": "application/json"},
            )
            with pytest.raises(urllib.error.HTTPError) as refused:
                urlopen(request)
            assert refused.value.code == 403
        form = {**CALL, "From": PREMIUM[0], "Digits": "3"}
        signature = sign(str(settings.auth_token), PUBLIC_URL + "/voice_url/menu", form)
        menu = urllib.request.Request(
            base + "/voice_url/menu",
            urllib.parse.urlencode(form).encode(),
            {"X-Twilio-Signature": signature},
        )
        with urlopen(menu) as answer:
            assert b"could not send you a text" in answer.read()
    assert sandbox.state.messages() == []
