"""SMS auto-reply rules: a small TOML file of keywords and replies, re-read when it changes.

`RulesFile(path)` loads and validates the file (a `RulesError` naming the file and every problem)
and `RulesFile.current()` returns the `Rules` in force, re-reading the file when its mtime or size
changed; a broken edit is logged loudly and the last good rules stay in use. `Rules.reply()` turns
an inbound text (and its media types) into the reply, or None for no reply. The file format is
documented in the example `rules.toml` at the repository root.

Matching: the whole text is compared with each keyword after `normalize_keyword()` (NFKC, case
folded, every space removed, punctuation trimmed from both ends), so "  Hours ", "HOURS", "ho urs",
"hours?" and full-width letters all match `hours`; a text that merely contains a keyword does not.

Substitution is our own: a template is split into literal text and placeholders once, at load
time, and the sender's words are only ever inserted as values, so `{`, `}` or `%` in a text can
neither break nor inject anything.
"""

from __future__ import annotations

import logging
import os
import string
import threading
import tomllib
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dialtone.errors import DialtoneError
from dialtone.facts import (
    HELP_KEYWORDS,
    MAX_BODY_CHARS,
    OPT_IN_KEYWORDS,
    OPT_OUT_KEYWORDS,
    carrier_keyword,
    clean,
    twilio_length,
)

log = logging.getLogger("dialtone.bot.rules")

# Twilio refuses a message body over 1,600 characters (error 21617). Length is counted in UTF-16
# code units (an emoji counts twice), which is how Twilio sizes segments and never undercounts.
MAX_REPLY_CHARS = MAX_BODY_CHARS
ELLIPSIS = "…"

# Words carriers and Twilio treat specially (dialtone.facts), as normalize_keyword() leaves them.
# HELP words get the `help` reply; opt-out and opt-in words as carrier keywords (the bare word)
# are never auto-answered from the rules (Twilio, and the opt-out record, answer them); none of
# them can be a rules keyword.
HELP_WORDS = frozenset(word.casefold() for word in HELP_KEYWORDS)
OPT_OUT_WORDS = frozenset(word.casefold() for word in OPT_OUT_KEYWORDS)
OPT_IN_WORDS = frozenset(word.casefold() for word in OPT_IN_KEYWORDS)
RESERVED_WORDS = HELP_WORDS | OPT_OUT_WORDS | OPT_IN_WORDS

# "Stop." or "QUIT!" is not an opt-out (Twilio acts only on the bare word), yet its sender
# plainly wants one: rather than stay silent and leave them opted in, say what works.
# ("yes." and other near opt-in words are ordinary texts.)
NEAR_OPT_OUT_REPLY = "To stop texts from this number, reply STOP on its own."
NEAR_OPT_OUT = "\x00near opt-out"  # keyword_for's answer for one (never a rules keyword)

# Placeholders each kind of reply may use.
TEXT_PLACEHOLDERS = ("body", "from")
MEDIA_PLACEHOLDERS = ("count", "attachments", "types", "from")

DEFAULT_MEDIA = "Thanks for the {attachments} ({types})."
TOP_LEVEL_KEYS = ("help", "default", "empty", "media", "keywords")

# Invisible characters that are spaces in all but name (NFKC keeps them, str.isspace() says no).
_INVISIBLE_SPACES = dict.fromkeys(map(ord, "\u200b\u2060\ufeff"))


class RulesError(DialtoneError):
    """The rules file is missing, is not valid TOML, or says something Dialtone cannot use."""

    def __init__(self, path: Path | str, problems: Iterable[str]) -> None:
        self.path = Path(path)
        self.problems = list(problems)
        lines = "\n".join(f"  - {problem}" for problem in self.problems)
        super().__init__(
            f"The SMS rules file {self.path} has {len(self.problems)} problem(s) "
            f"(RULES_FILE chooses the file; rules.toml in the repository shows the format):\n"
            f"{lines}"
        )


def normalize_keyword(text: str) -> str:
    """A text or keyword as it is compared: NFKC, case-folded, no spaces, no edge punctuation."""
    text = unicodedata.normalize("NFKC", text).casefold().translate(_INVISIBLE_SPACES)
    text = "".join(text.split())
    start, end = 0, len(text)
    while start < end and unicodedata.category(text[start]).startswith("P"):
        start += 1
    while end > start and unicodedata.category(text[end - 1]).startswith("P"):
        end -= 1
    return text[start:end]


def truncate(text: str, limit: int) -> str:
    """`text` cut to at most `limit` UTF-16 code units, ending in "…" when it was cut."""
    if twilio_length(text) <= limit:
        return text
    if limit <= 0:
        return ""
    # Cut on a code point (errors="ignore" drops half a surrogate pair), and don't leave a
    # dangling joiner or space before the ellipsis.
    head = text.encode("utf-16-le")[: (limit - 1) * 2].decode("utf-16-le", errors="ignore")
    return head.rstrip().rstrip("\u200d\ufe0f\ufe0e") + ELLIPSIS


@dataclass(frozen=True)
class Template:
    """A reply with placeholders, parsed once: literal text and names, alternately."""

    source: str
    literals: tuple[str, ...]  # one more than names: literal, name, literal, name, ..., literal
    names: tuple[str, ...]

    @classmethod
    def parse(cls, source: str, allowed: Iterable[str]) -> Template:
        """Parse `source`; ValueError saying what is wrong (an unknown placeholder, a lone brace)."""
        allowed = tuple(allowed)
        known = ", ".join("{" + name + "}" for name in allowed)
        literals: list[str] = []
        names: list[str] = []
        pending = ""
        try:
            parsed = list(string.Formatter().parse(source))
        except ValueError as exc:
            raise ValueError(f"{exc} (write {{{{ or }}}} for a literal brace)") from None
        for literal, name, spec, conversion in parsed:
            pending += literal
            if name is None:
                continue
            if name not in allowed or spec or conversion:
                shown = "{" + name + (f"!{conversion}" if conversion else "")
                shown += (f":{spec}" if spec else "") + "}"
                raise ValueError(
                    f"unknown placeholder {shown}; this reply can use {known} "
                    f"(write {{{{ or }}}} for a literal brace)"
                )
            literals.append(pending)
            names.append(name)
            pending = ""
        literals.append(pending)
        return cls(source, tuple(literals), tuple(names))

    @property
    def fixed_length(self) -> int:
        """The length of the literal text, without any values."""
        return sum(twilio_length(part) for part in self.literals)

    def render(
        self, values: Mapping[str, str], limit: int = MAX_REPLY_CHARS, *, shrink: str = "body"
    ) -> str:
        """Fill in `values`, shortening the `shrink` value (then the whole) to fit `limit`."""
        values = {name: clean(values.get(name, "")) for name in self.names}
        uses = self.names.count(shrink)
        if uses:
            others = sum(twilio_length(values[name]) for name in self.names if name != shrink)
            budget = (limit - self.fixed_length - others) // uses
            values[shrink] = truncate(values[shrink], max(budget, 0))
        parts = [self.literals[0]]
        for name, literal in zip(self.names, self.literals[1:], strict=True):
            parts += [values[name], literal]
        return truncate("".join(parts), limit)


@dataclass(frozen=True)
class Rules:
    """A validated rules file: keyword replies, the help, default, empty and media replies."""

    keywords: Mapping[str, Template]  # normalized keyword -> reply
    help: Template
    default: Template
    empty: Template
    media: Template
    source: Path = field(default=Path("rules.toml"))
    spelled: Mapping[str, str] = field(default_factory=dict)  # normalized -> as in the file

    def keyword_for(self, body: str) -> str | None:
        """The normalized keyword `body` matches: "help" for any HELP word, a carrier's opt-out
        or opt-in keyword itself, NEAR_OPT_OUT for an opt-out word that is not the bare word
        ("Stop."), a rules keyword; None for anything else (near opt-in words too)."""
        word = normalize_keyword(body)
        if word in HELP_WORDS:
            return "help"
        if word in OPT_OUT_WORDS or word in OPT_IN_WORDS:
            if carrier_keyword(body) is not None:
                return word
            return NEAR_OPT_OUT if word in OPT_OUT_WORDS else None
        return word if word in self.keywords else None

    def text_reply(self, body: str, *, sender: str = "", limit: int = MAX_REPLY_CHARS) -> str:
        """The reply to a text (keyword, help, empty or default); "" means no reply."""
        return self._text_reply(body, self.keyword_for(body), sender, limit)

    def _text_reply(self, body: str, word: str | None, sender: str, limit: int) -> str:
        # `word` is keyword_for(body), worked out once per text by the caller.
        if not body.strip():
            template = self.empty
        else:
            if word in OPT_OUT_WORDS or word in OPT_IN_WORDS:
                return ""  # the carrier's keyword: Twilio (and the record) answer it
            if word == NEAR_OPT_OUT:
                return truncate(NEAR_OPT_OUT_REPLY, limit)
            template = self.help if word == "help" else self.keywords.get(word or "", self.default)
        return template.render({"body": body.strip(), "from": sender}, limit)

    def media_reply(
        self, media_types: Iterable[str], *, sender: str = "", limit: int = MAX_REPLY_CHARS
    ) -> str:
        """The acknowledgement of MMS media: "Thanks for the 2 attachments (image/jpeg, ...)"."""
        types = [kind.strip() or "unknown type" for kind in media_types]
        count = len(types)
        values = {
            "count": str(count),
            "attachments": f"{count} attachment" + ("" if count == 1 else "s"),
            "types": ", ".join(types),
            "from": sender,
        }
        return self.media.render(values, limit, shrink="types")

    def reply(self, body: str, *, sender: str = "", media_types: Iterable[str] = ()) -> str | None:
        """The whole reply to an inbound message, within Twilio's limit; None for no reply."""
        types = list(media_types)
        word = self.keyword_for(body)
        if word in OPT_OUT_WORDS or word in OPT_IN_WORDS:
            return None  # opt-out words get nothing but the carrier's (or the record's) answer
        if not types:
            return self._text_reply(body, word, sender, MAX_REPLY_CHARS) or None
        ack = self.media_reply(types, sender=sender)
        if not body.strip():
            return ack or None
        # The acknowledgement first, then the text reply in the room that is left.
        room = MAX_REPLY_CHARS - twilio_length(ack) - 1
        text = self._text_reply(body, word, sender, room) if room > 0 else ""
        return " ".join(part for part in (ack, text) if part) or None


def parse_rules(text: str, source: Path | str = "rules.toml") -> Rules:
    """Validate the TOML `text` of a rules file; RulesError listing every problem."""
    path = Path(source)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(path, [f"not valid TOML: {exc}"]) from None
    problems: list[str] = []

    def template(key: str, value: object, allowed: Iterable[str]) -> Template:
        if not isinstance(value, str):
            problems.append(
                f"{key}: a reply must be a string in quotes, not {_kind(value)} ({value!r:.60})"
            )
            return Template.parse("", ())
        try:
            parsed = Template.parse(value, allowed)
        except ValueError as exc:
            problems.append(f"{key}: {exc}")
            return Template.parse("", ())
        if parsed.fixed_length > MAX_REPLY_CHARS:
            problems.append(
                f"{key}: the reply is {parsed.fixed_length} characters; "
                f"Twilio's limit is {MAX_REPLY_CHARS}"
            )
        return parsed

    for key in data:
        if key not in TOP_LEVEL_KEYS:
            problems.append(
                f"unknown setting {key!r}; a rules file has {', '.join(TOP_LEVEL_KEYS)} "
                "(keywords go under [keywords])"
            )
    for key in ("help", "default"):
        if key not in data:
            problems.append(f"{key}: missing; every rules file needs a {key} reply")
    help_reply = template("help", data.get("help", ""), TEXT_PLACEHOLDERS)
    if "help" in data and isinstance(data["help"], str) and not data["help"].strip():
        problems.append("help: must not be empty; carriers expect an answer to HELP")
    default = template("default", data.get("default", ""), TEXT_PLACEHOLDERS)
    empty = template("empty", data["empty"], TEXT_PLACEHOLDERS) if "empty" in data else help_reply
    media = template("media", data.get("media", DEFAULT_MEDIA), MEDIA_PLACEHOLDERS)

    keywords: dict[str, Template] = {}
    spelled: dict[str, str] = {}
    table = data.get("keywords", {})
    if not isinstance(table, dict):
        problems.append(
            f"keywords: must be a [keywords] table of keyword = reply, not {_kind(table)}"
        )
        table = {}
    for keyword, value in table.items():
        name = f"keywords.{_toml_key(keyword)}"
        word = normalize_keyword(keyword)
        if not word:
            problems.append(f"{name}: a keyword needs at least one letter, digit or symbol")
        elif word in RESERVED_WORDS:
            problems.append(f"{name}: {_reserved_reason(word)}")
        elif word in keywords:
            problems.append(
                f"{name}: the same keyword as {_toml_key(spelled[word])!s} once case, spaces "
                "and punctuation are ignored"
            )
        reply = template(name, value, TEXT_PLACEHOLDERS)
        if word and word not in RESERVED_WORDS and word not in keywords:
            keywords[word] = reply
            spelled[word] = keyword
    if problems:
        raise RulesError(path, problems)
    return Rules(keywords, help_reply, default, empty, media, path, spelled)


def load_rules(path: Path | str) -> Rules:
    """Read and validate the rules file at `path`; RulesError if it is missing or wrong."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise RulesError(path, [f"no such file (looked for {path.resolve()})"]) from None
    except OSError as exc:
        raise RulesError(path, [f"cannot be read: {exc.strerror or exc}"]) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RulesError(path, [f"is not UTF-8 text (byte {exc.start})"]) from None
    return parse_rules(text, path)


class RulesFile:
    """The rules in force, re-read from `path` whenever the file changes on disk."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp = self._stat()
        self._rules = load_rules(self.path)  # a broken file at start-up is a RulesError
        self.last_error: RulesError | None = None
        log.info("SMS rules from %s: %s", self.path, _summary(self._rules))

    def current(self) -> Rules:
        """The rules to answer with: re-read if the file changed, the last good ones if broken."""
        if self._stat() == self._stamp:  # one stat() per text: cheap
            return self._rules
        with self._lock:
            stamp = self._stat()
            if stamp != self._stamp:
                self._stamp = stamp  # a broken version is reported once, not on every text
                self._reload()
        return self._rules

    def _reload(self) -> None:
        try:
            rules = load_rules(self.path)
        except RulesError as exc:
            self.last_error = exc
            log.error("%s\nStill answering with the last good rules until the file is fixed.", exc)
            return
        self._rules, self.last_error = rules, None
        log.info("Reloaded SMS rules from %s: %s", self.path, _summary(rules))

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            info = os.stat(self.path)
        except OSError:
            return None
        return (info.st_mtime_ns, info.st_size, info.st_ino)


def _summary(rules: Rules) -> str:
    words = sorted(rules.spelled.get(word, word) for word in rules.keywords)
    return f"{len(words)} keyword(s)" + (f": {', '.join(words)}" if words else "")


def _kind(value: object) -> str:
    names = {
        bool: "true/false",
        int: "a number",
        float: "a number",
        list: "a list",
        dict: "a table",
    }
    return names.get(type(value), f"a {type(value).__name__}")


def _toml_key(key: str) -> str:
    bare = key and all(ch.isascii() and (ch.isalnum() or ch in "-_") for ch in key)
    return key if bare else '"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _reserved_reason(word: str) -> str:
    if word in HELP_WORDS:
        return f'{word.upper()} is answered by the top-level help reply; set help = "..." instead'
    return (
        f"{word.upper()} is an opt-out/opt-in word that carriers and Twilio handle; "
        "it cannot be a keyword"
    )
