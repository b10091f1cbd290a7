"""Run the sandbox's REST API on real waitress, on loopback, in a background thread.

    sandbox = SandboxServer().start()      # port 0: the OS picks a free port
    # the app's settings for it: dialtone.devloop.sandbox.app_settings(sandbox)
    ...
    sandbox.stop()

With a `Carrier` (`SandboxServer(carrier=Carrier(state))`, or `with_carrier=True`), the carrier is
started and stopped with the server and the phone API is served under `/_phone/`.

Also a context manager: `with SandboxServer() as sandbox: ...`.
"""

from __future__ import annotations

import logging
import threading
from types import TracebackType
from typing import Any

from waitress.server import create_server

from dialtone.sandbox.api.faults import Faults
from dialtone.sandbox.api.openapi import Violation, ViolationLog
from dialtone.sandbox.api.rest import create_rest_app
from dialtone.sandbox.carrier.network import Carrier
from dialtone.sandbox.guard import LoopbackGuard
from dialtone.sandbox.phone.api import MAX_LONG_POLLS, PREFIX, create_phone_app
from dialtone.sandbox.state import SandboxState

log = logging.getLogger("dialtone.sandbox")

# Worker threads: the phone's long polls may hold MAX_LONG_POLLS of them, the rest serve the API.
THREADS = MAX_LONG_POLLS + 4


class SandboxServer:
    """The sandbox REST API served by waitress; `.url`, `.state` and `.violations` once started.

    `.faults` makes it fail on purpose (`faults.fail_next(2, status=503)`) and lists the
    requests it saw (`faults.seen`); see dialtone.sandbox.api.faults.
    """

    def __init__(
        self,
        state: SandboxState | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        carrier: Carrier | None = None,
        with_carrier: bool = False,
        time_scale: float = 1.0,
    ) -> None:
        self.state = carrier.state if carrier else state or SandboxState()
        if carrier is None and with_carrier:
            carrier = Carrier(self.state, time_scale=time_scale)
        self.carrier = carrier
        self.violations = ViolationLog()
        self.faults = Faults(create_rest_app(self.state, violations=self.violations))
        self.host = host
        self.port = port
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL to use as TWILIO_API_URL."""
        if self._server is None:
            raise RuntimeError("the sandbox is not running; call start() first")
        return f"http://{self.host}:{self.port}"

    def start(self) -> SandboxServer:
        """Bind and serve in a daemon thread; returns self."""
        if self._server is not None:
            return self
        app: Any = self.faults
        if self.carrier is not None:
            app = _Dispatch(app, PREFIX + "/", create_phone_app(self.carrier))
        self._server = create_server(
            LoopbackGuard(app),  # loopback Host, own Origin, loopback clients: else 403
            host=self.host,
            port=self.port,
            threads=THREADS,
            ident="dialtone-sandbox",
            clear_untrusted_proxy_headers=True,
        )
        self.port = self._server.effective_port
        if self.carrier is not None:
            self.carrier.start()
        self._thread = threading.Thread(
            target=self._server.run, name=f"sandbox-rest:{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving: close every connection, end the loop thread and the workers."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        if self.carrier is not None:
            self.carrier.stop()  # first: it wakes the phone's long polls
            # Let the woken requests finish while the loop can still take their answers.
            server.task_dispatcher.shutdown(timeout=5)

        def close_all() -> None:
            # Runs in the loop thread; an empty socket map ends waitress's loop.
            for channel in list(server._map.values()):
                channel.close()

        try:
            server.trigger.pull_trigger(close_all)
        except OSError:
            # Seen rarely in tests: the loop's wake-up pipe is already closed. Close the
            # channels from here; the loop notices at its next poll (at most 1 s).
            log.debug("sandbox: waitress's trigger is closed; stopping without it")
            close_all()
        thread.join(timeout=5)
        server.task_dispatcher.shutdown(timeout=5)
        self._server = self._thread = None

    def take_violations(self) -> list[Violation]:
        """The OpenAPI violations seen so far (and forget them)."""
        return self.violations.take()

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class _Dispatch:
    """WSGI: paths under `prefix` go to `other`, everything else to `main`."""

    def __init__(self, main: Any, prefix: str, other: Any) -> None:
        self.main, self.prefix, self.other = main, prefix, other

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        app = self.other if path.startswith(self.prefix) else self.main
        return app(environ, start_response)
