"""Issue 4's section of `make bench`: time from start to ready of `make dev` against the
sandbox and the fake ngrok agent (goal: under 2 s).

Not measured yet: the lead adds it once the dev loop, the sandbox and the fake agent have
landed. `measure()` is called by bench/run.py and its lines are printed under their own heading;
return None to print "not measured yet".
"""

from __future__ import annotations


def measure(quick: bool) -> list[str] | None:
    """Lines for the report (e.g. "make dev ready in 1.3 s (goal < 2 s)"), or None."""
    return None
