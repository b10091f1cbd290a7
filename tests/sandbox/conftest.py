"""The `rig`: the sandbox with its carrier, a real webhook app on loopback that its number points
at, the real twilio library pointed at it with TWILIO_API_URL, and the phone API's client.
Used by the fidelity tests (issue 10), which drive the sandbox as an app would."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from twilio.rest import Client
from twilio.twiml.voice_response import VoiceResponse

from dialtone.devloop.sandbox import app_settings
from dialtone.sandbox.phone.client import Event, PhoneClient
from dialtone.sandbox.server import SandboxServer
from dialtone.settings import Settings
from dialtone.twilio_api import make_client
from tests.support.twiml_app import Received, TwimlApp, serve

SCALE = 0.01


@dataclass
class Rig:
    """Everything a fidelity test drives, and a few ways to wait for what it expects."""

    sandbox: SandboxServer
    app: TwimlApp
    client: Client
    phone: PhoneClient
    number: str  # the sandbox number
    phone_number: str  # the phone's

    def point(self, **fields: str) -> None:
        """Point the sandbox number's webhooks (app paths) through the REST API."""
        found = self.client.incoming_phone_numbers.list(phone_number=self.number)[0]
        values = {k: self.app.url(v) if v.startswith("/") else v for k, v in fields.items()}
        self.client.incoming_phone_numbers(found.sid).update(**values)

    def until_call_ends(self, timeout: float = 5.0) -> list[Event]:
        """The phone's events up to the end of its call."""
        return self.phone.collect(lambda e: e["type"] == "call_ended", timeout)

    def requests(self, path: str, count: int, timeout: float = 5.0) -> list[Received]:
        """Wait until the app has received `count` requests to `path`; all of them."""
        deadline = time.monotonic() + timeout
        while len(self.app.requests_to(path)) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.app.requests_to(path)


def said(events: list[Event]) -> list[str]:
    """The spoken text among phone events."""
    return [e["text"] for e in events if e["type"] == "say"]


def errors(events: list[Event]) -> list[tuple[int | None, bool]]:
    """(code, fatal) of the notices among phone events."""
    return [(e["code"], e["fatal"]) for e in events if e["type"] == "error"]


def say(*lines: str) -> VoiceResponse:
    response = VoiceResponse()
    for line in lines:
        response.say(line)
    return response


def kinds(events: list[Event], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == kind]


Matcher = Callable[[Event], bool]


@pytest.fixture
def rig() -> Iterator[Rig]:
    sandbox = SandboxServer(with_carrier=True, time_scale=SCALE).start()
    try:
        with serve(sandbox.state.auth_token) as app:
            app.route("/status", "")
            settings = app_settings(sandbox, Settings())
            assert sandbox.carrier is not None
            assert settings.phone_number
            rig = Rig(
                sandbox,
                app,
                make_client(settings),
                PhoneClient(sandbox.url),
                settings.phone_number,
                sandbox.carrier.phone_number,
            )
            rig.point(voice_url="/voice", sms_url="/sms")
            yield rig
            sandbox.carrier.wait_idle()
    finally:
        sandbox.stop()
    assert sandbox.take_violations() == []
