"""`make phone`: a phone in the terminal for the local sandbox.

Text the sandbox number by typing a line, call it with /call, answer its menus with the keypad
(type digits and Enter), answer calls made to you (/answer), and watch replies, spoken text,
media, status changes and errors as they happen. The sandbox must be running (`make dev` without
Twilio credentials, or `make sandbox`).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console
from rich.text import Text

from dialtone import cli
from dialtone.errors import DialtoneError
from dialtone.sandbox.phone_client import PhoneApiError, PhoneClient, SandboxUnavailable
from dialtone.sandbox.phone_view import help_panel, render
from dialtone.settings import Settings


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="make phone", description=__doc__)
    parser.add_argument(
        "--sandbox",
        metavar="URL",
        help="the sandbox's URL (default: SANDBOX_URL, or http://127.0.0.1:SANDBOX_PORT)",
    )
    return parser.parse_args(argv)


def sandbox_url(settings: Settings, given: str | None) -> str:
    """Where the sandbox is: --sandbox, then SANDBOX_URL, then 127.0.0.1:SANDBOX_PORT."""
    return given or settings.sandbox_url or f"http://127.0.0.1:{settings.sandbox_port}"


class Phone:
    """The terminal phone: a thread prints events, the main thread reads commands."""

    def __init__(self, client: PhoneClient, console: Console) -> None:
        self.client = client
        self.console = console
        info = client.info()
        self.number: str = info["phone_number"]
        self.sandbox_number: str = info["sandbox_number"]
        self.client.last_event = info["last_event"]  # only what happens from now on
        self.on_call = info.get("current_call") is not None
        self.ringing = False
        self.stopped = threading.Event()

    def watch(self) -> None:
        """Print events as they arrive (runs in a daemon thread)."""
        while not self.stopped.is_set():
            try:
                events = self.client.events(wait=10)
            except DialtoneError as exc:
                self.say(f"Lost the sandbox: {exc}", "bold red")
                self.stopped.set()
                return
            for event in events:
                self.track(event)
                line = render(event, self.number)
                if line is not None:
                    self.console.print(line, highlight=False)

    def track(self, event: dict[str, object]) -> None:
        """Follow whether the phone is ringing or on a call, so plain lines go to the right place."""
        kind = event["type"]
        if kind == "ringing":
            self.ringing = True
        elif kind == "call_status" and event.get("status") == "in-progress":
            self.ringing = False
            self.on_call = self.number in (event.get("from_"), event.get("to"))
        elif kind == "call_ended":
            self.ringing = self.on_call = False

    def say(self, text: str, style: str = "dim") -> None:
        """A line from the phone itself."""
        self.console.print(Text(text, style=style), highlight=False)

    def handle(self, line: str) -> bool:
        """Carry out one line of input; False to quit."""
        line = line.strip()
        if not line:
            return True
        command, _, rest = line.partition(" ")
        rest = rest.strip()
        try:
            if command in ("/quit", "/exit", "/q"):
                return False
            if command in ("/help", "/?"):
                self.console.print(
                    help_panel(self.number, self.sandbox_number, self.client.base_url)
                )
            elif command == "/call":
                self.say(f"Calling {self.sandbox_number}…", "magenta")
                self.client.call()
                self.on_call = True
            elif command in ("/hangup", "/h"):
                self.client.hangup()
            elif command in ("/answer", "/a"):
                self.client.answer()
                self.ringing, self.on_call = False, True
            elif command in ("/decline", "/d"):
                self.client.decline()
                self.ringing = False
            elif command == "/text":
                self.text(rest)
            elif command == "/mms":
                url, _, words = rest.partition(" ")
                self.text(words.strip(), [url] if url else [])
            elif command.startswith("/"):
                self.say(f"Unknown command {command}: /help lists them.", "yellow")
            elif self.on_call:
                self.client.digits(line)
            else:
                self.text(line)
        except PhoneApiError as exc:
            self.say(str(exc), "yellow")
        return True

    def text(self, body: str, media: list[str] | None = None) -> None:
        """Text the sandbox number and echo it."""
        if not body and not media:
            self.say("Nothing to send: type some words (or /mms URL).", "yellow")
            return
        self.client.send_sms(body, media or [])
        self.say(f"you → {self.sandbox_number}: {body or ''}{' 📎' if media else ''}", "bold")


def main(argv: list[str] | None = None) -> int:
    """Run the phone until /quit or end of input."""
    args = parse_args(argv)
    settings = cli.load_settings()
    url = sandbox_url(settings, args.sandbox)
    client = PhoneClient(url)
    try:
        phone = Phone(client, Console())
    except SandboxUnavailable:
        raise DialtoneError(
            f"The sandbox is not running at {url}, so there is nothing to text or call. Start "
            "it in another terminal with `make dev` (without Twilio credentials it runs the app "
            "and the sandbox) or `make sandbox`, then run `make phone` again. If it runs on "
            "another port or host, pass --sandbox URL or set SANDBOX_URL / SANDBOX_PORT."
        ) from None
    phone.console.print(help_panel(phone.number, phone.sandbox_number, url))
    threading.Thread(target=phone.watch, name="phone-events", daemon=True).start()
    while not phone.stopped.is_set():
        line = sys.stdin.readline()
        if not line or not phone.handle(line):
            break
    phone.stopped.set()
    if phone.on_call:
        with contextlib.suppress(DialtoneError):  # ended already, or the sandbox has gone
            client.hangup()
    phone.say("Bye.")
    return 0


if __name__ == "__main__":
    cli.run(main)
