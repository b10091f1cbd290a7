"""Webhook forms as Twilio sends them, for tests that post or record them."""

from __future__ import annotations

from tests.conftest import CALLER, PHONE_NUMBER

MESSAGE_SID = "SM" + "a" * 32


def numbered_sms(n: int, body: str = "hours", sender: str = CALLER) -> dict[str, str]:
    """`inbound_sms` with a MessageSid of its own for each `n`."""
    return inbound_sms(body, sid=f"SM{n:032x}", sender=sender)


def inbound_sms(
    body: str = "hello", *, sid: str = MESSAGE_SID, sender: str = CALLER, **extra: str
) -> dict[str, str]:
    """An inbound SMS webhook form; `extra` adds or replaces fields (MediaUrl0, NumMedia...)."""
    return {
        "MessageSid": sid,
        "SmsMessageSid": sid,
        "AccountSid": "AC" + "0" * 32,
        "From": sender,
        "To": PHONE_NUMBER,
        "Body": body,
        "NumMedia": "0",
        "NumSegments": "1",
        "SmsStatus": "received",
        **extra,
    }
