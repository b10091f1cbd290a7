"""How the terminal phone shows things: one rich `Text` per event, and the help screen."""

from __future__ import annotations

import time
from typing import Any

from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from dialtone.untrusted import printable

Event = dict[str, Any]

COMMANDS = [
    ("any text", "text the number (on a call: keys for the menu, e.g. 1 or 1234#)"),
    ("/text words", "text the number, even during a call"),
    ("/mms URL [words]", "send a picture (or any media URL) with optional words"),
    ("/call", "call the number"),
    ("/answer, /decline", "take or refuse a call that is ringing the phone"),
    ("/hangup", "end the call"),
    ("/fail text 30003", "the next text to this phone ends undelivered (or: failed, x2, +number)"),
    ("/fail call busy", "the next call to this phone ends busy (no-answer, failed)"),
    ("/help", "this list"),
    ("/quit", "leave the phone (Ctrl-D works too)"),
]


def help_panel(phone_number: str, sandbox_number: str, url: str) -> Panel:
    """The start-up screen: who is who, and the commands."""
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold cyan", no_wrap=True)
    table.add_column()
    table.add_row("This phone", Text(phone_number, style="bold"))
    table.add_row("Calling/texting", Text(sandbox_number, style="bold green"))
    table.add_row("Sandbox", url)
    table.add_row("", "")
    for command, meaning in COMMANDS:
        table.add_row(Text(command), meaning)  # Text: "[words]" is not rich markup
    return Panel(table, title="[bold]Dialtone phone[/bold]", expand=False)


def _displayable(event: Event) -> Event:
    """`event` with its text safe for a terminal: what an app or an API call wrote may hold an
    ESC that would rewrite the screen (escaped; a body's line breaks are kept)."""

    def safe(value: Any) -> Any:
        if isinstance(value, str):
            return "\n".join(printable(line, None) for line in value.split("\n"))
        if isinstance(value, list):
            return [safe(item) for item in value]
        return value

    return {key: safe(value) for key, value in event.items()}


def stamp(event: Event | None = None) -> Text:
    """The time of `event` (or now) as the phone's lines start with it."""
    moment = event.get("time") if event else None
    return Text(time.strftime("%H:%M:%S ", time.localtime(moment)), style="dim")


def sent(number: str, body: str, media: bool) -> Text:
    """The phone's own text, as it is sent: stamped like the lines that answer it."""
    text = printable(f"you → {number}: {body}{' 📎' if media else ''}", None)
    return stamp() + Text(text, style="bold")


def render(event: Event, phone_number: str) -> Text | None:
    """One event as a line (or a few) for the terminal; None for events not worth showing."""
    kind = event["type"]
    body = _BODY.get(kind)
    shown = body(_displayable(event), phone_number) if body else None
    if shown is None:
        return None
    return stamp(event) + shown


def _message(event: Event, phone: str) -> Text:
    sender = event["from_"]
    if event.get("auto_reply"):  # Twilio's own answer to a keyword, not the app's
        sender = f"Twilio (automatic reply for {sender})"
    text = Text.assemble(("✉  ", "green"), (f"{sender}: ", "bold green"))
    text.append(event.get("body") or "(no text)", style="green")
    for url in event.get("media_urls") or []:
        text.append(f"\n         📎 {url}", style="green")
    return text


def _message_status(event: Event, phone: str) -> Text | None:
    if event.get("to_phone") and event["status"] not in ("undelivered", "failed"):
        return None  # the phone shows the message itself when it arrives
    style = "yellow" if event["status"] in ("undelivered", "failed") else "dim"
    text = Text(f"   text {event['sid'][:10]}… to {event['to']} is {event['status']}", style=style)
    if event.get("error_code"):
        text.append(f" (error {event['error_code']})", style=style)
    return text


def _ringing(event: Event, phone: str) -> Text:
    return Text.assemble(
        ("☎  Incoming call from ", "bold magenta"),
        (event["from_"], "bold"),
        ("  /answer or /decline", "magenta"),
    )


def _call_status(event: Event, phone: str) -> Text | None:
    mine = phone in (event.get("from_"), event.get("to"))
    if not mine:
        return Text(f"   call to {event['to']} is {event['status']}", style="dim")
    if event["status"] in ("queued", "completed", "busy", "no-answer", "canceled", "failed"):
        return None  # call_ended says how it ended
    if event["status"] == "ringing" and event.get("to") == phone:
        return None  # the "Incoming call" line says it
    label = {"ringing": "ringing…", "in-progress": "connected"}.get(
        event["status"], event["status"]
    )
    return Text(f"☎  Call {label}", style="magenta")


def _say(event: Event, phone: str) -> Text:
    return Text.assemble(("🗣  ", "cyan"), (event["text"], "bold cyan"))


def _play(event: Event, phone: str) -> Text:
    return Text(f"♪  playing {event['url']}", style="blue")


def _pause(event: Event, phone: str) -> Text:
    return Text(f"…  (pause, {event['seconds']} s)", style="dim")


def _gather(event: Event, phone: str) -> Text:
    how = []
    if event.get("num_digits"):
        count = event["num_digits"]
        how.append(f"{count} key" + ("s" if count != 1 else ""))
    elif event.get("finish_on_key"):
        how.append(f"end with {event['finish_on_key']}")
    how.append(f"{event.get('wait', event['timeout']):g} s")
    return Text(f"⌨  Press keys, then Enter ({', '.join(how)})", style="bold yellow")


def _record(event: Event, phone: str) -> Text:
    keys = event.get("finish_on_key") or ""
    stop = "#" if "#" in keys else (keys[:1] or "Enter")
    return Text(
        f"●  Recording: type your message (each line counts as speech), then {stop} to stop",
        style="bold red",
    )


def _dial(event: Event, phone: str) -> Text:
    status = event.get("status")
    outcome = f" ({status})" if status and status != "answered" else ""
    return Text(f"☎  Dialling {event['kind']} {event['target']}{outcome}", style="magenta")


def _connected(event: Event, phone: str) -> Text:
    return Text(f"☎  Connected to call {event['party'][:10]}…", style="magenta")


def _call_sms(event: Event, phone: str) -> Text:
    return Text(f"   the call sent a text to {event['to']}", style="dim")


def _call_ended(event: Event, phone: str) -> Text:
    return Text(f"☎  Call ended: {event['status']} ({event['reason']})", style="bold magenta")


def _error(event: Event, phone: str) -> Text:
    style = "bold red" if event.get("fatal", True) else "yellow"
    return Text(f"⚠  {event['text']}", style=style)


_BODY = {
    "message": _message,
    "message_status": _message_status,
    "ringing": _ringing,
    "call_status": _call_status,
    "say": _say,
    "play": _play,
    "pause": _pause,
    "gather": _gather,
    "record": _record,
    "dial": _dial,
    "connected": _connected,
    "call_sms": _call_sms,
    "call_ended": _call_ended,
    "error": _error,
}
