"""A Dialtone server run as a real process by the tests, its stderr collected line by line."""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WAIT = 15.0  # seconds; generous for a loaded CI machine, never slept


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_pids(pid: int) -> list[int]:
    """The pids of the processes that `pid`'s main thread started, from Linux's /proc."""
    return [int(word) for word in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


class ServerProcess:
    """A server started as a real process; its stderr collected line by line."""

    def __init__(
        self,
        args: list[str],
        tmp: Path,
        env: dict[str, str] | None = None,
        *,
        file_limit: tuple[int, int] | None = None,
        new_session: bool = False,
    ) -> None:
        # The record goes to the test's directory, never the repository's var/ (the user's).
        database = {"DATABASE_PATH": str(tmp / "var" / "dialtone.db")}
        self.proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=ROOT,
            env={**os.environ, **database, **(env or {})},
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=new_session,  # its own process group, for a terminal's Ctrl-C
            preexec_fn=(lambda: resource.setrlimit(resource.RLIMIT_NOFILE, file_limit))
            if file_limit
            else None,
        )
        self.lines: list[str] = []
        self.changed = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self.changed:
                self.lines.append(line)
                self.changed.notify_all()

    def wait_for(self, text: str) -> None:
        """Block until a line containing `text` appears (fails after WAIT seconds)."""
        with self.changed:
            found = self.changed.wait_for(lambda: any(text in line for line in self.lines), WAIT)
        assert found, f"no {text!r} in the server's output:\n{self.output}"

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def instances(self) -> set[int]:
        """The pids of the server's instances (its child processes), from /proc."""
        return set(child_pids(self.proc.pid))

    def stop(self) -> int:
        """SIGTERM, and the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        return self.finish()

    def finish(self) -> int:
        """Wait for the process to end (killing it after WAIT) and close its pipe; exit code."""
        try:
            code = self.proc.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.reader.join(timeout=WAIT)
        assert self.proc.stderr is not None
        self.proc.stderr.close()
        return code
