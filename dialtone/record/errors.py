"""The record's exceptions, and the translation of SQLite's failures into them."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from dialtone.errors import DialtoneError

# What to do about each SQLite failure a user can fix (keyed by sqlite3's sqlite_errorname).
_HINTS = {
    "SQLITE_READONLY": "check that the file and its directory are writable by the user "
    "Dialtone runs as",
    "SQLITE_CANTOPEN": "check that the directory exists and is writable, or set DATABASE_PATH",
    "SQLITE_FULL": "the disk is full: free some space",
    "SQLITE_IOERR": "the disk refused the write: it may be full, read-only or failing",
    "SQLITE_BUSY": "another process has held the database locked for too long",
    "SQLITE_NOTADB": "DATABASE_PATH points at a file that is not a SQLite database",
    "SQLITE_CORRUPT": "the file is damaged: restore it from a backup or move it aside",
}


class StoreError(DialtoneError):
    """Base class for the record's errors."""


class StoreUnavailable(StoreError):
    """The database cannot be opened, read or written (permissions, full disk, closed, ...).

    The webhook layer catches this, logs it loudly, and still answers Twilio.
    """

    def __init__(
        self,
        message: str,
        *,
        path: Path | str,
        code: str | None = None,
        reason: str = "",
        transient: bool = False,
    ) -> None:
        super().__init__(message)
        self.path = path
        # SQLite's error name (e.g. "SQLITE_READONLY") or PostgreSQL's SQLSTATE, when known.
        self.code = code
        # The cause without the file or host, for GET /healthz: "SQLITE_FULL (the disk is full)".
        self.reason = reason or (code or "unavailable")
        # The server did not answer (yet): waiting may mend it, unlike a refused password.
        self.transient = transient


class SchemaMismatch(StoreUnavailable):
    """The database's schema version is not the one this Dialtone reads or writes."""


class BadRecord(StoreError, ValueError):
    """A webhook lacks what the record needs (a MessageSid or CallSid, a status)."""


def is_environmental(exc: BaseException) -> bool:
    """True for failures of the disk or the file, not of Dialtone's own SQL."""
    return isinstance(exc, sqlite3.DatabaseError) and not isinstance(
        exc, sqlite3.IntegrityError | sqlite3.ProgrammingError | sqlite3.InterfaceError
    )


def unavailable(exc: sqlite3.DatabaseError, path: Path | str, action: str) -> StoreUnavailable:
    """A StoreUnavailable that names the file, what failed, SQLite's words and what to do."""
    code = getattr(exc, "sqlite_errorname", None)
    if code is None and "not a database" in str(exc):
        code = "SQLITE_NOTADB"
    family = (code or "").split("_", 2)
    hint = _HINTS.get(code or "") or _HINTS.get("_".join(family[:2]))
    message = f"The record at {path} cannot be {action}: {exc}"
    reason = f"cannot be {action}: {code or exc}" + (f" ({hint})" if hint else "")
    return StoreUnavailable(
        message + (f" ({hint})." if hint else "."), path=path, code=code, reason=reason
    )
