"""Logging set-up for the entry points: one format, and no waitress queue-depth flood."""

from __future__ import annotations

import logging
from typing import Any

from dialtone.untrusted import printable


class EscapingFormatter(logging.Formatter):
    """Formats records with their message's control characters escaped, so no logged value can
    forge or split a line. A traceback keeps its line breaks (they are Python's own), but an
    exception message quoting a request cannot slip an ESC or a carriage return through."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        """The line for `record`, with `record.message` escaped."""
        record.message = printable(record.message, None)
        return super().formatMessage(record)

    def formatException(self, ei: Any) -> str:
        """The traceback, each of its lines escaped."""
        text = super().formatException(ei)
        return "\n".join(printable(line, None) for line in text.split("\n"))


def debugging_level(level: str) -> bool:
    """True for LOG_LEVEL=DEBUG."""
    return bool(logging.getLevelName(level) == logging.DEBUG)


def configure(level: str = "INFO") -> None:
    """Plain timestamped lines on stderr; waitress's own chatter kept to what matters."""
    handler = logging.StreamHandler()
    handler.setFormatter(
        EscapingFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S")
    )
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # waitress warns "Task queue depth is N" on every busy moment; the access log already shows
    # load, so keep only its errors. Its own "Serving on ..." line stays at INFO.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    # psycopg's pool warns at every failed reconnection (every 1-3 s of an outage); the record
    # says once that it cannot be written and once that it can again.
    logging.getLogger("psycopg.pool").setLevel(
        logging.DEBUG if debugging_level(level) else logging.ERROR
    )
    # The twilio library logs every request it makes at INFO, with parameters; keep it quiet.
    logging.getLogger("twilio.http_client").setLevel(logging.WARNING)
    # pyngrok logs each step and every line ngrok prints; dialtone.devloop.tunnel explains ngrok's
    # failures itself, so show them only when debugging.
    debugging = debugging_level(level)
    logging.getLogger("pyngrok").setLevel(logging.DEBUG if debugging else logging.WARNING)
    logging.getLogger("pyngrok.process.ngrok").setLevel(
        logging.DEBUG if debugging else logging.CRITICAL + 1
    )
