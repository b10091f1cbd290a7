"""GET /healthz answers without secrets; errors are plain text, never HTML or tracebacks."""

from __future__ import annotations

import webtest

from tests.conftest import API_TOKEN, AUTH_TOKEN


def test_healthz_is_ok_and_secret_free(app: webtest.TestApp) -> None:
    reply = app.get("/healthz")
    assert reply.json["status"] == "ok"
    assert AUTH_TOKEN not in reply.text
    assert API_TOKEN not in reply.text


def test_unknown_path_is_a_plain_404(app: webtest.TestApp) -> None:
    reply = app.get("/nope", status=404)
    assert reply.content_type == "text/plain"
    assert "<html" not in reply.text.lower()


def test_oversized_body_is_413(app: webtest.TestApp) -> None:
    reply = app.post("/status", {"Body": "x" * 70_000}, status=413)
    assert "larger than" in reply.text


def test_a_path_that_is_not_utf8_is_400_not_routed(app: webtest.TestApp) -> None:
    """Bottle drops undecodable bytes: /se%80nd_sms would reach /send_sms past a proxy's rule."""
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    body = {"to": "+15557654321", "body": "hi"}
    reply = app.post_json("/se%80nd_sms", body, headers=auth, status=400)
    assert "not valid UTF-8" in reply.text
    app.get("/healthz%ff", status=400)
    assert app.get("/h%C3%A9", status=404)  # UTF-8 is fine: an ordinary unknown path
