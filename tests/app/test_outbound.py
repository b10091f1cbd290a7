"""POST /make_call and /send_sms: auth, validation, allow-list and rate limit (no Twilio needed)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import webtest

from dialtone.settings import Settings
from dialtone.web.ratelimit import RateLimiter
from tests.conftest import API_TOKEN

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


def post(
    app: webtest.TestApp, path: str, payload: object, *, status: int, headers: dict[str, str] = AUTH
) -> webtest.TestResponse:
    return app.post_json(path, payload, headers=headers, status=status)


@pytest.mark.parametrize("path", ["/make_call", "/send_sms"])
def test_get_is_405(app: webtest.TestApp, path: str) -> None:
    app.get(path, headers=AUTH, status=405)


@pytest.mark.parametrize("path", ["/make_call", "/send_sms"])
def test_no_token_is_401_with_a_challenge(app: webtest.TestApp, path: str) -> None:
    reply = post(app, path, {"to": "+15551230000"}, status=401, headers={})
    assert reply.headers["WWW-Authenticate"] == "Bearer"
    assert "Bearer" in reply.json["error"]["message"]


@pytest.mark.parametrize("path", ["/make_call", "/send_sms"])
def test_wrong_token_is_403(app: webtest.TestApp, path: str) -> None:
    post(app, path, {"to": "+15551230000"}, status=403, headers={"Authorization": "Bearer nope"})


def test_basic_auth_is_not_a_bearer_token(app: webtest.TestApp) -> None:
    post(app, "/send_sms", {"to": "+1555"}, status=401, headers={"Authorization": "Basic eDp5"})


@pytest.mark.parametrize("path", ["/make_call", "/send_sms"])
def test_routes_are_off_without_api_token(
    settings: Settings, make_app: Callable[..., webtest.TestApp], path: str
) -> None:
    app = make_app(settings.with_overrides(api_token=None))
    reply = post(app, path, {"to": "+15551230000", "body": "x"}, status=503)
    assert "API_TOKEN" in reply.json["error"]["message"]


@pytest.mark.parametrize(
    ("payload", "phrase"),
    [
        ({"to": "5551234", "body": "hi"}, "E.164"),
        ({"to": "+15551234567"}, '"body", a "media_url"'),
        ({"to": "+15551234567", "body": 5}, '"body" must be a string'),
        ({"to": "+15551234567", "body": "x" * 1601}, "at most 1600"),
        ({"to": "+15551234567", "media_url": ["ftp://x"]}, "media_url"),
        ({"to": "+15551234567", "media_url": "http://a.example/\ud800"}, "media_url"),
        ({"to": "+15551234567", "media_url": "http://a b/owl.png"}, "media_url"),
        ({"to": "+15551234567", "media_url": "https://x.example/a\n.png"}, "media_url"),
        ({"to": "+15551234567", "media_url": "https://me:pw@x.example/a.png"}, "media_url"),
        ({"to": "+15551234567", "media_url": "https://x.example:99999/a.png"}, "media_url"),
        ({"to": "+15551234567", "media_url": "https:///a.png"}, "media_url"),
        ({"to": "+15551234567", "media_url": ["https://x.example/a.png"] * 11}, "At most 10"),
        ({"to": ["+15551234567"], "body": "hi"}, "must be a string"),
        ([1, 2], "JSON object"),
    ],
)
def test_send_sms_validation(app: webtest.TestApp, payload: object, phrase: str) -> None:
    reply = post(app, "/send_sms", payload, status=400)
    assert phrase in reply.json["error"]["message"]


def test_whatsapp_is_not_callable(app: webtest.TestApp) -> None:
    reply = post(app, "/make_call", {"to": "whatsapp:+15551234567"}, status=400)
    assert "WhatsApp" in reply.json["error"]["message"]


def test_empty_message_to_say_is_400(app: webtest.TestApp) -> None:
    post(app, "/make_call", {"to": "+15551234567", "message": "  "}, status=400)


def test_malformed_json_is_400(app: webtest.TestApp) -> None:
    reply = app.post(
        "/send_sms", b"{nope", headers={**AUTH, "Content-Type": "application/json"}, status=400
    )
    assert reply.json["error"]["message"] == "The body is not valid JSON."


def test_form_body_is_400(app: webtest.TestApp) -> None:
    reply = app.post("/send_sms", {"to": "+15551234567"}, headers=AUTH, status=400)
    assert "application/json" in reply.json["error"]["message"]


def test_allow_list_refuses_other_destinations(
    settings: Settings, make_app: Callable[..., webtest.TestApp]
) -> None:
    app = make_app(settings.with_overrides(allowed_destinations=frozenset({"+15550000001"})))
    reply = post(app, "/send_sms", {"to": "+15550000002", "body": "hi"}, status=403)
    assert "ALLOWED_DESTINATIONS" in reply.json["error"]["message"]


def test_rate_limit_answers_429_with_retry_after(
    settings: Settings, make_app: Callable[..., webtest.TestApp]
) -> None:
    app = make_app(settings.with_overrides(rate_limit_per_minute=2))
    for _ in range(2):  # invalid requests still count: the limit is per token, not per success
        post(app, "/send_sms", {"to": "bad"}, status=400)
    reply = post(app, "/send_sms", {"to": "+15551234567", "body": "hi"}, status=429)
    assert 1 <= int(reply.headers["Retry-After"]) <= 60


def test_rate_limiter_window_slides() -> None:
    now = [0.0]
    limiter = RateLimiter(2, window=60, clock=lambda: now[0])
    assert limiter.hit("k") is None
    assert limiter.hit("k") is None
    assert limiter.hit("k") == pytest.approx(60)
    assert limiter.hit("other") is None
    now[0] = 60.5
    assert limiter.hit("k") is None


def test_errors_never_show_the_token(app: webtest.TestApp) -> None:
    reply = post(
        app, "/send_sms", {"to": "x"}, status=403, headers={"Authorization": "Bearer wrong"}
    )
    assert API_TOKEN not in reply.text


@pytest.mark.parametrize(
    ("path", "payload", "field"),
    [
        (
            "/send_sms",
            {"to": "+15551234567", "body": "x", "media_urls": ["https://e.com/a.jpg"]},
            "media_urls",
        ),
        ("/make_call", {"to": "+15551234567", "msg": "hello"}, "msg"),
    ],
)
def test_an_unknown_field_is_400_naming_it(
    app: webtest.TestApp, path: str, payload: dict[str, object], field: str
) -> None:
    reply = app.post_json(path, payload, headers=AUTH, status=400)
    assert f"Unknown field {field!r}" in reply.json["error"]["message"]


def test_a_plus_sent_unencoded_in_a_url_gets_a_hint(app: webtest.TestApp) -> None:
    reply = app.get("/messages?number=+15551234567", headers=AUTH, status=400)
    assert "%2B" in reply.json["error"]["message"]
