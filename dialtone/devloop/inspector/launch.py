"""Starting the inspector for a dev session, and telling the app child where it is."""

from __future__ import annotations

import errno
from contextlib import ExitStack

from dialtone.devloop.capture import INGEST_ENV, TOKEN_ENV
from dialtone.devloop.inspector.replay import Target
from dialtone.devloop.inspector.server import InspectorServer, PageInfo
from dialtone.devloop.session import DevSession
from dialtone.sandbox.state import PHONE_USER_NUMBER


def app_url(host: str, port: int) -> str:
    """The app's local URL, for replays: a wildcard bind is reached through loopback."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def start_inspector(session: DevSession, cleanup: ExitStack) -> InspectorServer:
    """Serve the inspector for `session` (on INSPECTOR_PORT, or any free port if it is taken);
    it stops when `cleanup` unwinds. Sets `session.page_url` and the app child's environment."""
    settings = session.settings
    sandbox = session.mode == "sandbox"
    target = Target(
        app_url=app_url(settings.host, settings.port),
        public_url=session.public_url,
        auth_token=settings.auth_token,
    )
    info = PageInfo(
        mode=session.mode,
        phone_number=settings.phone_number,
        public_url=session.public_url,
        phone_user_number=PHONE_USER_NUMBER if sandbox else None,
    )
    sandbox_url = settings.twilio_api_url if sandbox else None
    try:
        server = InspectorServer(
            port=settings.inspector_port, target=target, info=info, sandbox_url=sandbox_url
        )
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        # Another make dev has the port: the URL is printed anyway, so any port will do.
        server = InspectorServer(port=0, target=target, info=info, sandbox_url=sandbox_url)
    server.start()
    cleanup.callback(server.stop)
    session.page_url = server.url
    if sandbox:
        session.hints = (
            *session.hints,
            "Or use the phone in the browser: open the Inspector URL below.",
        )
    session.child_env = {INGEST_ENV: server.ingest_url, TOKEN_ENV: server.token}
    return server
