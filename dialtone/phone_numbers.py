"""Phone-number and address checks shared by settings, the outbound API and the sandbox."""

from __future__ import annotations

import re
import unicodedata

# E.164: a plus, a non-zero country digit, at most 15 digits in all.
E164_RE = re.compile(r"\+[1-9][0-9]{1,14}")
WHATSAPP_PREFIX = "whatsapp:"


# A number as people write it: digits, a leading +, spaces, dots, brackets and any dash.
_SEPARATORS = r"\s().\-\u2010-\u2015\u2212"
_WRITTEN_RE = re.compile(rf"\+?[0-9{_SEPARATORS}]+")  # one pass: no nested repeats
LONGEST_WRITTEN = 64  # characters; far more than any number written with separators


def compact_number(written: str) -> str | None:
    """A number as people write it ("+1 (555) 123-4567", no-break spaces, full-width digits,
    any dash) without its separators: "+15551234567"; None for what is not one (sip:, a name,
    no digit at all, or longer than LONGEST_WRITTEN)."""
    if len(written) > LONGEST_WRITTEN:
        return None
    text = unicodedata.normalize("NFKC", written)
    if not _WRITTEN_RE.fullmatch(text):
        return None
    compact = "".join(ch for ch in text if ch == "+" or (ch.isascii() and ch.isdigit()))
    return compact if compact.lstrip("+") else None


def is_e164(value: str) -> bool:
    """True for an E.164 number such as +15551234567."""
    return E164_RE.fullmatch(value) is not None


def is_destination(value: str) -> bool:
    """True for something Twilio can message or call: E.164, or whatsapp: followed by E.164."""
    if value.startswith(WHATSAPP_PREFIX):
        return is_e164(value[len(WHATSAPP_PREFIX) :])
    return is_e164(value)


def is_possible(value: str) -> bool:
    """True for an E.164 number (or whatsapp: one) of a length its country's numbers can have.

    `+12` is E.164 in form but no phone anywhere; the `phonenumbers` library (Google's
    libphonenumber metadata, the lite build) knows each calling code's number lengths. Imported
    here, on first use, so what never checks a destination (the sandbox) never loads it.
    """
    if not is_destination(value):
        return False
    import phonenumbers

    number = value.removeprefix(WHATSAPP_PREFIX)
    try:
        return bool(phonenumbers.is_possible_number(phonenumbers.parse(number, None)))
    except phonenumbers.NumberParseException:
        return False


# Destinations refused unless ALLOWED_DESTINATIONS lists them or ALLOW_HIGH_RISK_DESTINATIONS is
# on (the DENIED_PREFIXES default; docs/security.md says where the list comes from). Premium
# rate and international ranges that toll fraud (International Revenue Share Fraud, SMS
# pumping) pays out through, which a small bot almost never needs to reach.
DEFAULT_DENIED_PREFIXES: tuple[str, ...] = (
    # North American premium rate (pay-per-call) services.
    "+1900",
    "+1976",
    # Caribbean NANP area codes named in "one ring" / callback scam warnings: they look like
    # US numbers but are billed internationally.
    "+1268",  # Antigua and Barbuda
    "+1284",  # British Virgin Islands
    "+1473",  # Grenada
    "+1649",  # Turks and Caicos
    "+1664",  # Montserrat
    "+1767",  # Dominica
    "+1809",  # Dominican Republic
    "+1829",  # Dominican Republic
    "+1849",  # Dominican Republic
    "+1876",  # Jamaica
    # International networks and services without a country: satellite, shared-cost, premium.
    "+808",  # international shared cost service
    "+870",  # Inmarsat
    "+881",  # global mobile satellite systems
    "+882",  # international networks
    "+883",  # international networks
    "+979",  # international premium rate service
    # Calling codes most often named as IRSF destinations (small networks, high termination
    # rates, numbers leased to fraud operators).
    "+53",  # Cuba
    "+220",  # Gambia
    "+224",  # Guinea
    "+232",  # Sierra Leone
    "+235",  # Chad
    "+239",  # Sao Tome and Principe
    "+245",  # Guinea-Bissau
    "+246",  # Diego Garcia
    "+247",  # Ascension
    "+252",  # Somalia
    "+269",  # Comoros
    "+290",  # Saint Helena
    "+291",  # Eritrea
    "+500",  # Falkland Islands
    "+670",  # Timor-Leste
    "+674",  # Nauru
    "+675",  # Papua New Guinea
    "+677",  # Solomon Islands
    "+678",  # Vanuatu
    "+682",  # Cook Islands
    "+683",  # Niue
    "+686",  # Kiribati
    "+688",  # Tuvalu
    "+690",  # Tokelau
    "+691",  # Micronesia
    "+692",  # Marshall Islands
    "+850",  # North Korea
)


def denied_prefix(value: str, prefixes: tuple[str, ...] | frozenset[str]) -> str | None:
    """The longest of `prefixes` that the number (or whatsapp: number) starts with, or None."""
    number = value.removeprefix(WHATSAPP_PREFIX)
    matches = [prefix for prefix in prefixes if number.startswith(prefix)]
    return max(matches, key=len) if matches else None
