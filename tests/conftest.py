"""Shared fixtures: settings for a test account, a fresh app per test, signed webhook posts."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import webtest

from dialtone.settings import Settings
from server import create_app
from tests.sandbox_fixtures import sandbox, sandbox_settings
from tests.sandbox_world import world
from tests.twilio_signing import sign

__all__ = ["sandbox", "sandbox_settings", "world"]  # fixtures re-exported for every test module

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "test-auth-token-0123456789abcdef"
API_TOKEN = "test-api-token-abcdefghijklmnop"
PHONE_NUMBER = "+15550001111"
CALLER = "+15557654321"
PUBLIC_URL = "https://dialtone.example.com"
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def settings(tmp_path: Any) -> Settings:
    """Settings for a test account with every optional feature configured sensibly."""
    return Settings(
        account_sid=ACCOUNT_SID,
        auth_token=AUTH_TOKEN,
        phone_number=PHONE_NUMBER,
        public_url=PUBLIC_URL,
        api_token=API_TOKEN,
        rules_file=REPO / "rules.toml",
    )


@pytest.fixture
def make_app() -> Callable[..., webtest.TestApp]:
    """Build a fresh app (wrapped in WebTest) from settings, with optional create_app extras."""

    def build(settings: Settings, **kwargs: Any) -> webtest.TestApp:
        return webtest.TestApp(create_app(settings, **kwargs))

    return build


@pytest.fixture
def app(settings: Settings, make_app: Callable[..., webtest.TestApp]) -> webtest.TestApp:
    return make_app(settings)


@pytest.fixture
def post_webhook(app: webtest.TestApp) -> Callable[..., webtest.TestResponse]:
    """POST a form to `path`, signed for PUBLIC_URL + path as Twilio would sign it."""

    def post(
        path: str,
        params: Mapping[str, str],
        *,
        status: int | str = "*",
        signature: str | None = None,
        url: str | None = None,
    ) -> webtest.TestResponse:
        signed_for = url or PUBLIC_URL + path
        header = sign(AUTH_TOKEN, signed_for, params) if signature is None else signature
        return app.post(
            path,
            {k: v.encode("utf-8") for k, v in params.items()},
            headers={"X-Twilio-Signature": header},
            status=status,
        )

    return post
