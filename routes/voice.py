"""POST /voice_url and its siblings: the keypad menu (the replies are in dialtone.bot.voice_menu).

Every webhook is recorded before it is answered: the call (and its status) on each of them, and
the keys pressed on /voice_url/menu. A record that cannot be written is logged; the caller still
hears the menu. Option 3's text goes through the outbox, so it is recorded as an outbound message
as /send_sms records one, and never goes to a caller who has opted out. When a handler fails, the
caller hears an apology (`on_error`) instead of Twilio's application-error message.
"""

from functools import partial

from bottle import FormsDict
from twilio.twiml.voice_response import VoiceResponse

from dialtone import webhook
from dialtone.bot import voice_menu as menu
from dialtone.record.recorder import Recorder, delivery_key
from dialtone.settings import Settings
from dialtone.twilio_api import TwilioHandle
from dialtone.web.ratelimit import Limiter


@webhook(menu.VOICE_PATH, on_error=menu.apology)
def voice(
    form: FormsDict, query: dict[str, str], settings: Settings, record: Recorder
) -> VoiceResponse:
    """A call comes in (or comes back to the menu): greet, and offer the menu."""
    record.call(form, delivery_key())
    attempt = menu.parse_attempt(query.get("attempt"))
    return menu.greeting(settings, menu.caller_of(form), attempt)


@webhook(menu.MENU_PATH, on_error=menu.apology)
def choice(
    form: FormsDict,
    query: dict[str, str],
    settings: Settings,
    record: Recorder,
    twilio: TwilioHandle,
    link_limiter: Limiter,
    link_total_limiter: Limiter,
) -> VoiceResponse:
    """The caller pressed a key (or none) at the menu."""
    record.digits(form, delivery_key())
    caller = menu.caller_of(form)
    text_link = partial(
        menu.send_link, twilio, settings, record, caller, link_limiter, link_total_limiter
    )
    attempt = menu.parse_attempt(query.get("attempt"))
    return menu.choose(
        settings, form.get("Digits", ""), attempt, text_link=text_link, caller=caller
    )


@webhook(menu.RECORDED_PATH, on_error=menu.apology)
def recorded(form: FormsDict, settings: Settings, record: Recorder) -> VoiceResponse:
    """The caller left a message (option 2)."""
    record.call(form, delivery_key())
    return menu.recorded(settings, form)


@webhook(menu.DIALED_PATH, on_error=menu.apology)
def dialed(form: FormsDict, settings: Settings, record: Recorder) -> VoiceResponse:
    """A <Dial> to FORWARD_TO ended (option 4)."""
    record.call(form, delivery_key())
    return menu.dialed(settings, form.get("DialCallStatus", ""))


@webhook(menu.HOLD_PATH, on_error=menu.apology)
def hold(form: FormsDict, settings: Settings, record: Recorder) -> VoiceResponse:
    """The hold queue's wait URL (option 5): music, and the caller's place in line."""
    record.call(form, delivery_key())
    return menu.hold_music(settings, form.get("QueuePosition"))


@webhook(menu.AGENT_PATH, on_error=menu.apology)
def agent(form: FormsDict, settings: Settings, record: Recorder) -> VoiceResponse:
    """An agent calls in to take the next caller on hold: asked for AGENT_PIN first."""
    record.call(form, delivery_key())
    return menu.agent(settings, menu.caller_of(form))


@webhook(menu.AGENT_PIN_PATH, on_error=menu.apology)
def agent_pin(
    form: FormsDict, settings: Settings, record: Recorder, agent_pin_failures: Limiter
) -> VoiceResponse:
    """The agent keyed in a PIN (after option 9 or a call to /voice_url/agent)."""
    record.call(form, delivery_key())
    caller = menu.caller_of(form)
    return menu.agent_pin(settings, caller, form.get("Digits", ""), agent_pin_failures)
