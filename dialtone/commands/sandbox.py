"""`dialtone sandbox` (make sandbox): run the local sandbox (Twilio's API, the carrier, the phone
API) on its own.

Point any app at it with the settings it prints; `--app URL` also points the sandbox number's
voice, SMS and status webhooks at that app (URL/voice_url, URL/sms_url, URL/status). Open the
phone with `dialtone phone`. Ctrl-C stops it.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import threading

from dialtone import cli, logs
from dialtone.settings import absolute_url

SUMMARY = "run the local sandbox alone (--app URL points its number at an app)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `dialtone sandbox`."""
    parser.add_argument(
        "--app",
        metavar="URL",
        type=absolute_url,
        help="point the sandbox number's webhooks at the app at this base URL",
    )


def run(args: argparse.Namespace) -> int:
    """Serve the sandbox until Ctrl-C or SIGTERM."""
    from rich.console import Console
    from rich.panel import Panel
    from rich.text import Text

    from dialtone.devloop.number_config import pointing_at
    from dialtone.devloop.sandbox import start_for_dev

    settings = cli.load_settings()
    logs.configure(settings.log_level)
    console = Console(stderr=True)
    sandbox = start_for_dev(settings)
    try:
        state = sandbox.server.state
        app_settings = sandbox.settings_for_app(settings)
        if args.app:
            number = state.number_by_phone(str(state.phone_number))
            assert number is not None
            state.update_number(
                number.sid,
                **pointing_at(args.app, voice_path=settings.voice_path, sms_path=settings.sms_path),
            )
        lines = Text()
        lines.append("Use these settings in the app's environment (or .env):\n", style="bold")
        for name, value in (
            ("TWILIO_ACCOUNT_SID", app_settings.account_sid),
            ("TWILIO_AUTH_TOKEN", app_settings.auth_token),
            ("TWILIO_PHONE_NUMBER", app_settings.phone_number),
            ("TWILIO_API_URL", app_settings.twilio_api_url),
        ):
            lines.append(f"  {name}={value}\n", style="green")
        if args.app:
            lines.append(f"\nThe number's webhooks point at {args.app}.\n", style="cyan")
        for hint in sandbox.hints:
            lines.append(f"\n{hint}", style="yellow")
        console.print(Panel(lines, title="[bold]Dialtone sandbox[/bold]", expand=False))
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: stop as SIGTERM does
            # In short waits: on Windows, Ctrl-C does not interrupt a wait without a timeout.
            while not stop.wait(0.5):
                pass
    finally:
        sandbox.stop()
    console.print("Sandbox stopped.", style="dim")
    return 0
