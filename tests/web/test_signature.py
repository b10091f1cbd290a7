"""X-Twilio-Signature checking: the real RequestValidator, the public URL, UTF-8 forms."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
import webtest

from dialtone.app import create_app
from dialtone.errors import SettingsError
from dialtone.settings import Settings
from tests.conftest import AUTH_TOKEN, PUBLIC_URL
from tests.support.twilio_signing import sign

STATUS = {
    "MessageSid": "SM" + "1" * 32,
    "MessageStatus": "delivered",
    "AccountSid": "AC" + "0" * 32,
}


def test_valid_signature_is_accepted(post_webhook: Callable[..., webtest.TestResponse]) -> None:
    assert post_webhook("/status", STATUS).status_int == 204


def test_missing_signature_is_403_and_logged(
    app: webtest.TestApp, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="dialtone.web.signature"):
        reply = app.post("/status", STATUS, status=403)
    assert "Invalid or missing X-Twilio-Signature" in reply.text
    assert "Traceback" not in reply.text
    assert f"checked against {PUBLIC_URL}/status" in caplog.text
    assert "missing X-Twilio-Signature" in caplog.text


def test_wrong_signature_is_403(post_webhook: Callable[..., webtest.TestResponse]) -> None:
    post_webhook("/status", STATUS, signature="bm90IGEgc2lnbmF0dXJl", status=403)


def test_signature_for_another_url_is_403(
    post_webhook: Callable[..., webtest.TestResponse],
) -> None:
    post_webhook("/status", STATUS, url="https://evil.example.com/status", status=403)


def test_tampered_body_is_403(app: webtest.TestApp) -> None:
    header = sign(AUTH_TOKEN, PUBLIC_URL + "/status", STATUS)
    tampered = {**STATUS, "MessageStatus": "failed"}
    app.post("/status", tampered, headers={"X-Twilio-Signature": header}, status=403)


def test_query_string_is_part_of_the_signed_url(app: webtest.TestApp) -> None:
    header = sign(AUTH_TOKEN, PUBLIC_URL + "/status?attempt=2", STATUS)
    app.post("/status?attempt=2", STATUS, headers={"X-Twilio-Signature": header}, status=204)
    app.post("/status", STATUS, headers={"X-Twilio-Signature": header}, status=403)


def test_utf8_and_emoji_values_validate(post_webhook: Callable[..., webtest.TestResponse]) -> None:
    params = {**STATUS, "Body": "Grüße, 你好, привет 👋🏽"}
    assert post_webhook("/status", params).status_int == 204


def test_repeated_fields_are_signed_like_twilio(app: webtest.TestApp) -> None:
    params = [("MessageSid", STATUS["MessageSid"]), ("MediaUrl", "b"), ("MediaUrl", "a")]
    header = sign(AUTH_TOKEN, PUBLIC_URL + "/status", params)
    app.post("/status", params, headers={"X-Twilio-Signature": header}, status=204)


def test_invalid_utf8_is_400(app: webtest.TestApp) -> None:
    reply = app.post(
        "/status",
        b"Body=%FF%FE&MessageSid=SM1",
        content_type="application/x-www-form-urlencoded",
        headers={"X-Twilio-Signature": "anything"},  # read before the signature is checked
        status=400,
    )
    assert "UTF-8" in reply.text


def test_without_public_url_the_request_url_is_checked(settings: Settings) -> None:
    app = webtest.TestApp(create_app(settings.with_overrides(public_url=None)))
    header = sign(AUTH_TOKEN, "http://localhost:80/status", STATUS)
    app.post("/status", STATUS, headers={"X-Twilio-Signature": header}, status=204)


def test_forwarded_headers_are_not_trusted_by_the_app_itself(settings: Settings) -> None:
    # Without a trusted proxy in front (waitress's job), X-Forwarded-* from a client means nothing.
    app = webtest.TestApp(create_app(settings.with_overrides(public_url=None)))
    header = sign(AUTH_TOKEN, "https://evil.example.com/status", STATUS)
    forged = {
        "X-Twilio-Signature": header,
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "evil.example.com",
    }
    app.post("/status", STATUS, headers=forged, status=403)


def test_checking_can_only_be_switched_off_explicitly(settings: Settings) -> None:
    off = webtest.TestApp(create_app(settings.with_overrides(validate_signatures=False)))
    off.post("/status", STATUS, status=204)


def test_no_auth_token_refuses_to_start(settings: Settings) -> None:
    with pytest.raises(SettingsError, match="TWILIO_AUTH_TOKEN"):
        create_app(settings.with_overrides(auth_token=None))


def test_a_405_names_every_method_that_works() -> None:
    from bottle import Bottle

    from dialtone.app import _plain_error_for

    app = Bottle()
    app.route("/both", ["GET", "POST"], lambda: "ok")
    app.default_error_handler = _plain_error_for(set())
    answer = webtest.TestApp(app).put("/both", status=405)
    assert answer.text.strip().endswith("PUT is not allowed here; use GET or POST.")


def test_get_on_a_webhook_is_405(app: webtest.TestApp) -> None:
    answer = app.get("/status", status=405)
    assert answer.text.strip().endswith("GET is not allowed here; use POST.")


@pytest.mark.parametrize(
    ("signature", "verdict"),
    [(None, "valid"), ("", "missing"), ("bm90IGEgc2lnbmF0dXJl", "mismatch")],
)
def test_the_verdict_and_url_are_left_in_the_environ_for_middleware(
    settings: Settings, signature: str | None, verdict: str
) -> None:
    seen: dict[str, object] = {}
    app = create_app(settings)

    def spying(environ: dict[str, object], start_response: Callable[..., object]) -> object:
        try:
            return app(environ, start_response)
        finally:
            seen.update(environ)

    header = sign(AUTH_TOKEN, PUBLIC_URL + "/status", STATUS) if signature is None else signature
    try:
        webtest.TestApp(spying).post(
            "/status", STATUS, headers={"X-Twilio-Signature": header}, status="*"
        )
    finally:
        app.close()
    assert seen["dialtone.webhook"] == {
        "route": "/status",
        "verdict": verdict,
        "url": PUBLIC_URL + "/status",
    }


MANY_FIELDS = "&".join(f"a{i}=" for i in range(9000)).encode()


@pytest.mark.parametrize("content_type", ["text/plain", "application/json", "image/png"])
def test_a_body_that_is_not_a_form_is_415_before_it_is_parsed(
    app: webtest.TestApp, content_type: str
) -> None:
    """Bottle parses any body as urlencoded; uncounted, 9,000 fields cost 36 ms each."""
    headers = {"X-Twilio-Signature": "anything", "Content-Type": content_type}
    reply = app.post("/status", MANY_FIELDS, headers=headers, status=415)
    assert "application/x-www-form-urlencoded" in reply.text


def test_a_multipart_form_with_utf8_is_read_and_validated(app: webtest.TestApp) -> None:
    params = {**STATUS, "Body": "héllo 👋"}
    header = sign(AUTH_TOKEN, PUBLIC_URL + "/status", params)
    app.post(
        "/status",
        params,
        content_type="multipart/form-data",
        headers={"X-Twilio-Signature": header},
        status=204,
    )


@pytest.mark.parametrize(
    ("content_type", "part", "message"),
    [
        ("multipart/form-data; boundary=XX", "form-data", "no name"),
        ("multipart/form-data; boundary=XX; charset=bogus", 'form-data; name="Body"', "charset"),
    ],
)
def test_a_broken_multipart_form_is_400(
    app: webtest.TestApp, content_type: str, part: str, message: str
) -> None:
    body = f"--XX\r\nContent-Disposition: {part}\r\n\r\nhello\r\n--XX--\r\n".encode()
    reply = app.post(
        "/status",
        body,
        headers={"X-Twilio-Signature": "x", "Content-Type": content_type},
        status=400,
    )
    assert message in reply.text
