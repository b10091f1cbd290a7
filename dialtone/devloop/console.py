"""What `make dev` shows in the terminal: the banner, a QR code, and one line per webhook."""

from __future__ import annotations

import io
import logging
import time
from dataclasses import dataclass, field
from typing import IO

import segno
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from dialtone.untrusted import printable
from dialtone.web.accesslog import RequestRecord


@dataclass
class Banner:
    """Everything the start-up banner shows."""

    mode: str  # "Twilio" or "sandbox"
    public_url: str
    phone_number: str | None
    local_url: str
    changes: list[tuple[str, str, str]] = field(default_factory=list)
    inspector_url: str | None = None  # ngrok's own inspector
    page_url: str | None = None  # Dialtone's inspector page, with its token
    ready_seconds: float | None = None
    hints: list[str] = field(default_factory=list)


def qr_text(phone_number: str) -> str:
    """A QR code (unicode half blocks) that opens a new text to `phone_number` on a phone."""
    out = io.StringIO()
    segno.make(f"sms:{phone_number}", error="l").terminal(out=out, compact=True, border=1)
    return out.getvalue().rstrip("\n")


def render_banner(banner: Banner) -> Panel:
    """The banner as a rich Panel."""
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold cyan", no_wrap=True)
    table.add_column()
    table.add_row("Mode", banner.mode)
    if banner.phone_number:
        table.add_row("Number", Text(banner.phone_number, style="bold green"))
    if banner.public_url == banner.local_url:  # the sandbox, or a Twilio API on this machine
        table.add_row(
            "App", Text.assemble(banner.local_url, (" (webhooks come here directly)", "dim"))
        )
    else:
        table.add_row("Public URL", banner.public_url)
        table.add_row("App", banner.local_url)
    if banner.page_url:
        # The URL and its token, whole, follow the panel: a cell would cut or fold it.
        address = banner.page_url.split("?", 1)[0]
        table.add_row(
            "Inspector",
            Text.assemble((address, "bold"), (" (the whole URL, with its token, is below)", "dim")),
        )
    if banner.inspector_url:
        table.add_row("ngrok inspector", banner.inspector_url)
    for name, old, new in banner.changes:  # `old` is whatever the number was set to: escaped
        was = printable(old, None) or "(empty)"
        table.add_row(name, Text.assemble((was, "dim"), "  ->  ", (new, "green")))
    if banner.ready_seconds is not None:
        table.add_row("Ready in", f"{banner.ready_seconds:.2f} s")
    parts: list[object] = [table]
    if banner.phone_number and banner.mode == "Twilio":
        parts.append(Text("\nScan to text the number:", style="bold"))
        parts.append(Text(qr_text(banner.phone_number)))
    for hint in banner.hints:
        parts.append(Text(hint, style="yellow"))
    return Panel(Group(*parts), title="[bold]Dialtone[/bold]", expand=False)  # type: ignore[arg-type]


def dev_console(file: IO[str] | None = None) -> Console:
    """make dev's console on stderr (or `file`). In a file or a pipe, where rich assumes 80
    columns, nothing it prints is broken into lines: a log file has no width."""
    console = Console(stderr=file is None, file=file)
    console.soft_wrap = not console.is_terminal
    return console


def print_banner(console: Console, banner: Banner) -> None:
    """The banner, then the inspector's URL on a line of its own that is never cut or broken
    (a terminal of any width wraps it visually, and it copies whole)."""
    console.print(render_banner(banner), soft_wrap=False)  # a box is drawn to its width
    if banner.page_url:
        line = Text.assemble(("Inspector  ", "bold cyan"), (banner.page_url, "bold"))
        console.print(line, soft_wrap=True, highlight=False)


def status_style(status: int) -> str:
    """Green for 2xx/3xx, yellow for 4xx, red for 5xx."""
    if status >= 500:
        return "bold red"
    if status >= 400:
        return "yellow"
    return "green"


def render_request(
    record: RequestRecord, when: float | None = None, width: int | None = None
) -> Text:
    """One webhook as a coloured line: time, route, From, Body or Digits, status, duration.
    With `width`, the Body is shortened so the line fits it (an 80-column terminal)."""
    notes = record.notes
    stamp = time.strftime("%H:%M:%S", time.localtime(when))
    line = Text.assemble(
        (stamp, "dim"),
        " ",
        (f"{record.method:<4} {record.path:<18}", "bold"),
        " ",
        (f"{notes.get('from', ''):<16}", "cyan"),
        " ",
    )
    said = (notes.get("digits") and f"pressed {notes['digits']}") or notes.get("body")
    tail = Text()
    if notes.get("status"):
        tail.append(f"[{notes['status']}] ", style="magenta")
    tail.append(str(record.status), style=status_style(record.status))
    tail.append(f" {record.duration_ms:.1f}ms", style="dim")
    if said is not None:
        # The quotes and the space after take 3 columns; a Body keeps 10 characters at least.
        room = 50 if width is None else min(50, width - len(line) - len(tail) - 3)
        line.append(_short(said, max(room, 10)) if said else "(empty)", style="white")
        line.append(" ")
    line.append_text(tail)
    if notes.get("rejected"):
        line.append(f"  rejected: {notes['rejected']}", style="red")
    return line


def _short(text: str, limit: int = 50) -> str:
    """`text` on one line, at most `limit` characters of it (ending in "..." when cut), quoted."""
    text = " ".join(text.split())
    return repr(text if len(text) <= limit else text[: max(0, limit - 3)] + "...")


def lines_shown(message: str) -> str:
    """A multi-line log message (an error listing problems, a traceback) for the terminal: each
    line escaped, and every line after the first indented, so no text inside it can pass for a
    log line of its own."""
    first, *rest = message.splitlines() or [""]
    return "\n".join([printable(first, None), *("  " + printable(line, None) for line in rest)])


class RequestLogHandler(logging.Handler):
    """Prints `dialtone.access` records with render_request, and other records plainly."""

    def __init__(self, console: Console) -> None:
        super().__init__()
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        """Print the record (never raising: logging must not break a request)."""
        try:
            request = getattr(record, "request", None)
            if isinstance(request, RequestRecord):
                line = render_request(request, record.created, self.console.width)
                self.console.print(line, highlight=False)
            else:
                style = "red" if record.levelno >= logging.WARNING else "dim"
                message = record.getMessage()
                if record.exc_info:
                    message += "\n" + logging.Formatter().formatException(record.exc_info)
                self.console.print(Text(lines_shown(message), style=style), highlight=False)
        except Exception:
            self.handleError(record)
