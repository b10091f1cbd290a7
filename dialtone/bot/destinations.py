"""Where Dialtone may send a text or place a call: the one policy every outbound path asks.

POST /send_sms, POST /make_call, the voice menu's option 3 text, and anything added later call
`check_destination` before anything reaches Twilio. In order:

1. The address must be a possible phone number: E.164 (or whatsapp: + E.164, messages only) of
   a length its calling code allows (`+12` is refused).
2. With ALLOWED_DESTINATIONS set, only those addresses pass; the operator listed them on purpose,
   so a listed number in a denied range passes too.
3. Without it, numbers starting with one of DENIED_PREFIXES (premium rate, satellite and
   international networks, calling codes abused for revenue-share fraud: see
   dialtone.phone_numbers.DEFAULT_DENIED_PREFIXES) are refused, unless
   ALLOW_HIGH_RISK_DESTINATIONS is on.

Twilio's geographic permissions (Console > Voice/Messaging > Geo permissions) are the second line:
keep every country you do not need switched off there too.
"""

from __future__ import annotations

from dataclasses import dataclass

from dialtone.phone_numbers import WHATSAPP_PREFIX, compact_number, denied_prefix, is_possible
from dialtone.settings import Settings


@dataclass(frozen=True)
class Refusal:
    """Why a destination is refused: `status` 400 (not a number) or 403 (the policy)."""

    status: int
    message: str


def check_destination(to: object, settings: Settings, *, calls: bool = False) -> Refusal | None:
    """None when `to` may be texted (or called, with `calls`), else why not."""
    if to is None:
        return Refusal(400, '"to" is required: the number, like "+15551234567".')
    if not isinstance(to, str):
        return Refusal(
            400,
            '"to" must be a string holding the number, like "+15551234567" (a JSON number '
            "cannot hold the +).",
        )
    if not is_possible(to):
        compact = compact_number(to)
        if compact is not None and compact != to and is_possible(compact):
            return Refusal(
                400, f'"to" must be written without spaces, dashes, dots or brackets: "{compact}".'
            )
        return Refusal(
            400,
            '"to" must be a possible phone number in E.164 form like +15551234567, '
            "or whatsapp:+15551234567.",
        )
    if calls and to.startswith(WHATSAPP_PREFIX):
        return Refusal(
            400, '"to" must be an E.164 number like +15551234567; calls cannot go to WhatsApp.'
        )
    if settings.allowed_destinations:
        if to in settings.allowed_destinations:
            return None
        return Refusal(403, f"{to} is not in ALLOWED_DESTINATIONS.")
    prefix = denied_prefix(to, settings.denied_prefixes)
    if prefix and not settings.allow_high_risk_destinations:
        return Refusal(
            403,
            f"{to} is in {prefix}, a premium-rate or high-risk range (DENIED_PREFIXES). To reach "
            "it on purpose, list it in ALLOWED_DESTINATIONS or set "
            "ALLOW_HIGH_RISK_DESTINATIONS=true.",
        )
    return None
