"""The errors the sandbox's carrier reports about the app's webhooks and TwiML (11xxx-14xxx).

These are notices, as in Twilio's debugger, shown to the phone and logged; they are never an HTTP
answer to the app. The errors the REST API answers a bad request with are in `rest_errors.py`.

Every code below is Twilio's own, from its Error and Warning Dictionary
(https://www.twilio.com/docs/api/errors); none is made up. Problems the sandbox finds that Twilio
has no documented code for (a voice <Redirect> loop, a verb the sandbox does not emulate) are
reported with `code=None` and say so in their message.
"""

from __future__ import annotations

from dataclasses import dataclass

ERRORS: dict[int, str] = {
    # --- Fetching the webhook ---
    11100: "Invalid URL format",  # a webhook, action, <Redirect> or <Play> URL that is not http(s)
    11200: "HTTP retrieval failure",  # the catch-all; Twilio's debugger shows it for 4xx/5xx answers
    11201: "TCP connection timed out",  # no TCP connection within the connect timeout (10 s)
    11202: "TCP connection refused",  # nothing listening on the host and port
    11205: "HTTP connection failure",  # connected, but no complete answer within 15 s in all
    11206: "HTTP protocol violation",  # the answer is not valid HTTP
    11210: "HTTP bad host name",  # the host name does not resolve
    11215: "HTTP too many redirects",  # more than 10 HTTP 3xx in a row
    11220: "SSL/TLS Handshake Error",  # https URL whose TLS handshake failed
    11750: "TwiML response body too large",  # the answer is larger than 64 kB
    # --- Reading the TwiML ---
    12100: "Document parse failure",  # not well-formed XML (or an empty voice answer)
    12102: "The root element must be Response",
    12200: "Schema validation warning",  # unknown verb, verb in the wrong place, bad attribute
    12300: "Invalid Content-Type",  # the answer's Content-Type is neither TwiML, text nor audio
    # --- Voice verbs: attribute values (Twilio logs these as warnings) ---
    13210: "Dial: Invalid method value",
    13212: "Dial: Invalid timeout value",
    13213: "Dial: Invalid hangupOnStar value",
    13215: "Dial: Invalid nested element",
    13216: "Invalid timeLimit value",  # <Dial timeLimit>
    13217: "Dial: Invalid record value",
    13221: "Dial->Number: Invalid method value",
    13222: "Dial->Number: Invalid sendDigits value",
    13223: "Dial: Invalid phone number format",
    13310: "Gather: Invalid finishOnKey value",
    13312: "Gather: Invalid method value",
    13313: "Gather: Invalid timeout value",
    13314: "Gather: Invalid numDigits value",
    13320: "Gather: Invalid nested verb",
    13322: "Gather->Say: Invalid loop value",
    13326: "Gather: Invalid input value",
    13338: "Gather: Invalid actionOnEmptyResult value",
    13410: "Play: Invalid loop value",
    13510: "Say: Invalid loop value",
    13520: "Say: Invalid text",  # empty <Say>
    13610: "Record: Invalid method value",
    13611: "Record: Invalid timeout value",
    13612: "Record: Invalid maxLength value",
    13613: "Record: Invalid finishOnKey value",
    13614: "Record: Invalid transcribe value",
    13616: "Record: playBeep must be true or false",
    13710: "Redirect: Invalid method value",
    13910: "Pause: Invalid length value",
    # --- <Message> / <Sms> ---
    14101: 'Invalid "To" attribute',
    14102: 'Invalid "From" attribute',
    14103: "Invalid Body",  # neither text nor <Media>
    14104: "Invalid Method attribute",
    14105: "Invalid statusCallback attribute",
    14106: "Document retrieval limit reached",  # a messaging reply fetched more than 50 documents
    14109: "TwiML Reply message limit exceeded",  # more than 10 <Message> replies to one message
    # --- <Enqueue> and <Dial><Queue> ---
    14201: "Enqueue: Invalid method value",
    14202: "Enqueue: Invalid waitUrl",
    14203: "Enqueue: Invalid Enqueue action url",
    14204: "Enqueue: Queue name too short",
    14205: "Enqueue: Queue name too long",
    14206: "Enqueue: Invalid waitUrlMethod value",
    14212: "Dial->Queue: queue name too short",
    14213: "Dial->Queue: queue name too long",
}


@dataclass(frozen=True)
class Notice:
    """One problem Twilio would show in its debugger: the code, what happened, and where."""

    code: int | None
    message: str
    url: str | None = None
    fatal: bool = True  # False for Twilio's warnings: the call or reply carries on

    @property
    def title(self) -> str:
        """Twilio's name for the code ("HTTP retrieval failure"), or "Sandbox" without a code."""
        return ERRORS.get(self.code, "Twilio error") if self.code else "Sandbox"

    def __str__(self) -> str:
        where = f" ({self.url})" if self.url else ""
        if not self.code:  # the sandbox's own notice: its title is the label
            return f"{self.title}: {self.message}{where}"
        label = f"{'Error' if self.fatal else 'Warning'} {self.code}"
        return f"{label}: {self.title}: {self.message}{where}"


class TwilioFailure(Exception):
    """A failure Twilio would report with `notice`: the request or document cannot be used."""

    def __init__(self, notice: Notice, earlier: tuple[Notice, ...] = ()) -> None:
        super().__init__(str(notice))
        self.notice = notice
        self.earlier = earlier  # e.g. the primary URL's failure when the fallback failed too
        self.http_status: int | None = None  # the app's HTTP status, for an 11200


def failure(code: int | None, message: str, url: str | None = None) -> TwilioFailure:
    """A TwilioFailure for `code`; a shorthand that keeps raise statements on one line."""
    return TwilioFailure(Notice(code, message, url))
