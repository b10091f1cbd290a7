"""Phone-number and address checks shared by settings, the outbound API and the sandbox."""

from __future__ import annotations

import re

# E.164: a plus, a non-zero country digit, at most 15 digits in all.
E164_RE = re.compile(r"\+[1-9][0-9]{1,14}")
WHATSAPP_PREFIX = "whatsapp:"


def is_e164(value: str) -> bool:
    """True for an E.164 number such as +15551234567."""
    return E164_RE.fullmatch(value) is not None


def is_destination(value: str) -> bool:
    """True for something Twilio can message or call: E.164, or whatsapp: followed by E.164."""
    if value.startswith(WHATSAPP_PREFIX):
        return is_e164(value[len(WHATSAPP_PREFIX) :])
    return is_e164(value)
