"""POST /sms_url: record a text (or MMS), then answer it: carrier keywords first, then the rules.

STOP (and its synonyms) records the sender as opted out and START (YES, UNSTOP) opts them back
in, in the same transaction as the message; both answer only the confirmation, and only when
SEND_OPT_OUT_CONFIRMATIONS is on (Twilio confirms them itself on long codes and toll-free
numbers). HELP answers the rules file's help text. A sender who has opted out gets no reply at
all: Twilio would refuse it (error 21610).
"""

from __future__ import annotations

from bottle import Bottle, FormsDict, HTTPError
from twilio.twiml.messaging_response import MessagingResponse

from dialtone.bot import optout
from dialtone.bot.inbound import InboundMessage
from dialtone.bot.rules import Rules, RulesFile
from dialtone.record.recorder import Recorder, delivery_key
from dialtone.settings import Settings


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


def install(app: Bottle, settings: Settings, rules: RulesFile, recorder: Recorder) -> None:
    """Add POST /sms_url; an error answers an empty MessagingResponse (no reply, logged)."""

    @app.post("/sms_url", webhook=True, on_error=MessagingResponse)
    def sms(form: FormsDict) -> MessagingResponse:
        try:
            message = InboundMessage.from_form(form)
        except ValueError as exc:
            raise HTTPError(400, str(exc)) from None
        keyword = optout.answer(message.body)
        change = keyword.opted_out if keyword else None
        word = keyword.word if keyword and change is not None else None
        # Recorded before answering; the answer depends on the opt-out state before this text.
        opted_out = recorder.receive_message(form, delivery_key(), opted_out=change, keyword=word)
        return answer(
            message,
            rules.current(),
            keyword,
            opted_out=opted_out,
            confirmations=settings.send_opt_out_confirmations,
        )
