"""What a `SandboxState` announces to its subscribers: one event per change, made after it."""

from __future__ import annotations

from dataclasses import dataclass

from dialtone.sandbox.resources import Call, Message, PhoneNumber


@dataclass(frozen=True)
class NumberUpdated:
    """A number's settings changed (`changed` names the fields whose value changed)."""

    number: PhoneNumber
    changed: frozenset[str]


@dataclass(frozen=True)
class MessageCreated:
    """A message was created: outbound (status queued) or inbound (status received)."""

    message: Message


@dataclass(frozen=True)
class MessageUpdated:
    """A message's status (and maybe error) changed."""

    message: Message
    changed: frozenset[str]


@dataclass(frozen=True)
class CallCreated:
    """A call was created: outbound-api (status queued) or inbound (status ringing)."""

    call: Call


@dataclass(frozen=True)
class CallUpdated:
    """A call changed: `changed` holds 'status' for a status change, 'url'/'twiml' for a redirect."""

    call: Call
    changed: frozenset[str]


Event = NumberUpdated | MessageCreated | MessageUpdated | CallCreated | CallUpdated
