"""The sandbox's in-memory, thread-safe Twilio account: numbers, messages, calls, and events.

The REST API (`rest.py`) and the carrier (which drives webhooks and the terminal phone) both work
on one `SandboxState`. Every change is announced to subscribers as an event, after the change is
made and outside the lock:

    state = SandboxState()
    unsubscribe = state.subscribe(lambda event: print(event))
    msg = state.create_message(to="+15555550100", from_=state.phone_number, body="hi")
    # -> MessageCreated(message=Message(sid='SM...', status='queued', ...))
    state.set_message_status(msg.sid, "sent")      # -> MessageUpdated(..., changed={'status', ...})

Listeners run synchronously in the thread that made the change (often a REST request thread), so
they must be quick: hand slow work (webhooks, delivery) to a thread of your own. A listener that
raises is logged and does not affect the change or the other listeners. Records handed out (in
events or by getters) are copies: they never change under you; fetch again for the latest.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import datetime
from typing import Any, TypeVar

from dialtone.sandbox.applications import ApplicationBook
from dialtone.sandbox.events import (
    CallCreated,
    CallUpdated,
    Event,
    MessageCreated,
    MessageUpdated,
    NumberUpdated,
)
from dialtone.sandbox.optouts import OptOutList
from dialtone.sandbox.resources import (
    CALL_ENDED,
    CALL_STATUSES,
    MESSAGE_STATUSES,
    Call,
    Message,
    PhoneNumber,
    formatted,
    new_sid,
    utcnow,
)

log = logging.getLogger("dialtone.sandbox")

# The sandbox account. Fixed, so that `make dev`, the terminal phone and tests agree without
# configuration; they are not secrets (the sandbox only ever listens on loopback).
ACCOUNT_SID = "ACd1a170e5000000000000000000000000"
AUTH_TOKEN = "d1a170e5a4db0c5e" + "0" * 16
# Twilio's "valid From" magic number for test credentials: the sandbox's own phone number.
PHONE_NUMBER = "+15005550006"
# The terminal phone's number: a fictional North American 555-01xx number.
PHONE_USER_NUMBER = "+15555550100"

# Webhook fields of a number that `update_number` accepts.
NUMBER_FIELDS = frozenset(
    {"friendly_name", "voice_url", "voice_method", "voice_fallback_url", "voice_fallback_method"}
    | {"voice_caller_id_lookup", "status_callback", "status_callback_method", "sms_url"}
    | {"sms_method", "sms_fallback_url", "sms_fallback_method"}
)


Listener = Callable[[Event], None]
R = TypeVar("R", PhoneNumber, Message, Call)


class UnknownSid(KeyError):
    """No number, message or call has this SID."""


class SandboxState:
    """One sandbox Twilio account. All methods are thread-safe."""

    def __init__(
        self,
        *,
        account_sid: str = ACCOUNT_SID,
        auth_token: str = AUTH_TOKEN,
        phone_number: str | None = PHONE_NUMBER,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.clock = clock
        self._lock = threading.RLock()
        self._listeners: list[Listener] = []
        self._numbers: dict[str, PhoneNumber] = {}
        self._messages: dict[str, Message] = {}
        self._calls: dict[str, Call] = {}
        self.optouts = OptOutList()  # Twilio's STOP filtering on long codes
        self.applications = ApplicationBook(account_sid, clock)
        if phone_number:
            self.add_number(phone_number)

    # --- events -----------------------------------------------------------------------------

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener(event)` after every change; returns a function that unsubscribes."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def _emit(self, event: Event) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(event)
            except Exception:
                log.exception("sandbox listener %r failed on %s", listener, type(event).__name__)

    # --- phone numbers ----------------------------------------------------------------------

    @property
    def phone_number(self) -> str | None:
        """The first provisioned number (the sandbox number), if any."""
        with self._lock:
            first = next(iter(self._numbers.values()), None)
            return first.phone_number if first else None

    def add_number(self, phone_number: str, **settings: Any) -> PhoneNumber:
        """Provision a number on the account, with optional webhook settings (see NUMBER_FIELDS)."""
        _check_fields(settings, NUMBER_FIELDS)
        now = self.clock()
        number = PhoneNumber(
            sid=new_sid("PN"),
            account_sid=self.account_sid,
            phone_number=phone_number,
            friendly_name=formatted(phone_number),
            date_created=now,
            date_updated=now,
            **settings,
        )
        with self._lock:
            self._numbers[number.sid] = number
            return replace(number)

    def numbers(self) -> list[PhoneNumber]:
        """All numbers, in the order they were provisioned."""
        with self._lock:
            return [replace(n) for n in self._numbers.values()]

    def number(self, sid: str) -> PhoneNumber:
        """The number with this SID; UnknownSid otherwise."""
        return self._get(self._numbers, sid)

    def number_by_phone(self, phone_number: str) -> PhoneNumber | None:
        """The number with this E.164 phone number, or None."""
        with self._lock:
            for number in self._numbers.values():
                if number.phone_number == phone_number:
                    return replace(number)
        return None

    def update_number(self, sid: str, **settings: Any) -> PhoneNumber:
        """Change a number's settings (NUMBER_FIELDS); emits NumberUpdated."""
        _check_fields(settings, NUMBER_FIELDS)
        number, changed = self._update(self._numbers, sid, settings)
        self._emit(NumberUpdated(number, changed))
        return number

    # --- messages ---------------------------------------------------------------------------

    def create_message(
        self,
        *,
        to: str,
        from_: str,
        body: str = "",
        media_urls: Iterable[str] = (),
        direction: str = "outbound-api",
        status: str = "queued",
        status_callback: str | None = None,
        messaging_service_sid: str | None = None,
    ) -> Message:
        """Record a new message (outbound by default: queued); emits MessageCreated."""
        _check_status(status, MESSAGE_STATUSES)
        media = tuple(media_urls)
        now = self.clock()
        message = Message(
            sid=new_sid("MM" if media else "SM"),
            account_sid=self.account_sid,
            to=to,
            from_=from_,
            body=body,
            status=status,
            direction=direction,
            date_created=now,
            date_updated=now,
            date_sent=now if status in ("sent", "delivered", "received") else None,
            media_urls=media,
            messaging_service_sid=messaging_service_sid,
            status_callback=status_callback,
        )
        with self._lock:
            self._messages[message.sid] = message
        message = replace(message)
        self._emit(MessageCreated(message))
        return message

    def record_inbound_message(
        self, *, from_: str, to: str, body: str = "", media_urls: Iterable[str] = ()
    ) -> Message:
        """A message from the phone to a number: direction inbound, status received."""
        return self.create_message(
            to=to,
            from_=from_,
            body=body,
            media_urls=media_urls,
            direction="inbound",
            status="received",
        )

    def set_message_status(
        self,
        sid: str,
        status: str,
        *,
        error_code: int | None = None,
        error_message: str | None = None,
    ) -> Message:
        """Move a message to `status` (sets date_sent on sent/delivered); emits MessageUpdated."""
        _check_status(status, MESSAGE_STATUSES)
        changes: dict[str, Any] = {"status": status}
        if error_code is not None:
            changes.update(error_code=error_code, error_message=error_message)
        with self._lock:
            current = self._get(self._messages, sid)
            if current.date_sent is None and status in ("sent", "delivered"):
                changes["date_sent"] = self.clock()
            message, changed = self._update(self._messages, sid, changes)
        self._emit(MessageUpdated(message, changed))
        return message

    def queue_service_message(self, sid: str) -> Message:
        """A Messaging Service message leaves `accepted`: a sender from the pool (the sandbox
        number, on the To's channel) is assigned, and it moves to queued; emits MessageUpdated."""
        with self._lock:
            current = self._get(self._messages, sid)
            channel = "whatsapp:" if current.to.startswith("whatsapp:") else ""
            sender = current.from_ or channel + (self.phone_number or "")
            message, changed = self._update(
                self._messages, sid, {"status": "queued", "from_": sender}
            )
        self._emit(MessageUpdated(message, changed))
        return message

    def messages(self) -> list[Message]:
        """All messages, newest first (as Twilio lists them)."""
        with self._lock:
            return [replace(m) for m in reversed(self._messages.values())]

    def message(self, sid: str) -> Message:
        """The message with this SID; UnknownSid otherwise."""
        return self._get(self._messages, sid)

    # --- opt-outs (kept in `optouts`; these are its short names) ------------------------------

    def opt_out(self, number: str, sender: str) -> None:
        """`sender` texted STOP to our `number` (see OptOutList.opt_out)."""
        self.optouts.opt_out(number, sender)

    def opt_in(self, number: str, sender: str) -> None:
        """`sender` texted START to our `number` (see OptOutList.opt_in)."""
        self.optouts.opt_in(number, sender)

    def is_opted_out(self, number: str, recipient: str) -> bool:
        """True if `recipient` has opted out of texts from our `number`."""
        return self.optouts.is_opted_out(number, recipient)

    # --- calls ------------------------------------------------------------------------------

    def create_call(
        self,
        *,
        to: str,
        from_: str,
        url: str | None = None,
        twiml: str | None = None,
        method: str = "POST",
        direction: str = "outbound-api",
        status: str = "queued",
        **options: Any,
    ) -> Call:
        """Record a new call (outbound by default: queued); emits CallCreated.

        `options` are other Call fields: fallback_url, fallback_method, status_callback,
        status_callback_method, status_callback_events, parent_call_sid, extra.
        """
        _check_status(status, CALL_STATUSES)
        _check_fields(options, _CALL_OPTIONS)
        number = self.number_by_phone(to if direction == "inbound" else from_)
        now = self.clock()
        call = Call(
            sid=new_sid("CA"),
            account_sid=self.account_sid,
            to=to,
            from_=from_,
            status=status,
            direction=direction,
            date_created=now,
            date_updated=now,
            url=url,
            method=method,
            twiml=twiml,
            phone_number_sid=number.sid if number else None,
            **options,
        )
        with self._lock:
            self._calls[call.sid] = call
        call = replace(call)
        self._emit(CallCreated(call))
        return call

    def record_inbound_call(self, *, from_: str, to: str) -> Call:
        """The phone calls a number: direction inbound, status ringing."""
        return self.create_call(to=to, from_=from_, direction="inbound", status="ringing")

    def set_call_status(self, sid: str, status: str, *, answered_by: str | None = None) -> Call:
        """Move a call to `status`, keeping start/end times; emits CallUpdated.

        An ended call stays as it is (returned unchanged, no event): Twilio never reopens one.
        """
        _check_status(status, CALL_STATUSES)
        with self._lock:
            current = self._get(self._calls, sid)
            if current.ended:
                return current
            now = self.clock()
            changes: dict[str, Any] = {"status": status}
            if status == "in-progress" and current.start_time is None:
                changes["start_time"] = now
            if status in CALL_ENDED:
                changes["end_time"] = now
            if answered_by is not None:
                changes["answered_by"] = answered_by
            call, changed = self._update(self._calls, sid, changes)
        self._emit(CallUpdated(call, changed))
        return call

    def redirect_call(
        self, sid: str, *, url: str | None = None, twiml: str | None = None, method: str = "POST"
    ) -> Call:
        """Point a live call at new TwiML (a URL or inline); emits CallUpdated with 'url'/'twiml'."""
        call, changed = self._update(
            self._calls, sid, {"url": url, "twiml": twiml, "method": method}
        )
        # A redirect to the same URL is still a redirect: the carrier must fetch it again.
        changed = changed | {"url" if url is not None else "twiml"}
        self._emit(CallUpdated(call, changed))
        return call

    def calls(self) -> list[Call]:
        """All calls, newest first (as Twilio lists them)."""
        with self._lock:
            return [replace(c) for c in reversed(self._calls.values())]

    def call(self, sid: str) -> Call:
        """The call with this SID; UnknownSid otherwise."""
        return self._get(self._calls, sid)

    # --- helpers ----------------------------------------------------------------------------

    def _get(self, table: dict[str, R], sid: str) -> R:
        with self._lock:
            try:
                return replace(table[sid])
            except KeyError:
                raise UnknownSid(sid) from None

    def _update(
        self, table: dict[str, R], sid: str, changes: dict[str, Any]
    ) -> tuple[R, frozenset[str]]:
        """Apply `changes` to a record; return a copy and the names of fields that changed."""
        with self._lock:
            if sid not in table:
                raise UnknownSid(sid)
            current = table[sid]
            changed = frozenset(k for k, v in changes.items() if getattr(current, k) != v)
            updated = replace(current, **changes, date_updated=self.clock())
            table[sid] = updated
            return replace(updated), changed


# Call fields `create_call` takes as keyword options.
_CALL_OPTIONS = frozenset(
    {"fallback_url", "fallback_method", "status_callback", "status_callback_method"}
    | {"status_callback_events", "parent_call_sid", "extra"}
)


def _check_fields(given: dict[str, Any], allowed: frozenset[str]) -> None:
    unknown = set(given) - allowed
    if unknown:
        raise TypeError(f"unknown field(s): {', '.join(sorted(unknown))}")


def _check_status(status: str, allowed: frozenset[str]) -> None:
    if status not in allowed:
        raise ValueError(f"{status!r} is not one of {', '.join(sorted(allowed))}")
