"""The answer to a text (or MMS): carrier keywords first, then the rules (routes/sms.py).

STOP (and its synonyms) records the sender as opted out and START (YES, UNSTOP) opts them back
in, in the same transaction as the message; both answer only the confirmation, and only when
SEND_OPT_OUT_CONFIRMATIONS is on (Twilio confirms them itself on long codes and toll-free
numbers). HELP answers the rules file's help text. A sender who has opted out gets no reply at
all: Twilio would refuse it (error 21610).
"""

from __future__ import annotations

from collections.abc import Mapping

from bottle import HTTPError
from twilio.twiml.messaging_response import MessagingResponse

from dialtone.bot import optout
from dialtone.bot.inbound import InboundMessage
from dialtone.bot.rules import Rules
from dialtone.record.recorder import Recorder, delivery_key


def auto_reply(message: InboundMessage, rules: Rules) -> MessagingResponse:
    """A MessagingResponse with the rules' reply in one <Message>, or none for no reply."""
    response = MessagingResponse()
    text = rules.reply(message.body, sender=message.sender, media_types=message.media_types)
    if text:
        response.message(text)
    return response


def answer(
    message: InboundMessage,
    rules: Rules,
    keyword: optout.KeywordAnswer | None,
    *,
    opted_out: bool,
    confirmations: bool,
) -> MessagingResponse:
    """The reply: a STOP/START confirmation (if `confirmations`), nothing for a sender who had
    opted out, otherwise the rules' reply (HELP gets the rules' help text)."""
    if keyword is not None and keyword.opted_out is not None:
        response = MessagingResponse()
        if confirmations:
            response.message(keyword.reply)
        return response
    if opted_out:
        return MessagingResponse()
    return auto_reply(message, rules)


def inbound(form: Mapping[str, str]) -> InboundMessage:
    """The text a webhook carries; HTTP 400 when the webhook is malformed (NumMedia)."""
    try:
        return InboundMessage.from_form(form)
    except ValueError as exc:
        raise HTTPError(400, str(exc)) from None


def record_text(
    record: Recorder, form: Mapping[str, str], keyword: optout.KeywordAnswer | None
) -> bool:
    """Record the text and any opt-out change it makes, in one transaction; True when the
    sender had opted out before it (the answer depends on that, so record before answering)."""
    change = keyword.opted_out if keyword else None
    word = keyword.word if keyword and change is not None else None
    return record.receive_message(form, delivery_key(), opted_out=change, keyword=word)
