"""POST /voice_url and its siblings: the keypad menu (replies built in dialtone.bot.voice_menu).

Every webhook is recorded before it is answered: the call (and its status) on each of them, and
the keys pressed on /voice_url/menu. A record that cannot be written is logged; the caller still
hears the menu. Option 3's text goes through dialtone.bot.texting, so it is recorded as an outbound
message as /send_sms records one, and never goes to a caller who has opted out.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from bottle import Bottle, FormsDict, request
from twilio.twiml.voice_response import VoiceResponse

from dialtone.bot import voice_menu as menu
from dialtone.record.recorder import Recorder, delivery_key
from dialtone.settings import Settings
from dialtone.twilio_api import TwilioHandle
from dialtone.web.ratelimit import RateLimiter

Handler = Callable[[FormsDict], VoiceResponse]


def install(
    app: Bottle, settings: Settings, twilio_handle: TwilioHandle, recorder: Recorder
) -> None:
    """Add POST /voice_url, /voice_url/menu, /recorded, /dialed, /hold and /agent."""
    on_error = partial(menu.apology, settings)

    def voice_route(path: str) -> Callable[[Handler], Handler]:
        """A webhook route that records the call before the handler answers."""

        def decorate(handler: Handler) -> Handler:
            def recorded(form: FormsDict) -> VoiceResponse:
                if path == menu.MENU_PATH:
                    recorder.digits(form, delivery_key())
                else:
                    recorder.call(form, delivery_key())
                return handler(form)

            app.post(path, webhook=True, on_error=on_error)(recorded)
            return handler

        return decorate

    link_limiter = RateLimiter(settings.link_texts_per_hour, window=3600)

    def attempt() -> int:
        return menu.parse_attempt(request.query.get("attempt"))

    @voice_route(menu.VOICE_PATH)
    def voice(form: FormsDict) -> VoiceResponse:
        return menu.greeting(settings, menu.caller_of(form), attempt())

    @voice_route(menu.MENU_PATH)
    def choice(form: FormsDict) -> VoiceResponse:
        caller = menu.caller_of(form)
        text_link = partial(menu.send_link, twilio_handle, settings, recorder, caller, link_limiter)
        digits = form.get("Digits", "")
        return menu.choose(settings, digits, attempt(), text_link=text_link, caller=caller)

    @voice_route(menu.RECORDED_PATH)
    def recorded(form: FormsDict) -> VoiceResponse:
        return menu.recorded(settings, form)

    @voice_route(menu.DIALED_PATH)
    def dialed(form: FormsDict) -> VoiceResponse:
        return menu.dialed(settings, form.get("DialCallStatus", ""))

    @voice_route(menu.HOLD_PATH)
    def hold(form: FormsDict) -> VoiceResponse:
        return menu.hold_music(settings, form.get("QueuePosition"))

    @voice_route(menu.AGENT_PATH)
    def agent(form: FormsDict) -> VoiceResponse:
        return menu.agent(settings, menu.caller_of(form))
