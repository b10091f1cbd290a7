"""Loaded by every interpreter started with this directory on PYTHONPATH: POSIX-only modules and
names are taken away, as on Windows, so an import or use of them on Dialtone's paths fails here.

Modules whose POSIX branch needs them, and that take another branch on Windows, are imported
first with the real modules: hupper (on Linux its ipc module imports fcntl and termios; on
Windows it imports hupper.winapi instead). Only Dialtone's own code paths are checked.
"""

import importlib
import os
import signal
import socket
import sys

# hupper's POSIX branch, imported while fcntl and termios still exist; on Windows hupper.ipc
# imports hupper.winapi instead, and hupper checks for SIGHUP before using it.
for dotted in ("hupper.ipc", "hupper.reloader", "hupper.worker"):
    importlib.import_module(dotted)

BLOCKED_MODULES = ("fcntl", "termios", "tty", "pty", "resource", "pwd", "grp", "syslog")
MISSING = {
    signal: (
        *("SIGHUP", "SIGCHLD", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM"),
        *("sigtimedwait", "sigwaitinfo", "sigwait", "pthread_sigmask", "pthread_kill"),
        *("setitimer", "alarm", "pause", "siginterrupt"),
    ),
    os: ("fork", "forkpty", "killpg", "setsid", "setpgrp", "getpgid", "getuid", "geteuid"),
    # SO_REUSEPORT stays, as on macOS (which has it, and has no sigtimedwait).
    socket: ("MSG_DONTWAIT",),
}

for name in BLOCKED_MODULES:
    sys.modules.pop(name, None)
    sys.modules[name] = None  # type: ignore[assignment]  # `import name` raises ImportError
for module, names in MISSING.items():
    for name in names:
        if hasattr(module, name):
            delattr(module, name)
os.environ["DIALTONE_WITHOUT_POSIX"] = "1"  # so a test can tell the prelude ran
