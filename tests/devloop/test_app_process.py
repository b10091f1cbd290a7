"""The dev loop's app process: what it says about the app it serves."""

from __future__ import annotations

from collections.abc import Callable

import webtest

from dialtone.app import security_warnings
from dialtone.devloop.app_process import unrouted_webhooks
from dialtone.settings import Settings


def test_a_webhook_path_no_route_answers_is_warned_about(
    settings: Settings, make_app: Callable[..., webtest.TestApp]
) -> None:
    app = make_app(settings).app
    assert unrouted_webhooks(app, settings) == []
    [warning] = unrouted_webhooks(app, settings.with_overrides(sms_path="/helo"))
    assert warning.startswith("SMS_PATH /helo is not a route of this app")
    assert "404 (error 11200)" in warning
    assert "/sms_url" in warning  # the routes there are, to spot the typo


def test_make_dev_warns_of_what_leaves_its_tunnel_open(settings: Settings) -> None:
    # make dev serves through a public tunnel: the warnings make serve gives for an open
    # server apply, the deployment ones (API_TOKEN, PUBLIC_URL, TRUSTED_PROXY) do not.
    assert security_warnings(settings) == []
    [unsigned] = security_warnings(settings.with_overrides(validate_signatures=False))
    assert "ANYONE can post fake Twilio webhooks" in unsigned
    [pinless] = security_warnings(
        settings.with_overrides(agent_numbers=frozenset({"+15555550123"}))
    )
    assert "AGENT_PIN" in pinless
    assert security_warnings(settings.with_overrides(api_token=None)) == []
