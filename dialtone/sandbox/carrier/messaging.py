"""Messaging as Twilio carries it out: inbound webhook parameters, TwiML replies, status callbacks.

Everything here is pure except `reply`, which fetches the SmsUrl's TwiML (following <Redirect>)
with a WebhookClient. Segment counting follows GSM 03.38: 160 GSM-7 characters in one segment,
153 per segment once split; otherwise UCS-2, 70 and 67 (counted in UTF-16 units, so an emoji
takes two).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from dialtone.sandbox.carrier import twiml
from dialtone.sandbox.carrier.webhook_client import Hook, WebhookClient
from dialtone.sandbox.carrier.webhook_errors import Notice, TwilioFailure

API_VERSION = "2010-04-01"
MAX_DOCUMENTS = 50  # 14106: a reply may fetch at most this many documents
MAX_REPLIES = 10  # 14109: at most this many <Message> replies to one inbound message

# GSM 03.38 default alphabet, and the extension table whose characters take two septets.
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")


@dataclass(frozen=True)
class Media:
    """One MMS attachment: where it is and what it is."""

    url: str
    content_type: str


@dataclass(frozen=True)
class OutboundMessage:
    """A message a TwiML reply asks Twilio to send."""

    to: str
    from_: str
    body: str
    media_urls: tuple[str, ...] = ()
    status_callback: str | None = None


@dataclass(frozen=True)
class Reply:
    """What an inbound message's webhook produced: messages to send, and notices to show."""

    messages: tuple[OutboundMessage, ...]
    notices: tuple[Notice, ...] = ()


def is_gsm7(body: str) -> bool:
    """True when every character is in the GSM-7 alphabet (basic or extension table)."""
    return all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in body)


def segments(body: str) -> int:
    """How many SMS segments Twilio bills `body` as (at least 1, even when empty)."""
    if is_gsm7(body):
        units, single, multi = sum(2 if ch in GSM7_EXTENSION else 1 for ch in body), 160, 153
    else:
        units, single, multi = len(body.encode("utf-16-le")) // 2, 70, 67
    return 1 if units <= single else math.ceil(units / multi)


def country_of(number: str) -> str:
    """The ISO country of a number as far as the sandbox can tell (+1 US, +44 GB), else ""."""
    if number.startswith("+1"):
        return "US"
    if number.startswith("+44"):
        return "GB"
    return ""


def geo_params(from_: str, to: str) -> dict[str, str]:
    """Twilio's FromCity/FromState/FromZip/FromCountry and To...; the sandbox knows only countries."""
    params: dict[str, str] = {}
    for prefix, number in (("From", from_), ("To", to)):
        params.update({f"{prefix}City": "", f"{prefix}State": "", f"{prefix}Zip": ""})
        params[f"{prefix}Country"] = country_of(number)
    return params


def inbound_params(
    *,
    message_sid: str,
    account_sid: str,
    from_: str,
    to: str,
    body: str,
    media: Sequence[Media] = (),
    messaging_service_sid: str | None = None,
) -> dict[str, str]:
    """The form Twilio POSTs to a number's SmsUrl for an incoming SMS or MMS."""
    params = {
        "MessageSid": message_sid,
        "SmsSid": message_sid,
        "SmsMessageSid": message_sid,
        "AccountSid": account_sid,
        "From": from_,
        "To": to,
        "Body": body,
        "NumMedia": str(len(media)),
        "NumSegments": str(segments(body)),
        "SmsStatus": "received",
        "ApiVersion": API_VERSION,
        **geo_params(from_, to),
    }
    if messaging_service_sid:
        params["MessagingServiceSid"] = messaging_service_sid
    for index, item in enumerate(media):
        params[f"MediaUrl{index}"] = item.url
        params[f"MediaContentType{index}"] = item.content_type
    return params


def status_params(
    *,
    message_sid: str,
    account_sid: str,
    from_: str,
    to: str,
    status: str,
    error_code: int | None = None,
    messaging_service_sid: str | None = None,
) -> dict[str, str]:
    """The form Twilio POSTs to a message's StatusCallback when its status changes."""
    params = {
        "MessageSid": message_sid,
        "SmsSid": message_sid,
        "MessageStatus": status,
        "SmsStatus": status,
        "AccountSid": account_sid,
        "From": from_,
        "To": to,
        "ApiVersion": API_VERSION,
    }
    if messaging_service_sid:
        params["MessagingServiceSid"] = messaging_service_sid
    if error_code is not None and status in ("failed", "undelivered"):
        params["ErrorCode"] = str(error_code)
    return params


def messages_from(
    document: twiml.Document, *, default_to: str, default_from: str
) -> list[OutboundMessage]:
    """The <Message>/<Sms> verbs of a document as messages; to/from default to the exchange."""
    messages = []
    for verb in document.verbs:
        if verb.name == "Redirect":
            break  # verbs after a <Redirect> are never reached
        if verb.name not in ("Message", "Sms"):
            continue
        body = verb.text or " ".join(c.text for c in verb.children if c.name == "Body")
        media = tuple(
            twiml.resolve(document.url, c.text) for c in verb.children if c.name == "Media"
        )
        if not body and not media:
            continue  # 14103 was already reported as a warning; Twilio sends nothing
        callback = verb.get("statusCallback")
        messages.append(
            OutboundMessage(
                to=verb.get("to") or default_to,
                from_=verb.get("from") or default_from,
                body=body,
                media_urls=media,
                status_callback=twiml.resolve(document.url, callback) if callback else None,
            )
        )
    return messages


def reply(client: WebhookClient, hook: Hook, params: Mapping[str, str]) -> Reply:
    """Fetch the reply to an inbound message, following <Redirect>, as Twilio does."""
    sender, number = params["From"], params["To"]
    messages: list[OutboundMessage] = []
    notices: list[Notice] = []
    current: Hook | None = hook
    for _ in range(MAX_DOCUMENTS):
        if current is None:
            break
        try:
            fetched = client.fetch_twiml(current, params, "messaging")
        except TwilioFailure as exc:
            return Reply(tuple(messages), (*notices, *exc.earlier, exc.notice))
        notices.extend(fetched.notices)
        document = fetched.document
        messages += messages_from(document, default_to=sender, default_from=number)
        current = _redirect(document)
    else:
        if current is not None:
            notices.append(Notice(14106, f"more than {MAX_DOCUMENTS} documents", current.url))
    if len(messages) > MAX_REPLIES:
        notices.append(Notice(14109, f"{len(messages)} replies; only {MAX_REPLIES} sent"))
        messages = messages[:MAX_REPLIES]
    return Reply(tuple(messages), tuple(notices))


def _redirect(document: twiml.Document) -> Hook | None:
    # Twilio runs the verbs in order; a <Redirect> ends this document and fetches the next.
    for verb in document.verbs:
        if verb.name == "Redirect":
            return Hook(twiml.resolve(document.url, verb.text), twiml.method_of(verb))
    return None
