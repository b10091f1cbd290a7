"""The dev loop behind `dialtone dev` (make dev): serve with reload, tunnel or sandbox, point
the number, restore on exit. The command line is in dialtone.commands.dev.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass

from rich.console import Console

from dialtone import cli
from dialtone.devloop.app_process import BROKEN_HEADER
from dialtone.devloop.console import Banner, dev_console, print_banner
from dialtone.devloop.session import DevSession, open_session
from dialtone.settings import Settings
from dialtone.web.serving import cannot_listen, port_in_use


@dataclass(frozen=True)
class DevOptions:
    """What the command line chose (see dialtone.commands.dev)."""

    public_url: str | None = None
    force_tunnel: bool = False
    voice: bool = True  # point the voice webhook
    sms: bool = True  # point the SMS webhook
    reload: bool = True
    sms_path: str | None = None  # the route the SMS webhook points at (default: SMS_PATH)
    voice_path: str | None = None  # the route the voice webhook points at (default: VOICE_PATH)
    inspector: bool = True  # serve the inspector page (docs/inspector.md)


def ensure_port_free(settings: Settings) -> None:
    """PortInUse before anything is changed, rather than after the number points here."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        if os.name != "nt":
            # A port only in TIME_WAIT is free; on Windows SO_REUSEADDR would also let this
            # probe bind a port another process is listening on.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((settings.host, settings.port))
        except OSError as exc:  # socket.gaierror for a name that does not resolve
            raise cannot_listen(settings, exc) or port_in_use(settings) from None


def announce_when_ready(console: Console, banner: Banner, host: str, port: int, t0: float) -> None:
    """Print the banner once the app accepts connections, with the time it took."""

    def wait() -> None:
        # Until the app answers: not a refused connection, and not the stand-in that answers
        # while a route or the rules cannot load (it waits for the fix, however long it takes).
        while (answer := app_answers(host, port)) is not True:
            # Quickly while nothing listens yet; calmly while the stand-in answers.
            time.sleep(0.02 if answer is None else 0.5)
        banner.ready_seconds = time.perf_counter() - t0
        print_banner(console, banner)

    threading.Thread(target=wait, daemon=True).start()


def app_answers(host: str, port: int) -> bool | None:
    """True once the app itself answers GET /healthz (whatever its status); False while the
    stand-in for an app that cannot load answers; None while nothing does."""
    connection = http.client.HTTPConnection(host, port, timeout=1)
    try:
        connection.request("GET", "/healthz")
        return connection.getresponse().getheader(BROKEN_HEADER) is None
    except OSError:
        return None
    finally:
        connection.close()


def serve_with_reload(session: DevSession, reload: bool) -> None:
    """Run the app in a child process that hupper restarts on edits; blocks until stopped."""
    os.environ.update(session.app_environment())
    if not reload:
        from dialtone.devloop.app_process import serve

        serve()
        return
    # Imported only when reloading: hupper is the one piece the app process can run without.
    from dialtone.devloop.reloader import run_app_with_reload

    # hupper exits (SystemExit) once Ctrl-C, SIGTERM or SIGHUP stopped the app; cleaning up
    # follows.
    with contextlib.suppress(SystemExit):
        run_app_with_reload("dialtone.devloop.app_process.main")


def run_dev(options: DevOptions) -> int:
    """The dev loop, until Ctrl-C or SIGTERM; the number is put back before it returns."""
    t0 = time.perf_counter()
    settings = cli.load_settings()
    if options.sms_path:
        settings = settings.with_overrides(sms_path=options.sms_path)
    if options.voice_path:
        settings = settings.with_overrides(voice_path=options.voice_path)
    console = dev_console()
    ensure_port_free(settings)
    from dialtone.app import security_warnings  # its tunnel makes the app public too

    for warning in security_warnings(settings):  # once, not at every reload of the app
        console.print(warning, style="yellow", highlight=False)
    with ExitStack() as cleanup:
        session = open_session(
            settings,
            cleanup,
            public_url=options.public_url,
            force_tunnel=options.force_tunnel,
            voice=options.voice,
            sms=options.sms,
            say=lambda text: console.print(text, style="yellow"),
        )
        if options.inspector:
            from dialtone.devloop.inspector.launch import start_inspector

            start_inspector(session, cleanup)
        announce_when_ready(console, session.banner(), settings.host, settings.port, t0)
        serve_with_reload(session, reload=options.reload)
        console.print(session.undoing(), style="dim")
    done = "Done. The number is back as it was." if session.pointed else "Done."
    console.print(done, style="green")
    return 0
