"""The parent side of `make dev`: sandbox or account, tunnel, and the number, undone in order.

Everything opened is registered on an ExitStack as soon as it exists, so a failure halfway (or
Ctrl-C, or SIGTERM) undoes exactly what was done, in reverse: number restored, tunnel closed,
sandbox stopped.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dialtone.devloop.console import Banner
from dialtone.devloop.number_config import BACKUP_DIR, NumberError
from dialtone.devloop.pointing import PointedNumber, point_number
from dialtone.errors import DialtoneError, SettingsError
from dialtone.settings import Settings
from dialtone.twilio_api import is_loopback, make_client


@dataclass
class DevSession:
    """What the dev loop set up: where the app is reachable, and what it changed."""

    settings: Settings  # as the app child must see them
    mode: str  # "Twilio" or "sandbox"
    public_url: str
    pointed: PointedNumber | None = None
    inspector_url: str | None = None
    hints: tuple[str, ...] = ()
    tunnel: bool = False
    page_url: str | None = None  # the inspector page (with its token), once it is serving
    child_env: dict[str, str] = field(default_factory=dict)  # for the app child (the inspector)

    def undoing(self) -> str:
        """What stopping will do, for the line printed on Ctrl-C."""
        steps = ["restoring the number"] if self.pointed else []
        steps.append("closing the tunnel" if self.tunnel else "")
        steps.append("stopping the sandbox" if self.mode == "sandbox" else "")
        return "Stopping: " + ", ".join(step for step in steps if step) + "..."

    def app_environment(self) -> dict[str, str]:
        """Environment for the app process: the public URL and, in sandbox mode, its account."""
        s = self.settings
        env = {"PUBLIC_URL": self.public_url, "SMS_PATH": s.sms_path, "VOICE_PATH": s.voice_path}
        for name, value in (
            ("TWILIO_ACCOUNT_SID", s.account_sid),
            ("TWILIO_AUTH_TOKEN", s.auth_token),
            ("TWILIO_PHONE_NUMBER", s.phone_number),
            ("TWILIO_API_URL", s.twilio_api_url),
        ):
            if value:
                env[name] = value
        env.update(self.child_env)
        return env

    def banner(self) -> Banner:
        """The start-up banner for this session."""
        return Banner(
            mode=self.mode,
            public_url=self.public_url,
            phone_number=self.settings.phone_number,
            local_url=f"http://{self.settings.host}:{self.settings.port}",
            changes=self.pointed.changes if self.pointed else [],
            inspector_url=self.inspector_url,
            page_url=self.page_url,
            hints=list(self.hints),
        )


def half_an_account(settings: Settings) -> str | None:
    """Why the account settings are neither whole nor absent, if so: with one of the SID and
    the token alone, make dev would quietly run the sandbox instead of the account meant."""
    if bool(settings.account_sid) == bool(settings.auth_token):
        return None
    have, missing = (
        ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN")
        if settings.account_sid
        else ("TWILIO_AUTH_TOKEN", "TWILIO_ACCOUNT_SID")
    )
    return (
        f"{missing}: {have} is set but {missing} is not. Set both (and TWILIO_PHONE_NUMBER) "
        "to use your Twilio account, or neither to use the local sandbox."
    )


def open_session(
    settings: Settings,
    cleanup: ExitStack,
    *,
    public_url: str | None = None,
    force_tunnel: bool = False,
    voice: bool = True,
    sms: bool = True,
    say: Callable[[str], Any] = print,
) -> DevSession:
    """Start the sandbox or reach the account, open the tunnel, point the number."""
    hints: list[str] = []
    inspector_url = None
    backup_dir = BACKUP_DIR
    local_url = f"http://{settings.host}:{settings.port}"
    half = half_an_account(settings)
    if half:
        raise SettingsError([half])
    if not settings.has_credentials:
        from dialtone.devloop.sandbox import start_for_dev

        mode = "sandbox"
        if settings.phone_number:
            say(
                f"TWILIO_PHONE_NUMBER ({settings.phone_number}) is set, but without "
                "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN make dev runs the local sandbox, "
                "with a number of its own."
            )
        sandbox = start_for_dev(settings)
        cleanup.callback(sandbox.stop)
        settings = sandbox.settings_for_app(settings)
        hints = list(sandbox.hints)
        # The sandbox's number lives as long as this process: a backup of it would outlive it
        # and confuse the next run, so it is kept only for this run.
        backup_dir = Path(tempfile.mkdtemp(prefix="dialtone-sandbox-"))
        cleanup.callback(shutil.rmtree, backup_dir, ignore_errors=True)
    elif not settings.phone_number:
        raise SettingsError(["TWILIO_PHONE_NUMBER: set it to the number make dev should use"])
    elif settings.twilio_api_url and is_loopback(settings.twilio_api_url) and not force_tunnel:
        # `make sandbox` (or a mock) on this machine: it reaches the app directly, no tunnel.
        mode = f"local Twilio API at {settings.twilio_api_url}"
    else:
        mode = "Twilio"
        if public_url is None:
            from dialtone.devloop.tunnel import open_tunnel

            tunnel = open_tunnel(
                settings.port,
                authtoken=settings.ngrok_authtoken,
                domain=settings.ngrok_domain,
                ngrok_path=settings.ngrok_path,
            )
            cleanup.callback(tunnel.close)
            public_url, inspector_url = tunnel.public_url, tunnel.inspector_url
    public_url = public_url or local_url
    assert settings.account_sid  # checked above, or the sandbox's
    assert settings.phone_number
    session = DevSession(
        settings,
        mode,
        public_url.rstrip("/"),
        inspector_url=inspector_url,
        hints=tuple(hints),
        tunnel=inspector_url is not None,
    )
    if voice or sms:
        client = make_client(settings)
        session.pointed = point_number(
            client,
            settings.account_sid,
            settings.phone_number,
            session.public_url,
            voice=voice,
            sms=sms,
            voice_path=settings.voice_path,
            sms_path=settings.sms_path,
            backup_dir=backup_dir,
            notice=say,
        )
        cleanup.callback(_restore, session.pointed)
    return session


def _restore(pointed: PointedNumber) -> None:
    try:
        pointed.restore()
    except DialtoneError as exc:
        raise NumberError(
            f"{exc} The original configuration is still saved in {pointed.backup}; run "
            f"`make restore` once the problem is fixed."
        ) from None
