"""Serve Dialtone's app on waitress: the same as `dialtone serve` (or `make serve`)."""

from dialtone.app import main
from dialtone.cli import run

if __name__ == "__main__":
    run(main)
