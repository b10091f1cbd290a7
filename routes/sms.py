"""POST /sms_url: record each text, then answer it: carrier keywords first, then rules.toml."""

from bottle import FormsDict
from twilio.twiml.messaging_response import MessagingResponse

from dialtone import webhook
from dialtone.bot import optout, sms
from dialtone.bot.rules import Rules
from dialtone.record.recorder import Recorder
from dialtone.settings import Settings


@webhook("/sms_url")
def sms_url(
    form: FormsDict, settings: Settings, record: Recorder, rules: Rules
) -> MessagingResponse:
    """STOP and START change the sender's opt-out; HELP and anything else get the rules' reply."""
    message = sms.inbound(form)
    keyword = optout.answer(message.body)
    had_opted_out = sms.record_text(record, form, keyword)
    return sms.answer(
        message,
        rules,
        keyword,
        opted_out=had_opted_out,
        confirmations=settings.send_opt_out_confirmations,
    )
