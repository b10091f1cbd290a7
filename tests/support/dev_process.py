"""Run `python -m dialtone dev` as a real subprocess and watch what it prints."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path


class DevProcess:
    """`dialtone dev` (or `command`) in its own process group, its output collected as it comes.

    The dialtone package imported is the one in `cwd` if it has one (a copy of the project), else
    this checkout (installed editable in .venv).
    """

    def __init__(self, env: dict[str, str], cwd: Path, *args: str, command: str = "dev") -> None:
        self.command = command
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dialtone", command, *args],
            cwd=cwd,
            env={**env, "COLUMNS": "200", "NO_COLOR": "1", "PYTHONUNBUFFERED": "1"},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        """Everything printed so far."""
        return "\n".join(self.lines)

    def wait_for(self, text: str, timeout: float = 20) -> None:
        """Block until `text` has been printed; AssertionError with the output otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output:
                return
            if self.process.poll() is not None:
                self._reader.join(timeout=2)
                if text in self.output:
                    return
                raise AssertionError(
                    f"dialtone {self.command} exited {self.process.returncode}:\n{self.output}"
                )
            time.sleep(0.05)
        raise AssertionError(f"{text!r} never printed:\n{self.output}")

    def stop(self, signum: int = signal.SIGINT, timeout: float = 20) -> int:
        """Send `signum` to the whole process group (as Ctrl-C does) and wait for the exit."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signum)
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=2)
        return code

    def finish(self, timeout: float = 30) -> int:
        """Wait for the process to exit by itself."""
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=2)
        return code

    def kill_group(self) -> None:
        """SIGKILL everything left in the process group (the app child, ngrok)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
