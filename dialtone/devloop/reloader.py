"""hupper, as `make dev` needs it: the app restarts on edits, Ctrl-C stops it without a
traceback, and a closed terminal stops it.

Ctrl-C goes to every process of the terminal's process group, the app child included. A child
still importing its modules (the first few tenths of a second after a start or a reload) would
die of it with a KeyboardInterrupt traceback, and a serving one would get it and hupper's SIGTERM
at once. So on POSIX the child starts with SIGINT blocked, and the reloader turns Ctrl-C into
one SIGTERM to it: the app process stops on that (dialtone.devloop.app_process), and a child
not serving yet ends quietly. Windows has no inherited signal dispositions; there the console's
Ctrl-C reaches the child, which stops on it, as hupper intends.

hupper's monitor treats SIGHUP as "reload". For `make dev` a SIGHUP means the terminal went
away: left running, the parent would keep the tunnel open and the number pointed at it with
nobody watching. So SIGHUP is handled as SIGTERM: stop, restore, close.
"""

from __future__ import annotations

import signal
from typing import Any, ClassVar

from hupper.logger import DefaultLogger
from hupper.reloader import ControlSignal, Reloader, _run_worker, find_default_monitor_factory
from hupper.worker import Worker

# hupper waits this long between a stop and the next start (its default is 1 s): an edit
# detected (its file poll runs every second) is served about half a second later.
RESTART_PAUSE = 0.25

# pthread_sigmask is POSIX's (it stands for what the child can inherit: Windows has neither).
INHERITS_SIGNALS = hasattr(signal, "pthread_sigmask")


class _AppWorker(Worker):
    """A hupper worker whose process starts with SIGINT blocked (POSIX)."""

    def start(self, on_packet: Any = None) -> None:
        if not INHERITS_SIGNALS:
            super().start(on_packet)
            return
        # Blocked in this thread only, while it spawns: the child inherits the mask (and never
        # unblocks it: SIGINT stays pending there, undelivered). The parent's disposition is
        # left alone, so a Ctrl-C meanwhile reaches its handler through another thread, or
        # once unblocked. (Setting SIG_IGN here instead lost that Ctrl-C: another thread took
        # it and ignored it.)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            super().start(on_packet)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


class _DevReloader(Reloader):
    _signals: ClassVar[dict[str, bytes]] = {
        **Reloader._signals,
        "SIGHUP": ControlSignal.SIGTERM,
        **({"SIGINT": ControlSignal.SIGTERM} if INHERITS_SIGNALS else {}),
    }

    def _run_worker(self) -> Any:
        # hupper's own Reloader._run_worker, with _AppWorker for its Worker (hupper is pinned;
        # a version without these names fails at import, and the Ctrl-C test fails without it).
        worker = _AppWorker(self.worker_path, args=self.worker_args, kwargs=self.worker_kwargs)
        return _run_worker(self, worker)


def run_app_with_reload(worker_path: str, *, shutdown_seconds: float = 2) -> None:
    """Run the importable function `worker_path` in a child restarted on edits; never returns
    (hupper exits with SystemExit once the child is stopped for good)."""
    logger = DefaultLogger(0)
    reloader = _DevReloader(
        worker_path=worker_path,
        monitor_factory=find_default_monitor_factory(logger),
        logger=logger,
        reload_interval=RESTART_PAUSE,
        shutdown_interval=shutdown_seconds,
    )
    reloader.run()
