"""Fixtures for the local sandbox as the tests' fake Twilio (imported by conftest.py).

`sandbox` starts a SandboxServer per test on a free loopback port and, at teardown, fails the test
if any request it received (or response it sent) disagreed with Twilio's OpenAPI description. A
test that sends a deliberately invalid request calls `sandbox.take_violations()` and asserts on them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

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
    return sandbox.settings(settings)
