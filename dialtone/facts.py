"""Twilio's facts in one place: carrier keywords, size limits, the error codes Dialtone uses.

A leaf module: it imports nothing from dialtone, so the app (rules, opt-outs, texting) and the
sandbox (its STOP filter and REST API) read the same words and numbers and cannot disagree.
"""

from __future__ import annotations

from enum import StrEnum

# Size limits.
MAX_BODY_CHARS = 1600  # one message body, counted in UTF-16 code units (error 21617 beyond)
MAX_MEDIA = 10  # media URLs per MMS
MAX_TWIML_CHARS = 4000  # the Twiml parameter of a call

# Error codes (https://www.twilio.com/docs/errors/<code>) that both sides need.
AUTHENTICATION_FAILED = 20003  # wrong Account SID / Auth Token ("Permission Denied")
UNSUBSCRIBED_RECIPIENT = 21610  # the recipient texted STOP to this number
BODY_TOO_LONG = 21617  # the body is over MAX_BODY_CHARS

# Carrier keywords: Twilio's default English keywords for long codes ("SMS STOP filtering" and
# the Advanced Opt-Out guide). REVOKE and OPTOUT are in Twilio's current list next to the six
# classic opt-out words.
OPT_OUT_KEYWORDS = frozenset(
    {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"}
)
OPT_IN_KEYWORDS = frozenset({"START", "YES", "UNSTOP"})
HELP_KEYWORDS = frozenset({"HELP", "INFO"})
CARRIER_KEYWORDS = OPT_OUT_KEYWORDS | OPT_IN_KEYWORDS | HELP_KEYWORDS

# Twilio's default replies to them, so a number behaves the same under Dialtone as without it.
DEFAULT_OPT_OUT_REPLY = (
    "You have successfully been unsubscribed. You will not receive any more messages from "
    "this number. Reply START to resubscribe."
)
DEFAULT_OPT_IN_REPLY = (
    "You have successfully been re-subscribed to messages from this number. Reply HELP for "
    "help. Reply STOP to unsubscribe. Msg&Data Rates May Apply."
)
DEFAULT_HELP_REPLY = "Reply STOP to unsubscribe. Msg&Data Rates May Apply."


class Keyword(StrEnum):
    """The three kinds of carrier keyword."""

    OPT_OUT = "opt-out"
    OPT_IN = "opt-in"
    HELP = "help"

    @property
    def opted_out(self) -> bool | None:
        """The opt-out state this keyword sets: True, False, or None (HELP changes nothing)."""
        return {Keyword.OPT_OUT: True, Keyword.OPT_IN: False}.get(self)


_KINDS = dict.fromkeys(OPT_OUT_KEYWORDS, Keyword.OPT_OUT)
_KINDS |= dict.fromkeys(OPT_IN_KEYWORDS, Keyword.OPT_IN)
_KINDS |= dict.fromkeys(HELP_KEYWORDS, Keyword.HELP)
_LONGEST = max(len(word) for word in _KINDS)


def carrier_keyword(body: str | None) -> Keyword | None:
    """Which carrier keyword the whole message is, or None for an ordinary message.

    Twilio acts on a keyword only when it is the whole message: one word, any case, surrounding
    whitespace ignored. "stop" and " STOP\\n" count; "STOP PLEASE" and "STOP." do not.
    """
    word = (body or "").strip()
    # Cheap exit for ordinary messages. ASCII only: Twilio's keywords are plain ASCII words,
    # and Python upper-cases a few other letters to ASCII ones (U+017F, the long s, to "S").
    if not word or len(word) > _LONGEST or not word.isascii():
        return None
    return _KINDS.get(word.upper())


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
