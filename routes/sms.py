"""POST /sms_url: answer a text (or MMS) with one auto-reply from the rules file."""

from __future__ import annotations

from bottle import Bottle, FormsDict, HTTPError
from twilio.twiml.messaging_response import MessagingResponse

from dialtone.inbound import InboundMessage
from dialtone.rules import Rules, RulesFile
from dialtone.settings import Settings


def auto_reply(message: InboundMessage, rules: Rules) -> MessagingResponse:
    """A MessagingResponse with the rules' reply in one <Message>, or none for no reply."""
    response = MessagingResponse()
    text = rules.reply(message.body, sender=message.sender, media_types=message.media_types)
    if text:
        response.message(text)
    return response


def install(app: Bottle, settings: Settings, rules: RulesFile) -> None:
    """Add POST /sms_url; an error answers an empty MessagingResponse (no reply, logged)."""

    @app.post("/sms_url", webhook=True, on_error=MessagingResponse)
    def sms(form: FormsDict) -> MessagingResponse:
        try:
            message = InboundMessage.from_form(form)
        except ValueError as exc:
            raise HTTPError(400, str(exc)) from None
        return auto_reply(message, rules.current())
