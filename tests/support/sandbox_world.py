"""The sandbox with its carrier, the real app on waitress pointed at by the number, and the phone.

`world` (re-exported by conftest.py) gives a `World`: the app runs with the sandbox's account, so
the carrier's signatures validate against PUBLIC_URL (the app's real local URL), and the number's
webhooks are pointed at it through the REST API, exactly as `make dev` points a real number.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from bottle import HTTPError, HTTPResponse

from dialtone.app import close_app, create_app
from dialtone.devloop.pointing import point_number
from dialtone.devloop.sandbox import app_settings
from dialtone.sandbox.phone.client import Event, PhoneClient
from dialtone.sandbox.server import SandboxServer
from dialtone.settings import Settings
from dialtone.twilio_api import make_client
from tests.support.live_server import free_socket, serve_app

API_TOKEN = "test-api-token-abcdefghijklmnopqrstuvwxyz"  # as conftest's
REPO = Path(__file__).resolve().parents[2]

TIME_SCALE = 0.01


@dataclass
class World:
    """A running sandbox with its carrier, the app pointed at by its number, and the phone."""

    sandbox: SandboxServer
    settings: Settings
    app_url: str
    phone: PhoneClient

    def point(self, **fields: str) -> None:
        """Set the number's webhook fields through the REST API (full URLs from app paths)."""
        client = make_client(self.settings)
        number = client.incoming_phone_numbers.list(phone_number=self.settings.phone_number)[0]
        values = {k: self.app_url + v if v.startswith("/") else v for k, v in fields.items()}
        client.incoming_phone_numbers(number.sid).update(**values)

    def said_until_end(self, timeout: float = 5.0) -> tuple[list[str], Event]:
        """Everything spoken on the call until it ends, and the call_ended event."""
        events = self.phone.collect(lambda e: e["type"] == "call_ended", timeout)
        return [e["text"] for e in events if e["type"] == "say"], events[-1]

    def until_all(self, *types: str, timeout: float = 5.0) -> dict[str, Event]:
        """Read events until one of each type has been seen; the first of each."""
        found: dict[str, Event] = {}
        while set(types) - set(found):
            for event in self.phone.collect(lambda e: e["type"] in types, timeout):
                found.setdefault(event["type"], event)
        return found


def broken_routes(app: Any) -> None:
    """Routes that fail the ways apps fail, added to the real app (behind its signature check)."""

    @app.post("/broken/500", webhook=True)
    def error_500(form: Any) -> None:
        raise HTTPError(500, "boom")

    @app.post("/broken/twiml")
    def bad_twiml() -> HTTPResponse:
        return HTTPResponse(
            "<Response><Shout>hi</Shout></Response>", 200, {"Content-Type": "text/xml"}
        )

    @app.post("/broken/slow")
    def slow() -> HTTPResponse:
        time.sleep(1.0)
        return HTTPResponse("<Response/>", 200, {"Content-Type": "text/xml"})


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    sandbox = SandboxServer(with_carrier=True, time_scale=TIME_SCALE).start()
    sock = free_socket()
    app_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = app_settings(
        sandbox,
        Settings(
            api_token=API_TOKEN,
            rules_file=REPO / "rules.toml",
            public_url=app_url,
            database_path=tmp_path / "var" / "dialtone.db",  # never the repo's (the user's) record
        ),
    )
    app = create_app(settings)
    broken_routes(app)
    try:
        with serve_app(app, settings, sock):
            assert settings.account_sid
            assert settings.phone_number
            point_number(
                make_client(settings),
                settings.account_sid,
                settings.phone_number,
                app_url,
                backup_dir=tmp_path,
            )
            yield World(sandbox, settings, app_url, PhoneClient(sandbox.url))
    finally:
        sandbox.stop()
        close_app(app)
    assert sandbox.take_violations() == []
