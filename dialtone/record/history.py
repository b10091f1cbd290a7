"""`dialtone history` (make history): recent conversations from the record, grouped by number, as terminal tables.

Read-only: the SQLite file is opened with mode=ro, never created or migrated. With DATABASE_URL
set (and no --db), the record is read from PostgreSQL, never migrated either. Everything shown
came from a phone or a webhook, so each string goes through `printable` (an ESC in a body would
otherwise rewrite the reader's terminal).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from dialtone.errors import DialtoneError
from dialtone.phone_numbers import compact_number
from dialtone.record.base import RecordStore
from dialtone.record.store import Call, Conversation, Message, Store
from dialtone.untrusted import printable

MAX_BODY = 160  # characters of a message shown; the record keeps all of it

GOOD = {"delivered", "read", "received", "completed", "sent"}
BAD = {"failed", "undelivered", "busy", "no-answer", "canceled"}


class NoRecordYet(DialtoneError):
    """The database file does not exist yet."""

    def __init__(self, path: Path) -> None:
        super().__init__(
            f"There is no record at {path} yet. Dialtone creates it when the server starts "
            "(make serve or make dev) and fills it as messages and calls arrive. If the record "
            "lives elsewhere, set DATABASE_PATH in .env or the environment, or pass --db PATH."
        )


def render_history(
    conversations: Sequence[Conversation],
    console: Console,
    path: Path | str,
    *,
    number: str | None = None,
    per_number: int | None = None,
) -> None:
    """Print one table per conversation, most recently active first (`number`: the filter;
    `per_number`: the latest entries, messages and calls together, shown of each)."""
    if not conversations:
        console.print(Text(nothing_found(path, number)))
        return
    console.print(Text(f"Recent conversations in {path} (times in UTC)", style="bold"))
    for conversation in conversations:
        console.print(conversation_table(conversation, per_number))


def nothing_found(path: Path | str, number: str | None) -> str:
    """What to say when the record has nothing (with `number`: nothing with that number)."""
    if number is None:
        return f"The record at {path} has no messages or calls yet."
    said = f"The record at {path} has no messages or calls with {printable(number, 40)}."
    if phone_number_spellings(number) and not number.startswith("+"):
        said += (
            " Numbers are kept as Twilio sends them, in E.164: a + and the country code, "
            "as in --number +15551234567."
        )
    return said


def phone_number_spellings(typed: str) -> list[str]:
    """Other ways to read `typed` as a phone number: without its separators, and with the +
    a bare number left out; none for what is not a phone number (sip:, client:, a name)."""
    digits = compact_number(typed)
    if digits is None:
        return []
    spellings = [digits] if digits.startswith("+") else [digits, "+" + digits]
    return [spelling for spelling in spellings if spelling != typed]


def conversation_table(conversation: Conversation, per_number: int | None = None) -> Table:
    """One number's latest messages and calls (`per_number` of them together), oldest first,
    with their statuses."""
    title = Text(printable(conversation.number) or "(unknown number)", style="bold cyan")
    counts = [_plural(conversation.message_count, "message")]
    if conversation.call_count:
        counts.append(_plural(conversation.call_count, "call"))
    title.append("  " + ", ".join(counts), style="dim")
    if conversation.opted_out:
        title.append("  opted out", style="bold red")
    table = Table(title=title, title_justify="left", expand=True, show_edge=False)
    table.add_column("When", no_wrap=True, style="dim")
    table.add_column("In/out", no_wrap=True)
    table.add_column("What", ratio=1, overflow="fold")
    table.add_column("Status", no_wrap=True)
    entries: list[Message | Call] = [*conversation.messages, *conversation.calls]
    entries.sort(key=lambda e: e.created_at)
    if per_number is not None:
        entries = entries[-per_number:]  # the record gave the latest of each kind
    for entry in entries:
        what = _message_text(entry) if isinstance(entry, Message) else _call_text(entry)
        table.add_row(
            _when(entry.created_at),
            "in" if entry.direction == "inbound" else "out",
            what,
            _status(entry),
        )
    shown = len(entries)
    total = conversation.message_count + conversation.call_count
    if shown < total:
        table.caption = f"the latest {shown} of {total}"
    return table


def _message_text(message: Message) -> Text:
    body = " ".join(message.body.split())
    if len(body) > MAX_BODY:
        body = body[: MAX_BODY - 1] + "…"
    body = printable(body, None)
    text = Text(body)  # a Text, so markup-like bodies ("[bold]") print as typed
    if message.media:
        kinds = ", ".join(printable(m.content_type or "media", 80) for m in message.media)
        text.append(f"{' ' if body else ''}[{kinds}]", style="magenta")
    if not body and not message.media:
        text.append("(empty)", style="dim")
    return text


def _call_text(call: Call) -> Text:
    text = Text("call", style="blue")
    if call.duration is not None:
        text.append(f", {call.duration} s")
    if call.digits:
        text.append(", pressed " + printable(" ".join(call.digits), 80))
    return text


def _status(entry: Message | Call) -> Text:
    style = "green" if entry.status in GOOD else "red" if entry.status in BAD else "yellow"
    text = Text(printable(entry.status or "?", 40), style=style)
    if isinstance(entry, Message) and entry.error_code:
        text.append(f" ({entry.error_code})", style=style)
    return text


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def show_history(
    path: Path,
    *,
    database_url: str | None = None,
    limit: int = 10,
    per_number: int = 10,
    number: str | None = None,
    console: Console | None = None,
) -> int:
    """Print the latest `limit` conversations in the record: PostgreSQL at `database_url` when
    given (checked, never migrated), else the SQLite file at `path` (NoRecordYet if none)."""
    store: RecordStore
    if database_url:
        from dialtone.record.postgres import PostgresStore  # psycopg only when it is used

        store = PostgresStore(database_url, pool_size=1, readonly=True)
    else:
        if not path.is_file():
            raise NoRecordYet(path)
        store = Store(path, readonly=True)
    with store:
        conversations = store.conversations(limit, per_number=per_number, number=number)
        # Exactly as typed first (a sip: or client: address, a sender name), then as a number.
        for spelling in phone_number_spellings(number) if number else []:
            if conversations:
                break
            conversations = store.conversations(limit, per_number=per_number, number=spelling)
    render_history(
        conversations, console or Console(), store.where, number=number, per_number=per_number
    )
    return 0
