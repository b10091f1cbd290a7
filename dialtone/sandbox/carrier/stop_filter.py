"""Twilio's default opt-out handling on long codes ("SMS STOP filtering"), for the carrier.

When someone texts STOP (or STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT, REVOKE, OPTOUT: the whole
message, one word, any case) to a Twilio long code, Twilio records the opt-out for that pair of
numbers, answers with its own confirmation, and still passes the message to the SmsUrl. Until
the person texts START (or YES, UNSTOP), which Twilio confirms too, every message from that
number to them is refused with error 21610: a `Messages.json` create with HTTP 400, a TwiML
`<Message>` reply as a failed message. HELP and INFO get Twilio's default help text (and still
reach the app, so the sender gets both answers, as in production), except from a sender who has
opted out, who gets no automatic reply. Keywords are recognised by `dialtone.facts`, which the
app reads too, so both sides agree on what a keyword is.
"""

from __future__ import annotations

from dialtone import facts
from dialtone.facts import UNSUBSCRIBED_RECIPIENT as UNSUBSCRIBED
from dialtone.sandbox.resources import Message
from dialtone.sandbox.state import SandboxState

UNSUBSCRIBED_TEXT = "Attempt to send to unsubscribed recipient"  # Twilio's title for 21610


def handle_keyword(state: SandboxState, message: Message) -> str | None:
    """Record an inbound STOP or START in `state`; Twilio's automatic reply, or None."""
    keyword = facts.carrier_keyword(message.body)
    if keyword is facts.Keyword.HELP:
        opted_out = state.optouts.is_opted_out(message.to, message.from_)
        return None if opted_out else facts.DEFAULT_HELP_REPLY
    if keyword is facts.Keyword.OPT_OUT:
        state.optouts.opt_out(message.to, message.from_)
        return facts.DEFAULT_OPT_OUT_REPLY
    if keyword is facts.Keyword.OPT_IN:
        state.optouts.opt_in(message.to, message.from_)
        return facts.DEFAULT_OPT_IN_REPLY
    return None


def refusal(to: str, from_: str) -> str:
    """What the phone is told when a reply to it is refused because it opted out."""
    return (
        f"a reply to {to} was not sent: it texted STOP to {from_}, so Twilio refuses texts "
        f"to it with {UNSUBSCRIBED} until it texts START"
    )
