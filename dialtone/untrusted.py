"""Untrusted text made safe to print: the one escaping function for logs and terminals.

Anything that came from a request, a webhook, a phone or the record (paths, bodies, numbers,
header values) may hold control characters: a newline forges a log line, an ESC sequence
rewrites the terminal of whoever reads it (rich strips BEL but not ESC). A leaf module, so the
app, the dev loop and the sandbox can all use it.
"""

from __future__ import annotations


def printable(value: str, limit: int | None = 200) -> str:
    """`value` safe for a terminal or log file: control characters escaped, length bounded.

    Every character that is not printable (C0 and C1 controls, ESC, DEL, line and paragraph
    separators, bidi overrides and other format characters) is written as its Python escape
    (\\n, \\x1b, \\u202e); `limit` characters at most are kept (None: all).
    """
    if limit is not None:
        value = value[:limit]
    if value.isprintable():
        return value
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in value)
