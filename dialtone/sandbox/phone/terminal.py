"""The terminal phone behind `dialtone phone` (make phone), for the local sandbox.

Text the sandbox number by typing a line, call it with /call, answer its menus with the keypad
(type digits and Enter), answer calls made to you (/answer), and watch replies, spoken text,
media, status changes and errors as they happen. The command line is in dialtone.commands.phone.
"""

from __future__ import annotations

import contextlib
import queue
import sys
import threading

from rich.console import Console
from rich.text import Text

from dialtone.errors import DialtoneError
from dialtone.sandbox.phone.client import PhoneApiError, PhoneClient, SandboxUnavailable
from dialtone.sandbox.phone.fail_command import FailCommandError, run_fail_command
from dialtone.sandbox.phone.view import help_panel, render, sent, stamp
from dialtone.untrusted import printable


class Phone:
    """The terminal phone: a thread prints events, the main thread carries out typed lines.

    Whether the phone is on a call comes from the sandbox's events, guarded by a lock, so a
    call that ended before `/call` returned is never taken for a live one.
    """

    def __init__(self, client: PhoneClient, console: Console) -> None:
        self.client = client
        self.console = console
        info = client.info()
        self.number: str = info["phone_number"]
        self.sandbox_number: str = info["sandbox_number"]
        self.client.last_event = info["last_event"]  # only what happens from now on
        self._lock = threading.Lock()
        self._current: str | None = info.get("current_call")  # the call the phone is on
        self._ringing: str | None = None  # a call ringing the phone
        self._ended: set[str] = set()  # calls whose call_ended event has been seen
        self.stopped = threading.Event()
        self.lost: DialtoneError | None = None  # why the watcher stopped, if the sandbox went

    @property
    def on_call(self) -> bool:
        """True while the phone is on a call (typed lines are keys)."""
        with self._lock:
            return self._current is not None

    def watch(self) -> None:
        """Print events as they arrive (runs in a daemon thread) until stopped or lost."""
        while not self.stopped.is_set():
            try:
                events = self.client.events(wait=10)
            except DialtoneError as exc:
                if not self.stopped.is_set():
                    self.lost = exc
                self.stopped.set()
                return
            for event in events:
                self.track(event)
                line = render(event, self.number)
                if line is not None:
                    self.console.print(line, highlight=False)

    def track(self, event: dict[str, object]) -> None:
        """Follow whether the phone is ringing or on a call, so plain lines go to the right place."""
        kind, sid = event["type"], event.get("call_sid")
        if not isinstance(sid, str):
            return
        with self._lock:
            if kind == "ringing":
                self._ringing = sid
            elif kind == "call_status" and event.get("status") == "in-progress":
                if self.number in (event.get("from_"), event.get("to")) and sid not in self._ended:
                    self._current = sid
                if self._ringing == sid:
                    self._ringing = None
            elif kind == "call_ended":
                self._ended.add(sid)
                if self._current == sid:
                    self._current = None
                if self._ringing == sid:
                    self._ringing = None

    def _joined(self, sid: str) -> None:
        """The phone is on call `sid`, unless its end has been seen already."""
        with self._lock:
            if sid not in self._ended:
                self._current = sid
            if self._ringing == sid:
                self._ringing = None

    def say(self, text: str, style: str = "dim", *, stamped: bool = False) -> None:
        """A line from the phone itself (`stamped`: with the time, as events are)."""
        line = Text(printable(text, None), style=style)
        self.console.print(stamp() + line if stamped else line, highlight=False)

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
                # Said first (the sandbox's "ringing" event may print before call() returns),
                # unless the sandbox is sure to refuse: the phone is on a call already.
                if not self.on_call:
                    self.say(f"Calling {self.sandbox_number}…", "magenta", stamped=True)
                try:
                    sid = self.client.call()
                except PhoneApiError as exc:
                    self.say(f"Not called: {exc}", "yellow")
                    return True
                self._joined(sid)
            elif command in ("/hangup", "/h"):
                self.client.hangup()
            elif command in ("/answer", "/a"):
                with self._lock:
                    ringing = self._ringing
                self.client.answer(ringing or "current")
                if ringing:
                    self._joined(ringing)
            elif command in ("/decline", "/d"):
                self.client.decline()
                with self._lock:
                    self._ringing = None
            elif command == "/text":
                self.text(rest)
            elif command == "/mms":
                url, _, words = rest.partition(" ")
                self.text(words.strip(), [url] if url else [])
            elif command == "/fail":
                self.say(run_fail_command(self.client, rest), "yellow")
            elif command.startswith("/"):
                self.say(f"Unknown command {command}: /help lists them.", "yellow")
            elif self.on_call:
                self.client.digits(line)
            else:
                self.text(line)
        except (PhoneApiError, FailCommandError) as exc:
            self.say(str(exc), "yellow")
        return True

    def text(self, body: str, media: list[str] | None = None) -> None:
        """Text the sandbox number and echo it."""
        if not body and not media:
            self.say("Nothing to send: type some words (or /mms URL).", "yellow")
            return
        # Echoed first: the events thread may print a reply before text() returns.
        self.console.print(sent(self.sandbox_number, body or "", bool(media)), highlight=False)
        try:
            answer = self.client.text(body, media or [])
        except PhoneApiError as exc:
            self.say(f"Not sent: {exc}", "yellow")
            return
        if answer.get("notice"):
            self.say(str(answer["notice"]), "yellow", stamped=True)

    def hang_up_quietly(self) -> None:
        """End a live call on the way out (it may have ended already, or the sandbox gone)."""
        if self.on_call:
            with contextlib.suppress(DialtoneError):
                self.client.hangup()


def read_lines(lines: queue.Queue[str | None]) -> None:
    """Read stdin into `lines` (None at end of input); a daemon thread, so the main thread can
    leave while a read is still waiting (the sandbox went away, Ctrl-C)."""
    while line := sys.stdin.readline():
        lines.put(line)
    lines.put(None)


def connect(url: str) -> Phone:
    """The phone, connected to the sandbox at `url`; a DialtoneError paragraph if it is not there."""
    client = PhoneClient(url)
    try:
        return Phone(client, Console())
    except SandboxUnavailable:
        raise DialtoneError(
            f"The sandbox is not running at {url}, so there is nothing to text or call. Start "
            "it in another terminal with `make dev` (without Twilio credentials it runs the app "
            "and the sandbox) or `make sandbox`, then run `make phone` again. If it runs on "
            "another port or host, pass --sandbox URL or set SANDBOX_URL / SANDBOX_PORT."
        ) from None
    except PhoneApiError as exc:
        raise DialtoneError(
            f"Something answers at {url}, but it is not the sandbox ({exc}): is that the app's "
            "port? The sandbox listens on SANDBOX_PORT (5055 by default); `make dev` without "
            "Twilio credentials or `make sandbox` prints its URL. Pass that with --sandbox URL "
            "or set SANDBOX_URL, then run `make phone` again."
        ) from None


def converse(phone: Phone) -> None:
    """Print events and carry out typed lines until /quit, end of input, or the sandbox goes."""
    threading.Thread(target=phone.watch, name="phone-events", daemon=True).start()
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=read_lines, args=(lines,), name="phone-input", daemon=True).start()
    while not phone.stopped.is_set():
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            continue
        if line is None or phone.stopped.is_set() or not phone.handle(line):
            return


def run_phone(url: str) -> int:
    """Run the phone until /quit, end of input or Ctrl-C (0); DialtoneError if the sandbox goes."""
    try:
        phone = connect(url)
    except KeyboardInterrupt:
        return 0
    phone.console.print(help_panel(phone.number, phone.sandbox_number, url))
    try:
        converse(phone)
    except KeyboardInterrupt:  # Ctrl-C: leave as /quit does (exit 0, so make adds no noise)
        phone.console.print()
    phone.stopped.set()
    if phone.lost is not None:
        raise DialtoneError(
            f"Lost the sandbox at {url}: it stopped answering, so the phone has stopped too. "
            "Start it again (`make dev` without Twilio credentials, or `make sandbox`), then "
            "run `make phone` again."
        )
    phone.hang_up_quietly()
    phone.say("Bye.")
    return 0
