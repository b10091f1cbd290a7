"""`make dev`: serve the app with reload, open a tunnel, point the number at it, restore on exit.

With TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN it works on your real number through an ngrok
tunnel (or --public-url). Without them it runs against the local sandbox: no account, no
internet. Either way the same code finds the number, saves it, points it and puts it back.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import sys
import threading
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console

from dialtone import cli
from dialtone.devloop.console import Banner, render_banner
from dialtone.devloop.session import DevSession, open_session
from dialtone.settings import Settings, route_path
from dialtone.web.serving import port_in_use


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="make dev", description=__doc__)
    parser.add_argument(
        "--public-url",
        metavar="URL",
        help="use this https URL (another tunnel, a public host) instead of opening ngrok",
    )
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--voice-only", action="store_true", help="point only the voice webhook")
    only.add_argument("--sms-only", action="store_true", help="point only the SMS webhook")
    only.add_argument(
        "--no-update", action="store_true", help="leave the number's webhooks as they are"
    )
    parser.add_argument(
        "--tunnel",
        action="store_true",
        help="open the ngrok tunnel even when TWILIO_API_URL is on this machine",
    )
    parser.add_argument(
        "--sms-path",
        metavar="PATH",
        type=route_path,
        help="point the number's SMS webhook at this route (default: SMS_PATH or /sms_url)",
    )
    parser.add_argument(
        "--voice-path",
        metavar="PATH",
        type=route_path,
        help="point the number's voice webhook at this route (default: VOICE_PATH or /voice_url)",
    )
    parser.add_argument("--no-reload", action="store_true", help="do not restart on edits")
    return parser.parse_args(argv)


def ensure_port_free(settings: Settings) -> None:
    """PortInUse before anything is changed, rather than after the number points here."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((settings.host, settings.port))
        except OSError:
            raise port_in_use(settings) from None


def announce_when_ready(console: Console, banner: Banner, host: str, port: int, t0: float) -> None:
    """Print the banner once the app accepts connections, with the time it took."""

    def wait() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection((host, port), timeout=0.2).close()
            except OSError:
                time.sleep(0.02)
                continue
            banner.ready_seconds = time.perf_counter() - t0
            console.print(render_banner(banner))
            return

    threading.Thread(target=wait, daemon=True).start()


def serve_with_reload(session: DevSession, reload: bool) -> None:
    """Run the app in a child process that hupper restarts on edits; blocks until stopped."""
    os.environ.update(session.app_environment())
    if not reload:
        from dialtone.devloop.app_process import main as serve

        serve()
        return
    from dialtone.devloop.reloader import run_app_with_reload

    # hupper exits (SystemExit) once Ctrl-C, SIGTERM or SIGHUP stopped the app; cleaning up
    # follows.
    with contextlib.suppress(SystemExit):
        run_app_with_reload("dialtone.devloop.app_process.main")


def main(argv: list[str] | None = None) -> int:
    """The dev loop."""
    t0 = time.perf_counter()
    args = parse_args(argv)
    settings = cli.load_settings()
    if args.sms_path:
        settings = settings.with_overrides(sms_path=args.sms_path)
    if args.voice_path:
        settings = settings.with_overrides(voice_path=args.voice_path)
    console = Console(stderr=True)
    ensure_port_free(settings)
    with ExitStack() as cleanup:
        session = open_session(
            settings,
            cleanup,
            public_url=args.public_url,
            force_tunnel=args.tunnel,
            voice=not (args.sms_only or args.no_update),
            sms=not (args.voice_only or args.no_update),
            say=lambda text: console.print(text, style="yellow"),
        )
        announce_when_ready(console, session.banner(), settings.host, settings.port, t0)
        serve_with_reload(session, reload=not args.no_reload)
        console.print(session.undoing(), style="dim")
    done = "Done. The number is back as it was." if session.pointed else "Done."
    console.print(done, style="green")
    return 0


if __name__ == "__main__":
    cli.run(main)
