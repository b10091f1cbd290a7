"""Fixtures for the local sandbox as the tests' fake Twilio (imported by conftest.py).

`sandbox` starts a SandboxServer per test on a free loopback port and, at teardown, fails the test
if any request it received (or response it sent) disagreed with Twilio's OpenAPI description. A
test that sends a deliberately invalid request calls `sandbox.take_violations()` and asserts on them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dialtone.devloop.number_config import WEBHOOK_FIELDS
from dialtone.devloop.sandbox import app_settings
from dialtone.sandbox.server import SandboxServer
from dialtone.settings import Settings


@pytest.fixture
def sandbox() -> Iterator[SandboxServer]:
    """A running sandbox (fresh state); fails the test on OpenAPI violations."""
    server = SandboxServer().start()
    try:
        yield server
    finally:
        server.stop()
    violations = server.take_violations()
    if violations:
        lines = "\n".join(f"  - {v}" for v in violations)
        pytest.fail(f"requests to the sandbox disagree with Twilio's OpenAPI description:\n{lines}")


@pytest.fixture
def sandbox_settings(settings: Settings, sandbox: SandboxServer) -> Settings:
    """The tests' settings, with the Twilio account, number and API URL of the sandbox."""
    return app_settings(sandbox, settings)


def number_webhooks(sandbox: SandboxServer) -> dict[str, str]:
    """The sandbox number's webhook fields, as Dialtone saves and restores them."""
    found = sandbox.state.number_by_phone(str(sandbox.state.phone_number))
    assert found is not None
    data = found.to_json()
    return {name: data[name] for name in WEBHOOK_FIELDS}


def configure_number(sandbox: SandboxServer, **fields: str) -> dict[str, str]:
    """Set the sandbox number's webhook fields as a developer's might be; all of them after."""
    found = sandbox.state.number_by_phone(str(sandbox.state.phone_number))
    assert found is not None
    sandbox.state.update_number(found.sid, **fields)
    return number_webhooks(sandbox)
