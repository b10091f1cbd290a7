"""Regressions from review: inputs a user or attacker can send must never answer 500."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
import webtest
from twilio.request_validator import RequestValidator
from twilio.twiml.voice_response import VoiceResponse

from dialtone.app import create_app
from dialtone.errors import SettingsError
from dialtone.phone_numbers import is_e164
from dialtone.settings import Settings
from dialtone.web.routing import routes_of, webhook
from dialtone.web.signature import SIGNATURE_HEADER as SIGNATURE
from tests.conftest import API_TOKEN

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


@pytest.mark.parametrize("host", ["x:abc", "x:99999", "[::1", "x y", "x@y"])
def test_a_bad_host_header_is_403_not_500(settings: Settings, host: str) -> None:
    app = webtest.TestApp(create_app(settings.with_overrides(public_url=None)))
    app.post("/status", {"A": "1"}, headers={"Host": host, "X-Twilio-Signature": "x"}, status=403)


@pytest.mark.parametrize("host", ["bot.example.com/status?", "bot.example.com?x=", "b#c"])
def test_a_host_header_holding_a_path_is_refused_even_signed_for_it(
    settings: Settings, host: str
) -> None:
    """Without PUBLIC_URL the signed URL is built from Host: a Host that carries a path or
    a query would let text move between the host and the path the signature covers."""
    settings = settings.with_overrides(public_url=None)
    app = webtest.TestApp(create_app(settings))
    form = {"CallSid": "CA" + "1" * 32, "CallStatus": "completed"}
    url = f"http://{host}/status"
    signature = RequestValidator(settings.auth_token).compute_signature(url, form)
    headers = {"Host": host, SIGNATURE: signature}
    app.post("/status", form, headers=headers, status=403)
    good = "bot.example.com:8080"
    signature = RequestValidator(settings.auth_token).compute_signature(
        f"http://{good}/status", form
    )
    app.post("/status", form, headers={"Host": good, SIGNATURE: signature}, status=204)


@pytest.mark.parametrize(
    "url", ["https://x.example.com:abc", "https://x.example.com:99999", "https://u:p@x.example.com"]
)
def test_public_url_with_a_bad_port_or_credentials_is_refused(url: str) -> None:
    with pytest.raises(SettingsError):
        Settings.from_env({"PUBLIC_URL": url})


@pytest.mark.parametrize("value", ["+15551234567\n", "+1555123456\u0661", " +15551234567"])
def test_e164_is_strict(value: str) -> None:
    assert not is_e164(value)


def test_a_handler_returning_non_twiml_gets_the_error_reply(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    apology = VoiceResponse()
    apology.say("sorry")

    @webhook("/oops", on_error=lambda: apology)
    def oops(form: object) -> str:
        return "not TwiML"

    app = create_app(settings.with_overrides(validate_signatures=False), routes=routes_of(oops))
    with caplog.at_level(logging.ERROR):
        reply = webtest.TestApp(app).post("/oops", {"A": "1"}, status=200)
    assert "sorry" in reply.text
    assert "POST /oops" in caplog.text
    assert "text that is not XML" in caplog.text


def test_control_characters_are_escaped_in_the_access_log(
    app: webtest.TestApp, caplog: pytest.LogCaptureFixture
) -> None:
    from dialtone.web.accesslog import AccessLog

    logged = webtest.TestApp(AccessLog(app.app))
    with caplog.at_level(logging.INFO, logger="dialtone.access"):
        logged.post(
            "/status", {"Body": "\x1b[31mRED\rFAKE"}, headers={SIGNATURE: "forged"}, status=403
        )
    line = caplog.records[-1].getMessage()
    assert "\x1b" not in line
    assert "\r" not in line
    assert "\\x1b[31mRED\\rFAKE" in line


def test_deeply_nested_json_is_400(app: webtest.TestApp) -> None:
    body = b"[" * 60_000
    headers = {**AUTH, "Content-Type": "application/json"}
    app.post("/send_sms", body, headers=headers, status=400)


def test_lone_surrogates_are_400(app: webtest.TestApp) -> None:
    body = b'{"to": "+15551234567", "body": "\\ud800"}'
    reply = app.post(
        "/send_sms", body, headers={**AUTH, "Content-Type": "application/json"}, status=400
    )
    assert "Unicode" in reply.json["error"]["message"]


def test_emoji_count_twice_towards_the_body_limit(app: webtest.TestApp) -> None:
    reply = app.post_json(
        "/send_sms", {"to": "+15551234567", "body": "👋" * 801}, headers=AUTH, status=400
    )
    assert "1602 characters" in reply.json["error"]["message"]


def test_a_message_too_long_for_twiml_is_400(app: webtest.TestApp) -> None:
    payload = {"to": "+15551234567", "message": "&" * 1000}  # 5000 characters once escaped
    reply = app.post_json("/make_call", payload, headers=AUTH, status=400)
    assert "4000" in reply.json["error"]["message"]


def test_guessing_the_token_is_rate_limited(
    make_app: Callable[..., webtest.TestApp], settings: Settings
) -> None:
    app = make_app(settings)
    statuses = [
        app.post_json(
            "/send_sms", {}, headers={"Authorization": f"Bearer guess{i}"}, status="*"
        ).status_int
        for i in range(12)
    ]
    assert statuses[:10] == [403] * 10
    assert statuses[10:] == [429, 429]
