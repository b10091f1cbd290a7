"""Shared fixtures: settings for a test account, a fresh app per test, signed webhook posts."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import webtest
from pyngrok import conf, ngrok

from dialtone.app import close_app, create_app
from dialtone.devloop import tunnel
from dialtone.record.store import Store
from dialtone.settings import Settings
from tests.support import fake_ngrok as fake_ngrok_agent
from tests.support.postgres import (
    INSTALL_HINT,
    deselect_without_postgres,
    postgres_server,
    postgres_url,
)
from tests.support.sandbox_fixtures import sandbox, sandbox_settings
from tests.support.sandbox_world import world
from tests.support.twilio_signing import sign

__all__ = [
    "postgres_server",
    "postgres_url",
    "sandbox",
    "sandbox_settings",
    "world",
]  # fixtures re-exported for every test module

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "test-auth-token-0123456789abcdef"
API_TOKEN = "test-api-token-abcdefghijklmnopqrstuvwxyz"  # 32+ characters, as start-up asks
PHONE_NUMBER = "+15550001111"
CALLER = "+15557654321"
PUBLIC_URL = "https://dialtone.example.com"
REPO = Path(__file__).resolve().parent.parent


def settings_for(database_path: Path, **overrides: Any) -> Settings:
    """Settings for the test account with every optional feature configured sensibly."""
    return Settings(
        account_sid=ACCOUNT_SID,
        auth_token=AUTH_TOKEN,
        phone_number=PHONE_NUMBER,
        public_url=PUBLIC_URL,
        api_token=API_TOKEN,
        rules_file=REPO / "rules.toml",
        routes_dir=REPO / "routes",
        database_path=database_path,
        **overrides,
    )


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """The test account's settings, with the record in this test's temporary directory."""
    return settings_for(tmp_path / "var" / "dialtone.db")


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    """The record the `app` fixture writes to, open for the test to read (override to tune it)."""
    with Store(settings.database_path) as opened:
        yield opened


@pytest.fixture
def make_app() -> Iterator[Callable[..., webtest.TestApp]]:
    """Build a fresh app (wrapped in WebTest) from settings, with optional create_app extras;
    each is closed (its record too) when the test ends."""
    apps = []

    def build(settings: Settings, **kwargs: Any) -> webtest.TestApp:
        app = create_app(settings, **kwargs)
        apps.append(app)
        return webtest.TestApp(app)

    yield build
    for app in apps:
        close_app(app)


@pytest.fixture
def app(
    settings: Settings, store: Store, make_app: Callable[..., webtest.TestApp]
) -> webtest.TestApp:
    """The app from `settings`, recording to `store`."""
    return make_app(settings, store=store)


def signed_post(app: webtest.TestApp, auth_token: str) -> Callable[..., webtest.TestResponse]:
    """A function that POSTs a form to `app`, signed with `auth_token` as Twilio would sign it:
    for PUBLIC_URL + path, or for `url`; `signature` replaces the signature, `headers` adds some.
    `status` is WebTest's: "*" takes any answer, None only a 2xx or 3xx."""

    def post(
        path: str,
        params: Mapping[str, str],
        *,
        status: int | str | None = "*",
        signature: str | None = None,
        url: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> webtest.TestResponse:
        signed_for = url or PUBLIC_URL + path
        header = sign(auth_token, signed_for, params) if signature is None else signature
        return app.post(
            path,
            {k: v.encode("utf-8") for k, v in params.items()},
            headers={"X-Twilio-Signature": header, **(headers or {})},
            status=status,
        )

    return post


@pytest.fixture
def post_webhook(app: webtest.TestApp, settings: Settings) -> Callable[..., webtest.TestResponse]:
    """POST a form to the `app` fixture, signed with the auth token of `settings` (the app's)."""
    return signed_post(app, settings.auth_token or "")


@pytest.fixture
def fake_ngrok(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[fake_ngrok_agent.FakeNgrok]:
    """The fake ngrok agent for pyngrok to start; no download is ever attempted; nothing left running."""
    fake = fake_ngrok_agent.set_up(tmp_path, monkeypatch)
    yield fake
    tunnel.close_all()
    # A test that failed half-way may have left an agent that pyngrok still tracks: stop it.
    ngrok.kill(conf.PyngrokConfig(ngrok_path=str(fake.path)))


def _repo_var_files() -> dict[str, tuple[int, int]]:
    var = REPO / "var"
    if not var.is_dir():
        return {}
    return {
        str(path.relative_to(REPO)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in var.rglob("*")
        if path.is_file()
    }


@pytest.fixture(scope="session", autouse=True)
def repo_var_untouched() -> Iterator[None]:
    """Fail the run if a test wrote to the repo's var/ (the user's record): tests use tmp_path."""
    before = _repo_var_files()
    yield
    after = _repo_var_files()
    changed = sorted(
        name for name in set(before) | set(after) if before.get(name) != after.get(name)
    )
    if changed:
        pytest.fail(f"tests wrote to the repository's var/: {', '.join(changed)}")


_WITHOUT_POSTGRES = {"tests": 0}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without PostgreSQL installed, its tests leave the run (one summary line says so)."""
    _WITHOUT_POSTGRES["tests"] = deselect_without_postgres(config, items)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The one line saying how to run the PostgreSQL tests, when they did not run."""
    if _WITHOUT_POSTGRES["tests"]:
        terminalreporter.write_line(
            f"SKIPPED {_WITHOUT_POSTGRES['tests']} PostgreSQL tests: {INSTALL_HINT}", yellow=True
        )
