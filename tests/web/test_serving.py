"""The app on real waitress behind a real proxy: signatures hold for the public https URL."""

from __future__ import annotations

import logging
import urllib.error
import urllib.parse
import urllib.request
import warnings

import pytest

from dialtone.app import create_app
from dialtone.settings import Settings
from dialtone.web.serving import SEND_BYTES, make_server
from tests.conftest import AUTH_TOKEN
from tests.support.live_server import https_terminating_proxy, serve_app, urlopen
from tests.support.twilio_signing import sign

PUBLIC_HOST = "bot.example.com"
STATUS = {"MessageSid": "SM" + "2" * 32, "MessageStatus": "sent", "Body": "héllo 👋"}


def post_via(proxy_port: int, url_signed: str, *, host: str = PUBLIC_HOST) -> int:
    """POST the status form through the proxy with the Host a client would send; the status."""
    data = urllib.parse.urlencode(STATUS).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{proxy_port}/status",
        data=data,
        headers={"Host": host, "X-Twilio-Signature": sign(AUTH_TOKEN, url_signed, STATUS)},
    )
    try:
        with urlopen(req, timeout=10) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as error:
        return error.code


@pytest.fixture
def behind_proxy(settings: Settings) -> Settings:
    """Settings for a server behind a proxy on 127.0.0.1, without PUBLIC_URL."""
    return settings.with_overrides(public_url=None, trusted_proxy="127.0.0.1")


def test_signed_for_public_https_url_is_accepted(behind_proxy: Settings) -> None:
    with (
        serve_app(create_app(behind_proxy), behind_proxy) as base,
        https_terminating_proxy(int(base.rsplit(":", 1)[1])) as proxy,
    ):
        assert post_via(proxy, f"https://{PUBLIC_HOST}/status") == 204
        assert post_via(proxy, f"http://127.0.0.1:{proxy}/status") == 403
        assert post_via(proxy, f"http://{PUBLIC_HOST}/status") == 403


def test_untrusted_proxy_headers_are_ignored(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    # The pitfall DESIGN.md warns about: without TRUSTED_PROXY waitress drops X-Forwarded-*,
    # so the https public URL cannot match, and the 403 log line says which URL was checked.
    plain = settings.with_overrides(public_url=None)
    with (
        caplog.at_level(logging.WARNING),
        serve_app(create_app(plain), plain) as base,
        https_terminating_proxy(int(base.rsplit(":", 1)[1])) as proxy,
    ):
        assert post_via(proxy, f"https://{PUBLIC_HOST}/status") == 403
    assert "checked against http://127.0.0.1:" in caplog.text


def test_public_url_wins_over_what_the_server_sees(settings: Settings) -> None:
    public = settings.with_overrides(public_url=f"https://{PUBLIC_HOST}")
    with (
        serve_app(create_app(public), public) as base,
        https_terminating_proxy(int(base.rsplit(":", 1)[1])) as proxy,
    ):
        assert post_via(proxy, f"https://{PUBLIC_HOST}/status", host="anything.local") == 204


def test_access_log_has_one_line_per_request(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    public = settings.with_overrides(public_url=f"https://{PUBLIC_HOST}")
    with (
        caplog.at_level(logging.INFO, logger="dialtone.access"),
        serve_app(create_app(public), public) as base,
        https_terminating_proxy(int(base.rsplit(":", 1)[1])) as proxy,
    ):
        post_via(proxy, f"https://{PUBLIC_HOST}/status")
        urlopen(base + "/healthz", timeout=10).close()
    lines = [r for r in caplog.records if r.name == "dialtone.access"]
    assert len(lines) == 2
    webhook = lines[0].request  # type: ignore[attr-defined]
    assert (webhook.method, webhook.path, webhook.status) == ("POST", "/status", 204)
    assert webhook.notes["sid"] == STATUS["MessageSid"]
    assert lines[0].getMessage().startswith("127.0.0.1 POST /status 204 ")
    assert lines[1].request.path == "/healthz"  # type: ignore[attr-defined]


def test_answers_leave_in_one_send_and_waitress_does_not_warn(settings: Settings) -> None:
    # send_bytes above a whole answer: the serving loop sends headers and body together.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        server = make_server(lambda environ, start_response: [], settings.with_overrides(port=0))
    try:
        assert server.adj.send_bytes == SEND_BYTES > 1000
    finally:
        server.close()
