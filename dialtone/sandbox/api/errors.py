"""The errors the sandbox's REST API answers a bad request with: Twilio's 2xxxx codes.

These are HTTP answers to the app's REST requests. What the carrier reports when the app's
webhook or TwiML fails (11xxx-14xxx, shown to the phone) is in `webhook_errors.py`.

Each code was looked up on https://www.twilio.com/docs/errors/<code>; the comment says when Twilio
uses it. An error answer is Twilio's JSON body `{code, message, more_info, status}`, which the
twilio library turns into `TwilioRestException(status, uri, msg, code)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dialtone import facts

MORE_INFO = "https://www.twilio.com/docs/errors/{code}"

# Generic "400: Bad Request": the request is invalid in a way no more specific code covers.
BAD_REQUEST = 400
# "Permission Denied": wrong Account SID / Auth Token pair, or another account's SID in the path.
AUTHENTICATE = facts.AUTHENTICATION_FAILED
# "Not Found": the SID (or the path) names no resource on this account.
NOT_FOUND = 20404
# Calls: "No 'To' number specified" when creating a call.
CALL_TO_REQUIRED = 21201
# Calls: "Invalid URL": Url is missing ("Url parameter is required") or not a valid URL.
CALL_URL_INVALID = 21205
# Calls: "'From' phone number not verified": From is not a number on (or verified for) the account.
CALL_FROM_NOT_VERIFIED = 21210
# Calls and Messages: "Invalid 'To' Phone Number".
INVALID_TO = 21211
# Calls: "'From' phone number is required" (Caller phone number is required).
CALL_FROM_REQUIRED = 21213
# Calls: "Invalid ApplicationSid": the application does not exist on the account.
CALL_APPLICATION_INVALID = 21218
# Calls: "Invalid call state": a redirect of a call that is not queued, ringing or in progress.
CALL_NOT_IN_PROGRESS = 21220
# IncomingPhoneNumbers: "Invalid Url" when updating a number's URL handlers.
NUMBER_URL_INVALID = 21402
# Messages: "Message body is required": neither Body nor MediaUrl.
BODY_REQUIRED = 21602
# Messages: "A 'From' or 'MessagingServiceSid' parameter is required to send a message".
FROM_REQUIRED = 21603
# Messages: "'To' phone number is required to send a Message".
TO_REQUIRED = 21604
# Messages: "The 'From' phone number provided is not a valid message-capable Twilio phone number".
FROM_NOT_OURS = 21606
# Messages: "Permission to send an SMS has not been enabled for the region indicated by the 'To'
# number" (the account's geographic permissions).
NO_INTERNATIONAL_PERMISSION = 21408
# Messages: "Attempt to send to unsubscribed recipient": the recipient texted STOP to this From
# (or it is the "blocked" magic test number).
UNSUBSCRIBED = facts.UNSUBSCRIBED_RECIPIENT
# Messages: "The 'To' phone number is not currently reachable via SMS".
UNREACHABLE_TO = 21612
# Messages: "'To' number is not a valid mobile number" (a landline cannot receive SMS).
NOT_MOBILE = 21614
# Messages: "Invalid 'StatusCallback'": not a valid URL.
INVALID_STATUS_CALLBACK = 21609
# Messages: "The concatenated message body exceeds the 1600 character limit".
BODY_TOO_LONG = facts.BODY_TOO_LONG


@dataclass
class TwilioError(Exception):
    """An error the sandbox answers with Twilio's JSON error body."""

    status: int
    code: int
    message: str

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"

    def body(self) -> dict[str, Any]:
        """Twilio's error body."""
        return {
            "code": self.code,
            "message": self.message,
            "more_info": MORE_INFO.format(code=self.code),
            "status": self.status,
        }


def bad_request(code: int, message: str) -> TwilioError:
    """A 400 with a Twilio error code."""
    return TwilioError(400, code, message)


def not_found(path: str) -> TwilioError:
    """Twilio's 404 for a SID or path it does not know, worded as Twilio words it."""
    return TwilioError(404, NOT_FOUND, f"The requested resource {path} was not found")


def authenticate() -> TwilioError:
    """Twilio's 401 for missing or wrong credentials."""
    return TwilioError(401, AUTHENTICATE, "Authenticate")


# Twilio's magic To numbers for Messages (Twilio's "Test Credentials" page, "Test SMS messages"):
# with test credentials, a message to one of these is refused with this code, nothing sent. The
# sandbox answers them the same way (its account behaves like a test account).
MAGIC_TO: dict[str, tuple[int, str]] = {
    "+15005550001": (INVALID_TO, "The 'To' number {to} is not a valid phone number."),
    "+15005550002": (
        UNREACHABLE_TO,
        "The 'To' phone number {to} is not currently reachable via SMS.",
    ),
    "+15005550003": (
        NO_INTERNATIONAL_PERMISSION,
        "Permission to send an SMS has not been enabled for the region indicated by the 'To' "
        "number: {to}.",
    ),
    "+15005550004": (UNSUBSCRIBED, "Attempt to send to unsubscribed recipient {to}."),
    "+15005550009": (NOT_MOBILE, "The 'To' number {to} is not a valid mobile number."),
}


def magic_to(to: str) -> TwilioError | None:
    """The error Twilio answers a message to one of its magic To numbers with, or None."""
    found = MAGIC_TO.get(to)
    if found is None:
        return None
    code, message = found
    return bad_request(code, message.format(to=to))
