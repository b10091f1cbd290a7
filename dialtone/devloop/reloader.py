"""hupper, as `make dev` needs it: the app restarts on edits, and a closed terminal stops it.

hupper's monitor treats SIGHUP as "reload". For `make dev` a SIGHUP means the terminal went
away: left running, the parent would keep the tunnel open and the number pointed at it with
nobody watching. So SIGHUP is handled as SIGTERM: stop, restore, close.
"""

from __future__ import annotations

from typing import ClassVar

from hupper.logger import DefaultLogger
from hupper.reloader import ControlSignal, Reloader, find_default_monitor_factory


class _StopOnHangup(Reloader):
    _signals: ClassVar[dict[str, bytes]] = {**Reloader._signals, "SIGHUP": ControlSignal.SIGTERM}


def run_app_with_reload(worker_path: str, *, shutdown_seconds: float = 2) -> None:
    """Run the importable function `worker_path` in a child restarted on edits; never returns
    (hupper exits with SystemExit once the child is stopped for good)."""
    logger = DefaultLogger(0)
    reloader = _StopOnHangup(
        worker_path=worker_path,
        monitor_factory=find_default_monitor_factory(logger),
        logger=logger,
        reload_interval=1,
        shutdown_interval=shutdown_seconds,
    )
    reloader.run()
