"""The dev loop's app process: what it says about the app it serves."""

from __future__ import annotations

from collections.abc import Callable

import webtest

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
