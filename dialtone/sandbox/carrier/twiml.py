"""Parse a TwiML document into verbs and check it the way Twilio does, for voice or messaging.

Structure problems stop the document, as they stop a call on Twilio: XML that does not parse
(12100), a root that is not <Response> (12102), an unknown verb or a verb in the wrong place
(12200). Bad attribute values are Twilio *warnings*: they are collected on the document with the
verb's own code (13313 for a bad <Gather timeout>, ...) and the executor uses the default instead.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urljoin, urlsplit

from dialtone.sandbox.carrier.webhook_errors import ERRORS, Notice, failure

Kind = Literal["voice", "messaging"]

MAX_QUEUE_NAME = 64  # Twilio's limit on a queue's FriendlyName

# Which elements may appear where. Twilio's nesting rules from its TwiML reference: Gather holds
# Say, Play and Pause; Dial holds its nouns; Enqueue holds Task; Say holds SSML; Message holds
# Body and Media. Verbs listed in OPAQUE are known but not emulated: their insides are not checked.
SSML = frozenset(
    {"break", "emphasis", "lang", "p", "phoneme", "prosody", "s", "say-as", "sub", "w"}
    | {"amazon:effect", "amazon:domain"}
)
VOICE_VERBS = frozenset(
    {"Say", "Play", "Pause", "Gather", "Record", "Dial", "Redirect", "Hangup", "Reject"}
    | {"Enqueue", "Leave", "Sms", "Message", "Connect", "Start", "Stop", "Pay", "Refer", "Echo"}
    | {"Prompt"}
)
VOICE_CHILDREN: dict[str, frozenset[str]] = {
    "Response": VOICE_VERBS,
    "Gather": frozenset({"Say", "Play", "Pause"}),
    "Dial": frozenset(
        {"Number", "Client", "Queue", "Sip", "Conference", "Sim", "Application", "WhatsApp"}
    ),
    "Enqueue": frozenset({"Task"}),
    "Say": SSML,
    "Message": frozenset({"Body", "Media"}),
}
MESSAGING_CHILDREN: dict[str, frozenset[str]] = {
    "Response": frozenset({"Message", "Redirect", "Sms"}),
    "Message": frozenset({"Body", "Media"}),
}
OPAQUE = frozenset(
    {"Connect", "Start", "Stop", "Pay", "Refer", "Prompt", "Client", "Conference", "Sip"}
    | {"Application", "Sim", "WhatsApp", "Task"}
    | SSML
)
NESTING_CODES = {"Gather": 13320, "Dial": 13215}  # Twilio's verb-specific codes, named in messages


@dataclass(frozen=True)
class Verb:
    """One TwiML element: its name, attributes, text (SSML flattened) and nested elements."""

    name: str
    attrs: Mapping[str, str] = field(default_factory=dict)
    text: str = ""
    children: tuple[Verb, ...] = ()

    def get(self, name: str, default: str = "") -> str:
        """An attribute's value, or `default`."""
        return self.attrs.get(name, default)


@dataclass(frozen=True)
class Document:
    """A parsed, checked TwiML document; `warnings` are the attribute problems Twilio would log."""

    kind: Kind
    verbs: tuple[Verb, ...]
    url: str | None = None
    warnings: tuple[Notice, ...] = ()


def parse(body: str | bytes, kind: Kind, url: str | None = None) -> Document:
    """Parse and check a TwiML document; raises TwilioFailure for 12100, 12102 and 12200."""
    root = _parse_xml(body, url)
    if root.tag != "Response":
        raise failure(12102, f"the root element is <{root.tag}>, not <Response>", url)
    rules = VOICE_CHILDREN if kind == "voice" else MESSAGING_CHILDREN
    verbs = tuple(_convert(child, "Response", rules, url) for child in root)
    if (root.text or "").strip() or any((child.tail or "").strip() for child in root):
        raise failure(12200, "text directly inside <Response>; put it in a verb", url)
    warnings: list[Notice] = []
    for verb in verbs:
        _check_attrs(verb, None, warnings, url)
    return Document(kind=kind, verbs=verbs, url=url, warnings=tuple(warnings))


def _parse_xml(body: str | bytes, url: str | None) -> ET.Element:
    # ElementTree never fetches external entities, Python's expat (>= 2.4.1) refuses entity
    # amplification, and the webhook client caps bodies at 64 kB, so untrusted input is fine.
    try:
        return ET.fromstring(body)  # noqa: S314
    except ET.ParseError as exc:
        raise failure(12100, f"the document is not well-formed XML: {exc}", url) from None


def _convert(
    element: ET.Element, parent: str, rules: dict[str, frozenset[str]], url: str | None
) -> Verb:
    name = element.tag
    allowed = rules.get(parent, frozenset())
    if name not in allowed and parent not in OPAQUE:
        raise failure(12200, _misplaced(name, parent, allowed), url)
    children = tuple(_convert(child, name, rules, url) for child in element)
    if name == "Say" or name in SSML:
        text = " ".join("".join(element.itertext()).split())
    else:
        text = (element.text or "").strip()
        if name not in OPAQUE and any((child.tail or "").strip() for child in element):
            raise failure(12200, f"text between the elements inside <{name}>", url)
    return Verb(name=name, attrs=dict(element.attrib), text=text, children=children)


def _misplaced(name: str, parent: str, allowed: frozenset[str]) -> str:
    if parent == "Response":
        where = f"<{name}> is not a TwiML verb here"
    else:
        where = f"<{name}> cannot be nested in <{parent}>"
    code = NESTING_CODES.get(parent)
    also = f" (Twilio also logs {code}: {ERRORS[code]})" if code else ""
    expected = ", ".join(sorted(allowed)) if allowed else "nothing"
    return f"{where}; expected one of: {expected}{also}"


# --- attribute checks -----------------------------------------------------------------------

Check = Callable[[str], bool]
DIGITS = set("0123456789#*")


def _int(minimum: int) -> Check:
    return lambda value: value.strip().isdigit() and int(value) >= minimum


def _one_of(*values: str) -> Check:
    return lambda value: value.lower() in values


def is_url(value: str) -> bool:
    """True for an absolute http(s) URL or a relative one (resolved against the document)."""
    value = value.strip()
    if not value or any(ch.isspace() for ch in value):
        return False
    parts = urlsplit(urljoin("https://base.invalid/", value))
    return parts.scheme in ("http", "https") and bool(parts.hostname)


METHOD = _one_of("get", "post")
BOOL = _one_of("true", "false")
POSITIVE = _int(1)
NON_NEGATIVE = _int(0)
DIAL_RECORD = ["true", "false", "do-not-record", "record-from-answer", "record-from-ringing"]
DIAL_RECORD += ["record-from-answer-dual", "record-from-ringing-dual"]

# (verb, attribute) -> (check, code). Codes are Twilio's; 12200 where it has no specific one.
ATTRIBUTE_CHECKS: dict[tuple[str, str], tuple[Check, int]] = {
    ("Say", "loop"): (NON_NEGATIVE, 13510),
    ("Play", "loop"): (NON_NEGATIVE, 13410),
    ("Pause", "length"): (POSITIVE, 13910),
    ("Gather", "finishOnKey"): (lambda v: v == "" or (len(v) == 1 and v in DIGITS), 13310),
    ("Gather", "method"): (METHOD, 13312),
    ("Gather", "timeout"): (POSITIVE, 13313),
    ("Gather", "numDigits"): (POSITIVE, 13314),
    ("Gather", "input"): (lambda v: set(v.lower().split()) <= {"dtmf", "speech"}, 13326),
    ("Gather", "action"): (is_url, 11100),
    ("Gather", "actionOnEmptyResult"): (BOOL, 13338),
    ("Record", "method"): (METHOD, 13610),
    ("Record", "timeout"): (NON_NEGATIVE, 13611),
    ("Record", "maxLength"): (POSITIVE, 13612),
    ("Record", "finishOnKey"): (lambda v: set(v) <= DIGITS, 13613),
    ("Record", "transcribe"): (BOOL, 13614),
    ("Record", "playBeep"): (BOOL, 13616),
    ("Record", "action"): (is_url, 11100),
    ("Dial", "method"): (METHOD, 13210),
    ("Dial", "timeout"): (POSITIVE, 13212),
    ("Dial", "hangupOnStar"): (BOOL, 13213),
    ("Dial", "timeLimit"): (POSITIVE, 13216),
    ("Dial", "action"): (is_url, 11100),
    ("Dial", "record"): (_one_of(*DIAL_RECORD), 13217),
    ("Number", "method"): (METHOD, 13221),
    ("Number", "sendDigits"): (lambda v: set(v.lower()) <= DIGITS | {"w"}, 13222),
    ("Redirect", "method"): (METHOD, 13710),
    ("Reject", "reason"): (_one_of("rejected", "busy"), 12200),
    ("Enqueue", "method"): (METHOD, 14201),
    ("Enqueue", "waitUrl"): (is_url, 14202),
    ("Enqueue", "action"): (is_url, 14203),
    ("Enqueue", "waitUrlMethod"): (METHOD, 14206),
    ("Message", "method"): (METHOD, 14104),
    ("Message", "statusCallback"): (is_url, 14105),
    ("Message", "action"): (is_url, 11100),
    ("Sms", "method"): (METHOD, 14104),
    ("Sms", "statusCallback"): (is_url, 14105),
    ("Sms", "action"): (is_url, 11100),
}
PHONE_LIKE = re.compile(r"^\+?[0-9][0-9 ()\-.]{1,20}$")
ADDRESS = re.compile(r"^(\+?[0-9]{2,15}|whatsapp:\+[0-9]{2,15}|[A-Za-z0-9]{1,11})$")


def _check_attrs(verb: Verb, parent: str | None, out: list[Notice], url: str | None) -> None:
    for attr, value in verb.attrs.items():
        check = ATTRIBUTE_CHECKS.get((verb.name, attr))
        if check and not check[0](value):
            code = 13322 if (parent, verb.name, attr) == ("Gather", "Say", "loop") else check[1]
            out.append(_warning(code, f'<{verb.name} {attr}="{value}"> is not valid', url))
    for code, message in _content_problems(verb, parent):
        out.append(_warning(code, message, url))
    for child in verb.children:
        _check_attrs(child, verb.name, out, url)


def _content_problems(verb: Verb, parent: str | None) -> list[tuple[int, str]]:
    name, text = verb.name, verb.text
    problems: list[tuple[int, str]] = []
    if name == "Say" and not text:
        problems.append((13520, "<Say> has no text to speak"))
    if name == "Play" and not text and verb.get("digits"):
        pass  # <Play digits="..."> sends DTMF tones: no URL needed
    elif name in ("Play", "Redirect") and not is_url(text):
        problems.append((11100, f"<{name}> needs a URL, got {text!r}"))
    if name == "Number" and not PHONE_LIKE.match(text):
        problems.append((13223, f"<Number>{text}</Number> is not a phone number"))
    if name == "Dial" and not verb.children and text and not PHONE_LIKE.match(text):
        problems.append((13223, f"<Dial>{text}</Dial> is not a phone number"))
    if name in ("Enqueue", "Queue"):
        short, long_ = (14204, 14205) if name == "Enqueue" else (14212, 14213)
        if not text and not (name == "Enqueue" and verb.children):
            problems.append((short, f"<{name}> needs a queue name"))
        elif len(text) > MAX_QUEUE_NAME:
            problems.append((long_, f"queue name longer than {MAX_QUEUE_NAME} characters"))
    if name in ("Message", "Sms"):
        for attr, code in (("to", 14101), ("from", 14102)):
            value = verb.get(attr)
            if attr in verb.attrs and not ADDRESS.match(value.replace(" ", "")):
                problems.append((code, f'<{name} {attr}="{value}"> is not a phone number'))
        if not _message_has_content(verb):
            problems.append((14103, f"<{name}> has neither a body nor media"))
    if name == "Media" and not is_url(text):
        problems.append((11100, f"<Media> needs a URL, got {text!r}"))
    return problems


def _message_has_content(verb: Verb) -> bool:
    if verb.text:
        return True
    return any(child.text for child in verb.children if child.name in ("Body", "Media"))


def _warning(code: int, message: str, url: str | None) -> Notice:
    return Notice(code, message, url, fatal=False)


def resolve(base: str | None, target: str) -> str:
    """`target` (absolute or relative) resolved against the document's URL, as Twilio does."""
    return urljoin(base or "", target.strip())


def method_of(verb: Verb, attr: str = "method", default: str = "POST") -> str:
    """The verb's HTTP method, upper-cased; the default when absent or invalid."""
    value = verb.get(attr).upper()
    return value if value in ("GET", "POST") else default


def int_attr(verb: Verb, attr: str, default: int, minimum: int = 1) -> int:
    """An integer attribute, or `default` when absent or invalid (Twilio's behaviour on 13xxx)."""
    value = verb.get(attr).strip()
    return int(value) if value.isdigit() and int(value) >= minimum else default


def bool_attr(verb: Verb, attr: str, default: bool) -> bool:
    """A true/false attribute, or `default` when absent or invalid."""
    value = verb.get(attr).lower()
    return value == "true" if value in ("true", "false") else default
