"""The sandbox as `make dev` and `make sandbox` run it: fixed port, carrier and phone API on.

sandbox = start_for_dev(settings)              # DialtoneError if SANDBOX_PORT is taken
app_settings = sandbox.settings_for_app(settings)
...
sandbox.stop()
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dialtone.errors import DialtoneError
from dialtone.sandbox.carrier.network import Carrier
from dialtone.sandbox.server import SandboxServer
from dialtone.sandbox.state import PHONE_USER_NUMBER, SandboxState
from dialtone.settings import Settings

HOST = "127.0.0.1"  # the sandbox's credentials are fixed and public: loopback only, always
# Seconds a person gets for Gather and Record, relative to Twilio's: reading a prompt on screen
# and typing keys and Enter takes longer than pressing a key while a voice speaks.
INPUT_SCALE = 2.0


def app_settings(server: SandboxServer, base: Settings | None = None, **overrides: Any) -> Settings:
    """Settings (from `base`, or defaults) that point Dialtone's Twilio client at `server`.

    Here, in the dev loop, and not in the sandbox: the sandbox knows nothing of the app."""
    return (base or Settings()).with_overrides(
        account_sid=server.state.account_sid,
        auth_token=server.state.auth_token,
        phone_number=server.state.phone_number,
        twilio_api_url=server.url,
        **overrides,
    )


class SandboxPortInUse(DialtoneError):
    """SANDBOX_PORT is taken, most likely by another sandbox."""


@dataclass
class DevSandbox:
    """A running sandbox for the dev loop."""

    server: SandboxServer
    hints: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The sandbox's base URL (Twilio's API and the phone API)."""
        return self.server.url

    def settings_for_app(self, settings: Settings) -> Settings:
        """`settings` with the sandbox's account, number and TWILIO_API_URL."""
        return app_settings(self.server, settings)

    def stop(self) -> None:
        """Hang up, stop the carrier and the server."""
        self.server.stop()


def start_for_dev(settings: Settings, *, time_scale: float = 1.0) -> DevSandbox:
    """Start the sandbox with its carrier on SANDBOX_PORT; SandboxPortInUse if it is taken."""
    carrier = Carrier(SandboxState(), time_scale=time_scale, input_scale=INPUT_SCALE)
    server = SandboxServer(carrier=carrier, host=HOST, port=settings.sandbox_port)
    try:
        server.start()
    except OSError as exc:
        raise SandboxPortInUse(
            f"The sandbox cannot listen on {HOST}:{settings.sandbox_port} ({exc.strerror or exc}). "
            "Another `make dev` or `make sandbox` is probably running: stop it, or choose "
            "another port with SANDBOX_PORT=5056 (and the same SANDBOX_PORT for `make phone`)."
        ) from None
    hints = [
        f"Sandbox: Twilio's API and the phone on {server.url} (no account, no internet).",
        f"Open the phone in a second terminal: make phone   (it is {PHONE_USER_NUMBER}).",
    ]
    if settings.sandbox_port != 5055:
        hints[-1] = f"Open the phone in a second terminal: SANDBOX_PORT={server.port} make phone"
    return DevSandbox(server, hints)
