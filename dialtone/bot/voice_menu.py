"""The voice menu's replies: plain functions from settings and form values to a `VoiceResponse`.

routes/voice.py maps URLs onto these. Every URL in the TwiML is relative (Twilio resolves it
against the URL it just requested), so the replies do not depend on PUBLIC_URL; the signature
plugin checks PUBLIC_URL + path + query, so a query string such as `?attempt=2` is signed too.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Mapping
from enum import Enum

import requests
from twilio.base.exceptions import TwilioException
from twilio.twiml.voice_response import Dial, Gather, VoiceResponse

from dialtone.bot.destinations import check_destination
from dialtone.bot.texting import send_text
from dialtone.facts import clean
from dialtone.record.recorder import Recorder
from dialtone.settings import Settings
from dialtone.twilio_api import MissingCredentials, TwilioHandle
from dialtone.web.ratelimit import Limiter

log = logging.getLogger("dialtone.voice")

# The routes, all siblings of the number's voice URL.
VOICE_PATH = "/voice_url"
MENU_PATH = "/voice_url/menu"
RECORDED_PATH = "/voice_url/recorded"
DIALED_PATH = "/voice_url/dialed"
HOLD_PATH = "/voice_url/hold"
AGENT_PATH = "/voice_url/agent"
AGENT_PIN_PATH = "/voice_url/agent/pin"

AGENT_PIN_FAILURES_PER_HOUR = 5  # wrong PINs, all callers together, before pickup pauses
KEYPAD = frozenset("0123456789*#")
HOLD_QUEUE = "dialtone"  # the <Enqueue> queue that option 5 and the agent path share
GATHER_TIMEOUT = 5  # seconds of silence before <Gather> gives up
RECORD_MAX_SECONDS = 120
DIAL_TIMEOUT = 20  # seconds to ring FORWARD_TO (or wait on an empty queue)

# Why a <Dial> ended without a conversation, as the caller should hear it.
DIAL_OUTCOMES = {
    "busy": "The line is busy.",
    "no-answer": "Nobody answered.",
    "failed": "The call could not be connected.",
}

# What can go wrong sending the SMS in option 3: Twilio refused it, no credentials or number,
# or the network (requests raises Timeout and ConnectionError, both RequestException).
SEND_FAILURES = (TwilioException, MissingCredentials, requests.RequestException)


def say(reply: VoiceResponse | Gather, settings: Settings, text: str) -> None:
    """Add a <Say> in the configured voice and language (without characters XML cannot carry:
    some of what is said comes from the webhook)."""
    reply.say(clean(text), voice=settings.say_voice, language=settings.say_language)


def hang_up(reply: VoiceResponse, settings: Settings, *lines: str) -> VoiceResponse:
    """Say `lines`, then <Hangup>: how every branch of the menu ends."""
    for line in lines:
        say(reply, settings, line)
    reply.hangup()
    return reply


def parse_attempt(raw: str | None) -> int:
    """The menu attempt from the `attempt` query parameter: 1 when absent or not a number."""
    try:
        return max(1, int(raw or "1"))
    except ValueError:
        return 1


def caller_of(form: Mapping[str, str]) -> str:
    """The other party: From on an inbound call, To on a call Dialtone placed."""
    if form.get("Direction", "").startswith("outbound"):
        return form.get("To", "")
    return form.get("From", "")


def menu_url(attempt: int) -> str:
    """Where a <Redirect> back to the menu goes, carrying the attempt count."""
    return f"{VOICE_PATH}?attempt={attempt}"


def greeting(settings: Settings, caller: str, attempt: int = 1) -> VoiceResponse:
    """POST /voice_url: <Reject> a blocked caller, otherwise the keypad menu."""
    reply = VoiceResponse()
    if caller in settings.blocked_callers:
        reply.reject(reason="rejected")
        return reply
    if attempt == 1:
        say(reply, settings, "Hello, and thank you for calling Dialtone.")
    gather = reply.gather(
        input="dtmf",
        num_digits=1,
        timeout=GATHER_TIMEOUT,
        action=f"{MENU_PATH}?attempt={attempt}",
        method="POST",
    )
    say(gather, settings, menu_prompt(settings))
    # Reached only when <Gather> times out with no key pressed.
    retry(reply, settings, attempt, "I did not hear a choice.")
    return reply


def menu_prompt(settings: Settings) -> str:
    """The spoken list of choices (option 9, the agent pick-up, is deliberately unlisted)."""
    choices = [
        "Press 1 to hear a message.",
        "Press 2 to leave a message.",
        "Press 3 to get a link by text message.",
    ]
    if settings.forward_to:
        choices.append("Press 4 to speak to a person.")
    choices.append("Press 5 to wait on hold.")
    return " ".join(choices)


def retry(reply: VoiceResponse, settings: Settings, attempt: int, problem: str) -> VoiceResponse:
    """Say what went wrong, then <Redirect> to the menu, or <Hangup> once attempts run out."""
    if attempt >= settings.menu_attempts:
        return hang_up(reply, settings, problem, "Goodbye.")
    say(reply, settings, problem)
    reply.redirect(menu_url(attempt + 1), method="POST")
    return reply


def choose(
    settings: Settings,
    digits: str,
    attempt: int,
    *,
    text_link: Callable[[], LinkText],
    caller: str = "",
) -> VoiceResponse:
    """POST /voice_url/menu: the reply to the key pressed; `text_link()` sends option 3's SMS."""
    if digits == "1":
        return message(settings)
    if digits == "2":
        return record(settings, "Please leave a message after the beep, then press the pound key.")
    if digits == "3":
        return link_texted(settings, text_link())
    if digits == "4":
        return forward(settings, attempt)
    if digits == "5":
        return hold(settings)
    if digits == "9" and settings.agent_pin and caller in settings.agents:
        return ask_for_pin(settings)
    if not digits:
        problem = "I did not hear a choice."
    elif len(digits) <= 3 and all(key in KEYPAD for key in digits):
        problem = f"{digits} is not on the menu."
    else:  # not what a keypad sends: not worth saying back
        problem = "That is not on the menu."
    return retry(VoiceResponse(), settings, attempt, problem)


def message(settings: Settings) -> VoiceResponse:
    """Option 1: speak a message and hang up."""
    return hang_up(
        VoiceResponse(),
        settings,
        "This call is answered by Dialtone, a small Twilio webhook server.",
        "Thanks for listening. Goodbye.",
    )


def record(settings: Settings, prompt: str) -> VoiceResponse:
    """Option 2 (and an unanswered forward): <Record> a message; its action thanks the caller."""
    reply = VoiceResponse()
    say(reply, settings, prompt)
    reply.record(
        action=RECORDED_PATH,
        method="POST",
        max_length=RECORD_MAX_SECONDS,
        finish_on_key="#",
        play_beep=True,
    )
    # Twilio skips the action and carries on here when the recording is empty.
    return hang_up(reply, settings, "I did not hear a message. Goodbye.")


def recorded(settings: Settings, form: Mapping[str, str]) -> VoiceResponse:
    """POST /voice_url/recorded: log the recording, thank the caller, hang up."""
    log.info(
        "recording from call %s: %s (%s s)",
        form.get("CallSid", "?"),
        form.get("RecordingUrl", "?"),
        form.get("RecordingDuration", "?"),
    )
    return hang_up(VoiceResponse(), settings, "Thank you, your message has been recorded. Goodbye.")


class LinkText(Enum):
    """What became of option 3's text."""

    SENT = "sent"
    OPTED_OUT = "opted out"  # the caller texted STOP: nothing was sent
    FAILED = "failed"


ALL_CALLERS = "*"  # the key of the overall limiter's one count


def send_link(
    handle: TwilioHandle,
    settings: Settings,
    recorder: Recorder,
    caller: str,
    limiter: Limiter | None = None,
    total: Limiter | None = None,
) -> LinkText:
    """Text SMS_LINK to the caller through the REST API and record it, as /send_sms does.

    Caller IDs can be spoofed (an attacker's calls can make this text any number), and each text
    costs money: the destination policy applies as on /send_sms (ALLOWED_DESTINATIONS,
    DENIED_PREFIXES), `limiter` bounds texts per caller and `total` all of them together
    (LINK_TEXTS_PER_HOUR, LINK_TEXTS_TOTAL_PER_HOUR). Not to a caller who has opted out (STOP).
    A failure is logged (and recorded if Twilio saw it).
    """
    refusal = check_destination(caller, settings)
    if refusal is not None:
        log.warning("not texting the link to %r: %s", caller, refusal.message)
        return LinkText.FAILED
    if recorder.is_opted_out(caller):
        log.info("not texting the link: %s has opted out", caller)
        return LinkText.OPTED_OUT
    if limiter is not None and limiter.hit(caller) is not None:
        log.warning("not texting the link: %s asked too often", caller)
        return LinkText.FAILED
    if total is not None and total.hit(ALL_CALLERS) is not None:
        log.warning(
            "not texting the link to %s: LINK_TEXTS_TOTAL_PER_HOUR (%s) reached",
            caller,
            total.limit,
        )
        return LinkText.FAILED
    body = f"Here is your link from Dialtone: {settings.sms_link}"
    try:
        sent = send_text(handle, recorder, caller, body)
    except SEND_FAILURES as exc:
        log.warning("could not text the link to %s: %s", caller, exc)
        return LinkText.FAILED
    log.info("texted the link to %s as %s", caller, sent.sid)
    return LinkText.SENT


LINK_REPLIES = {
    LinkText.SENT: "I have sent you a text message with the link. Goodbye.",
    LinkText.OPTED_OUT: (
        "You have asked not to get text messages from this number, so I have not sent one. "
        "To get them again, text START to this number. Goodbye."
    ),
    LinkText.FAILED: "Sorry, I could not send you a text message just now. Goodbye.",
}


def link_texted(settings: Settings, outcome: LinkText) -> VoiceResponse:
    """Option 3's reply once the SMS has (or has not) been sent."""
    return hang_up(VoiceResponse(), settings, LINK_REPLIES[outcome])


def forward(settings: Settings, attempt: int) -> VoiceResponse:
    """Option 4: <Dial> FORWARD_TO, or say it is not available and go back to the menu."""
    reply = VoiceResponse()
    if not settings.forward_to:
        problem = "Sorry, speaking to a person is not available on this line."
        return retry(reply, settings, attempt, problem)
    say(reply, settings, "Connecting you now.")
    reply.dial(settings.forward_to, action=DIALED_PATH, method="POST", timeout=DIAL_TIMEOUT)
    return reply


def dialed(settings: Settings, dial_status: str) -> VoiceResponse:
    """POST /voice_url/dialed: after a <Dial>, offer a message if nobody took the call."""
    outcome = DIAL_OUTCOMES.get(dial_status)
    if outcome:
        return record(settings, f"{outcome} Please leave a message after the beep.")
    return hang_up(VoiceResponse(), settings)


def hold(settings: Settings) -> VoiceResponse:
    """Option 5: <Enqueue> the caller; the wait URL plays music until someone dials the queue."""
    reply = VoiceResponse()
    say(reply, settings, "Please hold. Someone will be with you shortly.")
    reply.enqueue(HOLD_QUEUE, wait_url=HOLD_PATH, wait_url_method="POST")
    # Reached when the conversation ends or the queue could not take the call.
    return hang_up(reply, settings, "Thank you for calling. Goodbye.")


def hold_music(settings: Settings, position: str | None) -> VoiceResponse:
    """POST /voice_url/hold (the wait URL): Twilio re-requests it each time it finishes."""
    reply = VoiceResponse()
    if position and position.isascii() and position.isdecimal():
        say(reply, settings, f"You are number {position} in line.")
    reply.play(settings.hold_music_url)
    reply.pause(length=1)
    return reply


AGENTS_ONLY = "Sorry, this line is for agents only. Goodbye."


def agent(settings: Settings, caller: str) -> VoiceResponse:
    """POST /voice_url/agent: an agent is asked for AGENT_PIN; anyone else is turned away.

    Caller ID is not proof (anyone can send any caller ID), so it only decides who is asked;
    without AGENT_PIN agent pickup is off.
    """
    if settings.agent_pin and caller in settings.agents:
        return ask_for_pin(settings)
    return hang_up(VoiceResponse(), settings, AGENTS_ONLY)


def ask_for_pin(settings: Settings) -> VoiceResponse:
    """<Gather> the agent's PIN (ended by #); its action is POST /voice_url/agent/pin."""
    reply = VoiceResponse()
    gather = reply.gather(
        input="dtmf",
        finish_on_key="#",
        timeout=GATHER_TIMEOUT,
        action=AGENT_PIN_PATH,
        method="POST",
    )
    say(gather, settings, "Please enter your agent PIN, then press the pound key.")
    return hang_up(reply, settings, "I did not hear a PIN. Goodbye.")


def agent_pin(
    settings: Settings, caller: str, digits: str, failures: Limiter | None = None
) -> VoiceResponse:
    """POST /voice_url/agent/pin: the right PIN from an agent's number connects to the queue.

    One try per call. `failures` counts wrong PINs for all callers together: once it is full,
    pickup is refused (even with the right PIN) until the window has passed, so guessing a PIN
    costs a call per try and stops soon.
    """
    expected = settings.agent_pin
    if not expected or caller not in settings.agents:
        return hang_up(VoiceResponse(), settings, AGENTS_ONLY)
    if failures is not None and failures.locked(ALL_CALLERS) is not None:
        log.warning("agent pickup refused for %s: too many wrong PINs lately", caller)
        return hang_up(VoiceResponse(), settings, "Sorry, agent pickup is paused. Goodbye.")
    if hmac.compare_digest(digits.encode(), expected.encode()):
        return connect_to_queue(settings)
    log.warning("wrong agent PIN from %s", caller)
    if failures is not None:
        failures.hit(ALL_CALLERS)
    return hang_up(VoiceResponse(), settings, "That PIN is not right. Goodbye.")


def connect_to_queue(settings: Settings) -> VoiceResponse:
    """After an agent's PIN (option 9, POST /voice_url/agent): <Dial><Queue> to the longest waiting."""
    reply = VoiceResponse()
    say(reply, settings, "Connecting you to the next caller on hold.")
    dial = Dial(timeout=DIAL_TIMEOUT)
    dial.queue(HOLD_QUEUE)
    reply.append(dial)
    # Reached when the conversation ends, or nobody joined the queue before the timeout.
    return hang_up(reply, settings, "The call has ended. Goodbye.")


def apology(settings: Settings) -> VoiceResponse:
    """The reply when a voice route fails: a short apology and a hang-up."""
    return hang_up(
        VoiceResponse(),
        settings,
        "Sorry, something went wrong on our side. Please call again later.",
    )
