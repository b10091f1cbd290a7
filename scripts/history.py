"""Print recent conversations from the record: `make history` (ARGS="--number +1555...")."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere

from dialtone import cli
from dialtone.record.history import main

if __name__ == "__main__":
    cli.run(main)
