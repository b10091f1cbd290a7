"""Outbound resilience against the sandbox: 429 and 5xx retried when safe, within the budget."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
import requests
import webtest
from twilio.rest import Client

from dialtone import twilio_api
from dialtone.record.store import Store
from dialtone.sandbox.server import SandboxServer
from dialtone.settings import Settings
from dialtone.twilio_api import backoff, creates, make_client, never_sent, retryable_status
from tests.conftest import API_TOKEN, CALLER

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
MESSAGES = "/2010-04-01/Accounts/{}/Messages.json"


@pytest.fixture
def app(
    sandbox_settings: Settings, store: Store, make_app: Callable[..., webtest.TestApp]
) -> webtest.TestApp:
    # Short waits between tries: the tests show the retries, not the backoff's length.
    client = make_client(sandbox_settings, backoff_seconds=0.01)
    return make_app(sandbox_settings, store=store, twilio=client)


def posts(sandbox: SandboxServer) -> list[str]:
    return [path for method, path in sandbox.faults.seen if method == "POST"]


def test_a_429_is_retried_and_the_text_sent_once(
    app: webtest.TestApp, sandbox: SandboxServer, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    sandbox.faults.fail_next(2, status=429)
    with caplog.at_level(logging.WARNING, logger="dialtone.twilio"):
        answer = app.post_json("/send_sms", {"to": CALLER, "body": "hi"}, headers=AUTH, status=201)
    assert len(posts(sandbox)) == 3
    (sent,) = sandbox.state.messages()
    assert answer.json["sid"] == sent.sid
    assert store.message(sent.sid) is not None
    assert caplog.text.count("HTTP 429") == 2


def test_429s_past_the_last_try_are_a_502_with_the_code_recorded(
    app: webtest.TestApp, sandbox: SandboxServer, store: Store
) -> None:
    sandbox.faults.fail_next(5, status=429)
    answer = app.post_json("/send_sms", {"to": CALLER, "body": "hi"}, headers=AUTH, status=502)
    assert answer.json["error"]["twilio_code"] == 20429
    assert len(posts(sandbox)) == twilio_api.MAX_ATTEMPTS
    (message,) = store.messages()
    assert (message.status, message.error_code) == ("failed", 20429)
    assert sandbox.state.messages() == []


def test_a_5xx_on_a_create_is_not_retried(
    app: webtest.TestApp, sandbox: SandboxServer, store: Store
) -> None:
    # Twilio may have sent the message before failing: a retry could text the person twice.
    sandbox.faults.fail_next(1, status=503)
    answer = app.post_json("/send_sms", {"to": CALLER, "body": "hi"}, headers=AUTH, status=502)
    assert len(posts(sandbox)) == 1
    error = answer.json["error"]
    assert error["twilio_code"] == 20503
    assert "may have sent it anyway" in error["message"]
    (message,) = store.messages()
    assert message.error_code == 20503


def test_a_5xx_on_a_call_create_is_not_retried(
    app: webtest.TestApp, sandbox: SandboxServer
) -> None:
    sandbox.faults.fail_next(1, status=500)
    app.post_json("/make_call", {"to": CALLER}, headers=AUTH, status=502)
    assert len(posts(sandbox)) == 1


def test_5xx_on_a_read_is_retried(sandbox: SandboxServer, sandbox_settings: Settings) -> None:
    client = make_client(sandbox_settings, backoff_seconds=0.01)
    sandbox.faults.fail_next(2, status=503)
    numbers = client.incoming_phone_numbers.list()
    assert [n.phone_number for n in numbers] == [sandbox_settings.phone_number]
    assert len(sandbox.faults.seen) == 3


def test_an_update_by_sid_is_retried(sandbox: SandboxServer, sandbox_settings: Settings) -> None:
    client = make_client(sandbox_settings, backoff_seconds=0.01)
    (number,) = client.incoming_phone_numbers.list()
    sandbox.faults.clear()
    sandbox.faults.fail_next(1, status=502)
    client.incoming_phone_numbers(number.sid).update(sms_url="https://example.com/sms_url")
    assert len(sandbox.faults.seen) == 2
    (updated,) = sandbox.state.numbers()
    assert updated.sms_url == "https://example.com/sms_url"


def test_retry_after_is_honoured(sandbox: SandboxServer, sandbox_settings: Settings) -> None:
    waits: list[float] = []
    client = twilio_api.RedirectingHttpClient(sandbox.url, 10, sleep=waits.append)
    sandbox.faults.fail_next(1, status=429, retry_after=1.5)
    path = MESSAGES.format(sandbox.state.account_sid)
    answer = client.request(
        "GET",
        "https://api.twilio.com" + path,
        auth=(sandbox.state.account_sid, sandbox.state.auth_token),
    )
    assert answer.status_code == 200
    assert waits == [1.5]


def test_a_retry_after_beyond_the_budget_gives_up_at_once(
    sandbox: SandboxServer, sandbox_settings: Settings
) -> None:
    waits: list[float] = []
    client = twilio_api.RedirectingHttpClient(sandbox.url, 2, sleep=waits.append)
    sandbox.faults.fail_next(1, status=429, retry_after=30)
    answer = client.request("GET", sandbox.url + "/anything")
    assert answer.status_code == 429
    assert waits == []


def test_an_unreachable_twilio_is_retried_then_a_502(
    sandbox_settings: Settings, make_app: Callable[..., webtest.TestApp]
) -> None:
    gone = sandbox_settings.with_overrides(twilio_api_url="http://127.0.0.1:9", twilio_timeout=3)
    waits: list[float] = []
    client = twilio_api.RedirectingHttpClient(gone.twilio_api_url, 3, sleep=waits.append)
    twilio = Client(gone.account_sid, gone.auth_token, http_client=client)
    reply = make_app(gone, twilio=twilio).post_json(
        "/send_sms", {"to": CALLER, "body": "x"}, headers=AUTH, status=502
    )
    assert "Could not reach Twilio" in reply.json["error"]["message"]
    assert len(waits) == twilio_api.MAX_ATTEMPTS - 1  # refused connections: safe to retry


def test_which_requests_create() -> None:
    base = "https://api.twilio.com/2010-04-01/Accounts/AC123"
    assert creates("POST", base + "/Messages.json")
    assert creates("post", base + "/Calls.json")
    assert not creates("GET", base + "/Messages.json")
    assert not creates("POST", base + "/Calls/CA" + "0" * 32 + ".json")
    assert not creates("POST", base + "/IncomingPhoneNumbers/PN" + "a" * 32 + ".json")


def test_which_statuses_are_retried() -> None:
    assert retryable_status(429, create=True)
    assert retryable_status(503, create=False)
    assert not retryable_status(503, create=True)
    assert not retryable_status(400, create=False)
    assert not retryable_status(404, create=False)


def test_a_refused_connection_was_never_sent() -> None:
    with pytest.raises(requests.ConnectionError) as caught:
        requests.get("http://127.0.0.1:9/", timeout=2)
    assert never_sent(caught.value)
    assert not never_sent(requests.exceptions.ReadTimeout("read timed out"))


@pytest.mark.parametrize("attempt", [1, 2, 3, 4])
def test_backoff_doubles_with_jitter(attempt: int) -> None:
    step = 0.25 * 2 ** (attempt - 1)
    for _ in range(50):
        assert step / 2 <= backoff(attempt, 0.25) <= step
