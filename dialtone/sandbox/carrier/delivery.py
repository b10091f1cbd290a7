"""Messages as the carrier carries them: texts from the phone to the app, and messages out.

`Messenger` is the message half of the carrier. Texts from the phone are recorded, carrier
keywords (STOP, START, HELP, ...) get Twilio's own reply, and the text is POSTed to the number's
SmsUrl; `<Message>` replies become outbound-reply messages. Every outbound message then moves
through Twilio's documented statuses (the "Outbound Message Status in Status Callbacks" page):

- without a Messaging Service: queued -> sent -> delivered;
- with one: accepted -> queued -> sent -> delivered (the sender and num_segments are assigned
  at queued);
- a planned failure (`FailurePlan`): ... -> sent -> undelivered, or ... -> failed, with its
  ErrorCode.

A status callback is POSTed for every change after the initial status, never for the initial
one. Twilio's magic test To numbers are refused by the REST API before any message exists.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from dialtone.sandbox.api.errors import UNSUBSCRIBED
from dialtone.sandbox.carrier import messaging, stop_filter
from dialtone.sandbox.carrier.failures import FailurePlan
from dialtone.sandbox.carrier.messaging import Media, OutboundMessage
from dialtone.sandbox.carrier.webhook_client import Hook, WebhookClient
from dialtone.sandbox.carrier.webhook_errors import Notice, TwilioFailure
from dialtone.sandbox.phone.line import EventLog, show_notice
from dialtone.sandbox.resources import Message
from dialtone.sandbox.state import SandboxState

log = logging.getLogger("dialtone.sandbox.carrier.delivery")

DELIVERY_STEP = 1.0  # seconds (times time_scale) between two statuses of an outbound message

Pause = Callable[[float], bool]  # wait a scaled number of seconds; False when stopping


class Messenger:
    """Texts in from the phone, messages out to anyone, for one sandbox account."""

    def __init__(
        self,
        state: SandboxState,
        client: WebhookClient,
        events: EventLog,
        failures: FailurePlan,
        pause: Pause,
        phone_number: str,
    ) -> None:
        self.state = state
        self.client = client
        self.events = events
        self.failures = failures
        self.pause = pause
        self.phone_number = phone_number

    def is_phone(self, number: str) -> bool:
        """True for the phone's own number (on any channel)."""
        return number.removeprefix("whatsapp:") == self.phone_number

    # --- in ---------------------------------------------------------------------------------

    def keyword_reply(self, message: Message) -> str | None:
        """Carry out a carrier keyword at once (the opt-out list changes before the app hears
        of it); Twilio's own reply to it, for `show_keyword_reply`, or None."""
        return stop_filter.handle_keyword(self.state, message)

    def show_keyword_reply(self, message: Message, answer: str) -> None:
        """Twilio's reply to a keyword reaches the phone as a delivered message would (after
        the same delivery steps), so replies arrive in the order their texts were sent."""
        if not self.pause(2 * DELIVERY_STEP):
            return
        self.events.add(
            "message",
            sid=None,
            from_=message.to,
            to=message.from_,
            body=answer,
            media_urls=[],
            direction="outbound-reply",
            auto_reply=True,  # not a message on the account: Twilio's own answer
        )

    def answer_text(self, message: Message, media: tuple[Media, ...]) -> None:
        """POST a text from the phone to the number's SmsUrl and send the TwiML replies."""
        number = self.state.number_by_phone(message.to)
        if number is None or not number.sms_url:
            text = f"{message.to} has no SmsUrl, so nothing answers texts: point it at the app."
            show_notice(self.events, Notice(None, text, fatal=False), message_sid=message.sid)
            return
        hook = Hook(
            number.sms_url,
            number.sms_method,
            number.sms_fallback_url or None,
            number.sms_fallback_method,
        )
        params = messaging.inbound_params(
            message_sid=message.sid,
            account_sid=self.state.account_sid,
            from_=message.from_,
            to=message.to,
            body=message.body,
            media=media,
        )
        result = messaging.reply(self.client, hook, params)
        for notice in result.notices:
            show_notice(self.events, notice, message_sid=message.sid)
        for out in result.messages:
            self.create(out, "outbound-reply")

    # --- out --------------------------------------------------------------------------------

    def create(self, out: OutboundMessage, direction: str) -> str:
        """A message a TwiML reply or a call asked for; refused (21610) to an opted-out number."""
        if self.state.optouts.is_opted_out(out.from_, out.to):
            return self._refuse_unsubscribed(out, direction)
        return self.state.create_message(
            to=out.to,
            from_=out.from_,
            body=out.body,
            media_urls=out.media_urls,
            direction=direction,
            status_callback=out.status_callback,
        ).sid

    def _refuse_unsubscribed(self, out: OutboundMessage, direction: str) -> str:
        """A TwiML <Message> to a number that texted STOP: failed with 21610, as Twilio does."""
        message = self.state.create_message(
            to=out.to,
            from_=out.from_,
            body=out.body,
            media_urls=out.media_urls,
            direction=direction,
            status="failed",
            status_callback=out.status_callback,
        )
        message = self.state.set_message_status(
            message.sid,
            "failed",
            error_code=UNSUBSCRIBED,
            error_message=stop_filter.UNSUBSCRIBED_TEXT,
        )
        notice = Notice(None, stop_filter.refusal(out.to, out.from_), fatal=False)
        show_notice(self.events, notice, message_sid=message.sid)
        return message.sid

    def deliver(self, message: Message) -> None:
        """Carry an outbound message from its initial status to its final one."""
        if message.status == "accepted":  # a Messaging Service picks the sender, then queues
            if not self.pause(DELIVERY_STEP):
                return
            message = self.state.queue_service_message(message.sid)
            self.callback(message)
        failure = self.failures.next_message(message.to)
        if failure is not None and failure.status == "failed":
            if self.pause(DELIVERY_STEP):
                self._end(message, failure.status, failure.error_code, failure.error_message)
            return
        if not self.pause(DELIVERY_STEP):
            return
        message = self.state.set_message_status(message.sid, "sent")
        self.callback(message)
        if not self.pause(DELIVERY_STEP):
            return
        if failure is not None:
            self._end(message, failure.status, failure.error_code, failure.error_message)
            return
        message = self.state.set_message_status(message.sid, "delivered")
        if self.is_phone(message.to):
            self.events.add(
                "message",
                sid=message.sid,
                from_=message.from_,
                to=message.to,
                body=message.body,
                media_urls=list(message.media_urls),
                direction=message.direction,
            )
        self.callback(message)

    def _end(self, message: Message, status: str, code: int, text: str) -> None:
        message = self.state.set_message_status(
            message.sid, status, error_code=code, error_message=text
        )
        log.info(
            "sandbox: message %s to %s is %s with %s (on demand)",
            message.sid,
            message.to,
            status,
            code,
        )
        self.callback(message)

    def callback(self, message: Message) -> None:
        """POST the message's current status to its StatusCallback, if it has one."""
        if not message.status_callback:
            return
        params = messaging.status_params(
            message_sid=message.sid,
            account_sid=message.account_sid,
            from_=message.from_,
            to=message.to,
            status=message.status,
            error_code=message.error_code,
            messaging_service_sid=message.messaging_service_sid,
        )
        try:
            self.client.send(message.status_callback, params, "POST")
        except TwilioFailure as exc:
            show_notice(self.events, exc.notice, message_sid=message.sid)
