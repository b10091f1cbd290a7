"""Twilio's documented limits, and the text helpers that measure against them, in one place."""

from __future__ import annotations

MAX_BODY_CHARS = 1600  # one message body, counted in UTF-16 code units
MAX_MEDIA = 10  # media URLs per MMS
MAX_TWIML_CHARS = 4000  # the Twiml parameter of a call

# Characters XML 1.0 cannot carry (and lone surrogates, which cannot be encoded at all).
_XML_ILLEGAL = dict.fromkeys(
    [*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0xFFFE, 0xFFFF, *range(0xD800, 0xE000)]
)


def twilio_length(text: str) -> int:
    """The length Twilio's character limits apply to (UTF-16 code units: an emoji is 2)."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def clean(text: str) -> str:
    """`text` without the characters XML cannot carry, safe to put in TwiML."""
    return text.translate(_XML_ILLEGAL)
