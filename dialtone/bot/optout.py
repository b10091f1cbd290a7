"""Carrier keywords: STOP and START and HELP, recognised the way Twilio recognises them.

Twilio acts on a keyword only when it is the whole message: one word, case-insensitive, with
surrounding whitespace ignored. "stop" and " STOP\\n" opt out; "STOP PLEASE", "please stop" and
"STOP." do not. (See Twilio's "Twilio support for opt-out keywords (SMS STOP filtering)" and its
Advanced Opt-Out guide.) The words are Twilio's facts, in dialtone.facts; `answer()` is pure, and
the SMS route records what it says with the text (dialtone.bot.sms.record_text).
"""

from __future__ import annotations

from dataclasses import dataclass

from dialtone.facts import (
    DEFAULT_HELP_REPLY,
    DEFAULT_OPT_IN_REPLY,
    DEFAULT_OPT_OUT_REPLY,
    Keyword,
    carrier_keyword,
)


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
    keyword = carrier_keyword(body)
    if keyword is None:
        return None
    reply = {
        Keyword.OPT_OUT: opt_out_reply,
        Keyword.OPT_IN: opt_in_reply,
        Keyword.HELP: help_reply,
    }[keyword]
    return KeywordAnswer(keyword=keyword, word=normalise(body), reply=reply)
