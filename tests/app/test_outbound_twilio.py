"""The outbound API against the sandbox as Twilio: what Twilio receives, and its errors as 502."""

from __future__ import annotations

from collections.abc import Callable

import webtest

from dialtone.sandbox.server import SandboxServer
from dialtone.settings import Settings
from tests.conftest import API_TOKEN, PUBLIC_URL

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
TO = "+15557654321"


def test_send_sms_reaches_twilio(
    sandbox: SandboxServer, sandbox_settings: Settings, make_app: Callable[..., webtest.TestApp]
) -> None:
    app = make_app(sandbox_settings)
    payload = {"to": TO, "body": "Hello 👋", "media_url": ["https://example.com/owl.png"]}
    reply = app.post_json("/send_sms", payload, headers=AUTH, status=201)
    (sent,) = sandbox.state.messages()
    assert reply.json == {"sid": sent.sid, "status": sent.status, "to": TO}
    assert sent.sid.startswith("MM")
    assert (sent.to, sent.from_, sent.body) == (TO, sandbox_settings.phone_number, "Hello 👋")
    assert sent.media_urls == ("https://example.com/owl.png",)
    assert sent.status_callback == PUBLIC_URL + "/status"


def test_a_media_url_may_carry_a_query_string(
    sandbox: SandboxServer, sandbox_settings: Settings, make_app: Callable[..., webtest.TestApp]
) -> None:
    # Signed storage links (S3, GCS) carry their signature in the query string.
    url = "https://bucket.example.com/owl.png?X-Amz-Expires=300&X-Amz-Signature=ab12"
    app = make_app(sandbox_settings)
    app.post_json("/send_sms", {"to": TO, "media_url": url}, headers=AUTH, status=201)
    (sent,) = sandbox.state.messages()
    assert sent.media_urls == (url,)


def test_send_sms_through_a_messaging_service(
    sandbox: SandboxServer, sandbox_settings: Settings, make_app: Callable[..., webtest.TestApp]
) -> None:
    service = "MG" + "ab" * 16
    app = make_app(sandbox_settings.with_overrides(messaging_service_sid=service))
    app.post_json("/send_sms", {"to": TO, "body": "hi"}, headers=AUTH, status=201)
    (sent,) = sandbox.state.messages()
    assert sent.messaging_service_sid == service


def test_whatsapp_goes_from_the_whatsapp_number(
    sandbox: SandboxServer, sandbox_settings: Settings, make_app: Callable[..., webtest.TestApp]
) -> None:
    app = make_app(sandbox_settings)
    to = "whatsapp:" + TO
    app.post_json("/send_sms", {"to": to, "body": "hi"}, headers=AUTH, status=201)
    (sent,) = sandbox.state.messages()
    assert (sent.to, sent.from_) == (to, "whatsapp:" + str(sandbox_settings.phone_number))


def test_make_call_runs_the_voice_menu(
    sandbox: SandboxServer, sandbox_settings: Settings, make_app: Callable[..., webtest.TestApp]
) -> None:
    app = make_app(sandbox_settings)
    reply = app.post_json("/make_call", {"to": TO}, headers=AUTH, status=201)
    (call,) = sandbox.state.calls()
    assert reply.json["sid"] == call.sid
    assert call.url == PUBLIC_URL + "/voice_url"
    assert call.status_callback == PUBLIC_URL + "/status"


def test_make_call_can_just_say_something(
    sandbox: SandboxServer, sandbox_settings: Settings, make_app: Callable[..., webtest.TestApp]
) -> None:
    app = make_app(sandbox_settings)
    payload = {"to": TO, "message": "Your order <b> has shipped & more"}
    app.post_json("/make_call", payload, headers=AUTH, status=201)
    (call,) = sandbox.state.calls()
    assert call.twiml is not None
    assert "Your order &lt;b&gt; has shipped &amp; more" in call.twiml
    assert not call.url


def test_make_call_without_public_url_needs_a_message(
    sandbox: SandboxServer, sandbox_settings: Settings, make_app: Callable[..., webtest.TestApp]
) -> None:
    app = make_app(sandbox_settings.with_overrides(public_url=None))
    reply = app.post_json("/make_call", {"to": TO}, headers=AUTH, status=503)
    assert "PUBLIC_URL" in reply.json["error"]["message"]
    assert sandbox.state.calls() == []


def test_twilio_error_becomes_502_with_its_code(
    sandbox: SandboxServer, sandbox_settings: Settings, make_app: Callable[..., webtest.TestApp]
) -> None:
    # The sandbox, like Twilio, refuses a From that is not on the account (21606).
    app = make_app(sandbox_settings.with_overrides(phone_number="+15550009999"))
    reply = app.post_json("/send_sms", {"to": TO, "body": "hi"}, headers=AUTH, status=502)
    error = reply.json["error"]
    assert error["twilio_code"] == 21606
    assert "Traceback" not in reply.text
    assert sandbox.take_violations() == []  # a well-formed request Twilio refuses


def test_bad_credentials_become_502_with_20003(
    sandbox: SandboxServer, sandbox_settings: Settings, make_app: Callable[..., webtest.TestApp]
) -> None:
    app = make_app(sandbox_settings.with_overrides(auth_token="wrong-token"))
    reply = app.post_json("/send_sms", {"to": TO, "body": "hi"}, headers=AUTH, status=502)
    assert reply.json["error"]["twilio_code"] == 20003
    assert "wrong-token" not in reply.text


def test_twilio_unreachable_is_502(
    sandbox_settings: Settings, make_app: Callable[..., webtest.TestApp]
) -> None:
    gone = sandbox_settings.with_overrides(twilio_api_url="http://127.0.0.1:9", twilio_timeout=2)
    reply = make_app(gone).post_json("/send_sms", {"to": TO, "body": "x"}, headers=AUTH, status=502)
    assert "Could not reach Twilio" in reply.json["error"]["message"]


def test_no_credentials_is_503(
    settings: Settings, make_app: Callable[..., webtest.TestApp]
) -> None:
    app = make_app(settings.with_overrides(account_sid=None))
    reply = app.post_json("/send_sms", {"to": TO, "body": "x"}, headers=AUTH, status=503)
    assert "TWILIO_ACCOUNT_SID" in reply.json["error"]["message"]
