"""Carrier keywords: STOP and START and HELP, recognised the way Twilio recognises them.

Twilio acts on a keyword only when it is the whole message: one word, case-insensitive, with
surrounding whitespace ignored. "stop" and " STOP\\n" opt out; "STOP PLEASE", "please stop" and
"STOP." do not. (See Twilio's "Twilio support for opt-out keywords (SMS STOP filtering)" and its
Advanced Opt-Out guide.) These functions are pure: the route records the result with
`Store.record_inbound_message(form, key, opted_out=answer.opted_out, keyword=answer.word)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Keyword(StrEnum):
    """The three kinds of carrier keyword."""

    OPT_OUT = "opt-out"
    OPT_IN = "opt-in"
    HELP = "help"

    @property
    def opted_out(self) -> bool | None:
        """The opt-out state this keyword sets: True, False, or None (HELP changes nothing)."""
        return {Keyword.OPT_OUT: True, Keyword.OPT_IN: False}.get(self)


# Twilio's default English keywords for long codes. REVOKE and OPTOUT are in Twilio's current
# list next to the six classic ones.
OPT_OUT_WORDS = frozenset(
    {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"}
)
OPT_IN_WORDS = frozenset({"START", "YES", "UNSTOP"})
HELP_WORDS = frozenset({"HELP", "INFO"})

# Twilio's default replies, so a number behaves the same under Dialtone as without it.
DEFAULT_OPT_OUT_REPLY = (
    "You have successfully been unsubscribed. You will not receive any more messages from "
    "this number. Reply START to resubscribe."
)
DEFAULT_OPT_IN_REPLY = (
    "You have successfully been re-subscribed to messages from this number. Reply HELP for "
    "help. Reply STOP to unsubscribe. Msg&Data Rates May Apply."
)
DEFAULT_HELP_REPLY = "Reply STOP to unsubscribe. Msg&Data Rates May Apply."

_KINDS = dict.fromkeys(OPT_OUT_WORDS, Keyword.OPT_OUT)
_KINDS |= dict.fromkeys(OPT_IN_WORDS, Keyword.OPT_IN)
_KINDS |= dict.fromkeys(HELP_WORDS, Keyword.HELP)
_LONGEST = max(len(word) for word in _KINDS)


@dataclass(frozen=True)
class KeywordAnswer:
    """A message that was a carrier keyword: which one, and what to answer."""

    keyword: Keyword
    word: str  # the keyword as matched, upper case: "STOP", "UNSTOP", ...
    reply: str

    @property
    def opted_out(self) -> bool | None:
        """What to record for the sender: True (opted out), False (back in), None (no change)."""
        return self.keyword.opted_out


def normalise(body: str | None) -> str:
    """The body as keywords are compared: surrounding whitespace dropped, upper case."""
    return (body or "").strip().upper()


def classify(body: str | None) -> Keyword | None:
    """Which carrier keyword the whole message is, or None for an ordinary message."""
    word = (body or "").strip()
    # Cheap exit for ordinary messages. ASCII only: Twilio's keywords are plain ASCII words,
    # and Python upper-cases a few other letters to ASCII ones (U+017F, the long s, to "S").
    if not word or len(word) > _LONGEST or not word.isascii():
        return None
    return _KINDS.get(word.upper())


def answer(
    body: str | None,
    *,
    help_reply: str = DEFAULT_HELP_REPLY,
    opt_out_reply: str = DEFAULT_OPT_OUT_REPLY,
    opt_in_reply: str = DEFAULT_OPT_IN_REPLY,
) -> KeywordAnswer | None:
    """The keyword and reply for `body`, or None when it is not a carrier keyword.

    `help_reply` normally comes from the rules file; the other two default to Twilio's wording.
    """
    keyword = classify(body)
    if keyword is None:
        return None
    reply = {
        Keyword.OPT_OUT: opt_out_reply,
        Keyword.OPT_IN: opt_in_reply,
        Keyword.HELP: help_reply,
    }[keyword]
    return KeywordAnswer(keyword=keyword, word=normalise(body), reply=reply)
