"""Sending a text or placing a call through Twilio, and recording it: shared by POST /send_sms,
POST /make_call and voice option 3.

The record gets every attempt: the message or call with the SID and status Twilio answered, or,
when Twilio refused it or could not be reached, a "failed" row with Twilio's error code. A refusal with
21610 (the recipient texted STOP, perhaps while this server was down) marks them opted out.
"""

from __future__ import annotations

from requests.exceptions import RequestException
from twilio.base.exceptions import TwilioException
from twilio.rest.api.v2010.account.call import CallInstance
from twilio.rest.api.v2010.account.message import MessageInstance

from dialtone.facts import UNSUBSCRIBED_RECIPIENT
from dialtone.record.recorder import Recorder
from dialtone.twilio_api import TwilioError, TwilioHandle, twilio_error

OPTED_OUT_CODE = UNSUBSCRIBED_RECIPIENT  # Twilio: the recipient replied STOP
UNREACHABLE = "could not reach Twilio"


def send_text(
    twilio: TwilioHandle,
    recorder: Recorder,
    to: str,
    body: str | None,
    media_urls: list[str] | None = None,
) -> MessageInstance:
    """Send through `twilio` and record the message; Twilio's and the network's errors are
    recorded, then raised as they were (MissingCredentials is raised before anything is sent)."""
    media = media_urls or []
    sender = twilio.settings.phone_number
    try:
        message = twilio.send_message(to, body, media)
    except TwilioException as exc:
        record_refused(recorder, to, sender, body, media, twilio_error(exc))
        raise
    except (RequestException, ValueError):
        # The network, or an answer that is not Twilio's JSON (a proxy's error page).
        record_refused(recorder, to, sender, body, media, None)
        raise
    from_ = getattr(message, "from_", None) or sender
    status = message.status or "queued"
    recorder.outbound_message(message.sid, to, from_, body or "", media, status)
    return message


def record_refused(
    recorder: Recorder,
    to: str,
    sender: str | None,
    body: str | None,
    media_urls: list[str],
    error: TwilioError | None,
) -> None:
    """Record a text Twilio refused (`error` None: Twilio could not be reached)."""
    code = error.code if error else None
    recorder.outbound_message(
        None,
        to,
        sender,
        body or "",
        media_urls,
        "failed",
        error_code=code,
        error_message=error.message if error else UNREACHABLE,
    )
    if code == OPTED_OUT_CODE:
        # Twilio knows of a STOP this record missed (sent while the server was down, or to
        # another number of a Messaging Service): remember it.
        recorder.set_opt_out(to, True, None)


def place_call(twilio: TwilioHandle, recorder: Recorder, to: str, **how: str) -> CallInstance:
    """Start a call through `twilio` (`how`: url or twiml, status_callback) and record it;
    errors are recorded, then raised as they were, as `send_text` does."""
    sender = twilio.settings.phone_number
    try:
        call = twilio.create_call(to, **how)
    except (TwilioException, RequestException, ValueError) as exc:
        error = twilio_error(exc) if isinstance(exc, TwilioException) else None
        recorder.outbound_call(
            None,
            to,
            sender,
            "failed",
            error_code=error.code if error else None,
            error_message=error.message if error else UNREACHABLE,
        )
        raise
    recorder.outbound_call(call.sid, to, sender, call.status or "queued")
    return call
