"""TwiML as people read it: pretty-printed, as plain steps, and what changed between two answers.

steps('<Response><Gather numDigits="1" action="/voice_url/menu"><Say>Hi</Say></Gather>'
      '</Response>')
-> ["Gather 1 key, then /voice_url/menu", "  Say 'Hi'"]
"""

from __future__ import annotations

import difflib
import xml.etree.ElementTree as ET
from collections.abc import Callable

SHORT = 80


def parse(text: str) -> ET.Element | None:
    """The TwiML document's root, or None if `text` is not XML (or not TwiML)."""
    if "<Response" not in text:
        return None
    try:
        root = ET.fromstring(text.encode("utf-8"))  # noqa: S314 (the app's own answer, local)
    except ET.ParseError:
        return None
    return root if root.tag == "Response" else None


def pretty(text: str) -> str:
    """The TwiML indented two spaces a level; `text` unchanged if it is not TwiML."""
    root = parse(text)
    if root is None:
        return text
    ET.indent(root)
    return ET.tostring(root, encoding="unicode")


def steps(text: str) -> list[str]:
    """What the TwiML does, one plain line per verb (nested verbs indented)."""
    root = parse(text)
    if root is None:
        return []
    lines: list[str] = []
    for verb in root:
        _describe(verb, lines, "")
    if not lines:
        lines.append("Nothing (an empty <Response/>)")
    return lines


def _describe(verb: ET.Element, lines: list[str], indent: str) -> None:
    describe = _VERBS.get(verb.tag, _other)
    lines.append(indent + describe(verb))
    for child in verb:
        if child.tag in _VERBS or len(child) or (child.text or "").strip():
            _describe(child, lines, indent + "  ")


def _text(verb: ET.Element) -> str:
    text = " ".join((verb.text or "").split())
    return text if len(text) <= SHORT else text[: SHORT - 3] + "..."


def _then(verb: ET.Element, default: str = "") -> str:
    action = verb.get("action") or default
    return f", then {action}" if action else ""


def _say(verb: ET.Element) -> str:
    return f"Say '{_text(verb)}'"


def _play(verb: ET.Element) -> str:
    loop = verb.get("loop")
    times = f" {loop} times" if loop and loop != "1" else ""
    return f"Play {_text(verb) or '(no URL)'}{times}"


def _pause(verb: ET.Element) -> str:
    return f"Pause {verb.get('length', '1')} s"


def _gather(verb: ET.Element) -> str:
    digits = verb.get("numDigits")
    if digits:
        keys = f"{digits} key" + ("" if digits == "1" else "s")
    else:
        keys = f"keys until {verb.get('finishOnKey', '#') or 'a pause'}"
    inputs = verb.get("input", "dtmf")
    what = keys if "dtmf" in inputs else "speech"
    return f"Gather {what}{_then(verb, '(this URL again)')}"


def _record(verb: ET.Element) -> str:
    limit = verb.get("maxLength", "3600")
    return f"Record up to {limit} s{_then(verb, '(this URL again)')}"


def _dial(verb: ET.Element) -> str:
    target = _text(verb) or ", ".join(_text(child) or child.tag for child in verb) or "(nobody)"
    return f"Dial {target}{_then(verb)}"


def _message(verb: ET.Element) -> str:
    body = verb.find("Body")
    text = _text(body) if body is not None else _text(verb)
    to = f" to {verb.get('to')}" if verb.get("to") else ""
    media = [_text(m) for m in verb.findall("Media")]
    attached = f" with {', '.join(media)}" if media else ""
    return f"Text '{text}'{to}{attached}"


def _redirect(verb: ET.Element) -> str:
    return f"Redirect to {_text(verb)}"


def _hangup(verb: ET.Element) -> str:
    return "Hang up"


def _reject(verb: ET.Element) -> str:
    return f"Reject ({verb.get('reason', 'rejected')})"


def _other(verb: ET.Element) -> str:
    text = _text(verb)
    return f"{verb.tag} {text}".rstrip()


_VERBS: dict[str, Callable[[ET.Element], str]] = {
    "Say": _say,
    "Play": _play,
    "Pause": _pause,
    "Gather": _gather,
    "Record": _record,
    "Dial": _dial,
    "Message": _message,
    "Redirect": _redirect,
    "Hangup": _hangup,
    "Reject": _reject,
}


def changes(old: list[str], new: list[str]) -> list[str]:
    """The lines that differ, `- old` and `+ new` (empty when the same)."""
    return [
        line
        for line in difflib.ndiff(old, new)
        if line.startswith(("- ", "+ ")) and line[2:].strip()
    ]
