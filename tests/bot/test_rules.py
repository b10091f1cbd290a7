"""The SMS rules file: format, validation, matching, safe substitution, length, reloading."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from dialtone import facts
from dialtone.bot.rules import (
    MAX_REPLY_CHARS,
    NEAR_OPT_OUT_REPLY,
    Rules,
    RulesError,
    RulesFile,
    load_rules,
    normalize_keyword,
    parse_rules,
    truncate,
    twilio_length,
)
from dialtone.errors import DialtoneError

FULLWIDTH_HOURS = "\uff28\uff2f\uff35\uff32\uff33"  # HOURS in full-width letters
REPO_RULES = Path(__file__).resolve().parents[2] / "rules.toml"

RULES = """
help = "Help text. Reply STOP to opt out."
default = 'You said: "{body}"'
[keywords]
hours = "Open 9 to 5."
"good morning" = "Morning, {from}!"
"""


def rules(text: str = RULES) -> Rules:
    return parse_rules(text, "test-rules.toml")


def problems_of(text: str) -> str:
    with pytest.raises(RulesError) as caught:
        parse_rules(text, "broken.toml")
    assert "broken.toml" in str(caught.value)
    return str(caught.value)


# --- the example file ---------------------------------------------------------------------


def test_the_example_rules_file_is_valid_and_answers() -> None:
    example = load_rules(REPO_RULES)
    assert "Monday" in (example.reply("hours") or "")
    assert "STOP" in (example.reply("HELP") or "")
    assert example.reply("what's up?") == 'You said: "what\'s up?". Text HELP to see what I can do.'
    assert example.reply("", media_types=["image/jpeg", "video/mp4"]) == (
        "Thanks for the 2 attachments (image/jpeg, video/mp4)."
    )


# --- matching ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["hours", "HOURS", "  Hours ", "ho urs", "H o U r S", "hours?", "¡hours!", "\thours\n",
     FULLWIDTH_HOURS, "hours\u3000", "ho\u200burs"],
)  # fmt: skip
def test_keywords_match_in_any_case_and_spacing(text: str) -> None:
    assert rules().reply(text) == "Open 9 to 5."


def test_keywords_with_spaces_match_however_they_are_spaced() -> None:
    for text in ("good morning", "GOOD   MORNING", "goodmorning", "Good Morning!"):
        assert rules().reply(text, sender="+15557654321") == "Morning, +15557654321!"


def test_a_text_that_only_contains_a_keyword_gets_the_default() -> None:
    assert rules().reply("what are your hours") == 'You said: "what are your hours"'


def test_normalize_keyword() -> None:
    assert normalize_keyword("  Good  Morning!! ") == "goodmorning"
    assert normalize_keyword("STRASSE") == normalize_keyword("straße")
    assert normalize_keyword("?!") == ""
    assert normalize_keyword("👋") == "👋"


@pytest.mark.parametrize("text", ["help", "HELP", " Help? ", "info", "INFO"])
def test_help_and_info_get_the_help_reply(text: str) -> None:
    assert rules().reply(text) == "Help text. Reply STOP to opt out."


@pytest.mark.parametrize(
    "text", ["STOP", "stop", "Unsubscribe", "quit", "revoke", "OptOut", "START", "yes", "unstop"]
)
def test_opt_out_and_opt_in_words_are_never_auto_answered(text: str) -> None:
    assert rules().reply(text) is None
    assert rules().reply(text, media_types=["image/jpeg"]) is None
    assert rules().keyword_for(text) == normalize_keyword(text)


@pytest.mark.parametrize("text", ["stop.", "Stop!", "QUIT.", "s t o p", "\uff33\uff34\uff2f\uff30"])
def test_a_near_opt_out_word_is_told_what_works(text: str) -> None:
    # Not a carrier keyword (Twilio acts on the bare word only), so nobody else answers it, and
    # the sender stays opted in: say how to opt out instead of staying silent.
    assert facts.carrier_keyword(text) is None
    assert rules().reply(text) == NEAR_OPT_OUT_REPLY
    reply = rules().reply(text, media_types=["image/jpeg"])
    assert reply is not None
    assert reply.endswith(NEAR_OPT_OUT_REPLY)


@pytest.mark.parametrize("text", ["yes.", "Start!", "unstop?"])
def test_a_near_opt_in_word_is_an_ordinary_text(text: str) -> None:
    assert rules().reply(text) == f'You said: "{text}"'  # the default reply


def test_keyword_for_names_the_rule() -> None:
    assert rules().keyword_for(" HOURS ") == "hours"
    assert rules().keyword_for("Info") == "help"
    assert rules().keyword_for("anything else") is None


# --- substitution ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        "{body}",
        "{from} {0} {} {{ }} {body.__class__}",
        "%s %d %(body)s %%",
        "}{",
        "Emoji 👋🏽 and 👨‍👩‍👧 family",
        "中文短信\uff0c你好\uff01",
        "مرحبا بالعالم",
        "שלום עולם",
        "<Message>&amp;</Message>",
    ],
)
def test_default_reply_echoes_the_senders_words_exactly(body: str) -> None:
    assert rules().reply(body, sender="+1555") == f'You said: "{body}"'


def test_double_braces_are_literal_braces() -> None:
    custom = rules('help = "h"\ndefault = "{{body}} is {body}"')
    assert custom.reply("x") == "{body} is x"


def test_characters_xml_cannot_carry_are_dropped_from_the_echo() -> None:
    assert rules().reply("a\x00b\x1bc\ufffe") == 'You said: "abc"'


def test_an_empty_reply_means_no_reply() -> None:
    quiet = rules('help = "h"\ndefault = ""')
    assert quiet.reply("anything") is None


def test_an_empty_text_gets_the_empty_reply_or_the_help() -> None:
    assert rules().reply("") == "Help text. Reply STOP to opt out."
    assert rules().reply("   ") == "Help text. Reply STOP to opt out."
    custom = rules('help = "h"\ndefault = "d"\nempty = "Nothing to say?"')
    assert custom.reply("") == "Nothing to say?"


# --- length ------------------------------------------------------------------------------------


@pytest.mark.parametrize("char", ["a", "é", "中", "😀"])
def test_a_1600_character_echo_stays_within_twilios_limit(char: str) -> None:
    reply = rules().reply(char * 1600) or ""
    assert twilio_length(reply) <= MAX_REPLY_CHARS
    assert reply.startswith('You said: "' + char)
    assert reply.endswith('…"')  # the sender's words were shortened, the template kept
    assert twilio_length(reply) >= MAX_REPLY_CHARS - 1  # and not more than needed


def test_a_short_enough_body_is_not_shortened() -> None:
    body = "b" * (MAX_REPLY_CHARS - len('You said: ""'))
    assert rules().reply(body) == f'You said: "{body}"'


def test_truncate_never_splits_a_surrogate_pair() -> None:
    cut = truncate("a" + "😀" * 10, 5)  # 'a' + 😀 is 3 units; another 😀 would be 5 + ellipsis
    assert cut == "a😀…"
    assert truncate("short", 10) == "short"
    assert truncate("anything", 0) == ""


def test_a_reply_longer_than_the_limit_is_refused_at_load() -> None:
    message = problems_of(f'help = "h"\ndefault = "{"x" * 1601}"')
    assert "1601 characters" in message


# --- MMS ----------------------------------------------------------------------------------------


def test_media_is_acknowledged_with_count_and_types() -> None:
    assert (
        rules().reply("", media_types=["image/jpeg"]) == "Thanks for the 1 attachment (image/jpeg)."
    )
    three = rules().reply("", media_types=["image/jpeg", "image/png", "video/mp4"])
    assert three == "Thanks for the 3 attachments (image/jpeg, image/png, video/mp4)."


def test_media_with_a_body_gets_both_replies() -> None:
    reply = rules().reply("HOURS", media_types=["image/gif", ""])
    assert reply == "Thanks for the 2 attachments (image/gif, unknown type). Open 9 to 5."


def test_media_with_a_1600_character_body_stays_within_the_limit() -> None:
    reply = rules().reply("z" * 1600, media_types=["image/jpeg"] * 10) or ""
    assert twilio_length(reply) <= MAX_REPLY_CHARS
    assert reply.startswith("Thanks for the 10 attachments (image/jpeg,")
    assert reply.endswith('…"')


def test_the_media_reply_can_be_changed() -> None:
    custom = rules(RULES.replace("[keywords]", 'media = "{count} files!"\n[keywords]'))
    assert custom.reply("", media_types=["a/b", "c/d"]) == "2 files!"


# --- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('help = "h"\ndefault = 42', "default: a reply must be a string in quotes, not a number"),
        ('help = "h"\ndefault = "d"\n[keywords]\nhours = ["a"]', "keywords.hours: a reply must"),
        ('help = "h"\ndefault = "Hi {name}"', "unknown placeholder {name}"),
        ('help = "h"\ndefault = "Hi {body!r}"', "unknown placeholder {body!r}"),
        ('help = "h"\ndefault = "Hi {body:>9}"', "unknown placeholder {body:>9}"),
        ('help = "h"\ndefault = "{types}"', "this reply can use {body}, {from}"),
        ('help = "h"\ndefault = "a } b"', "Single '}'"),
        ('help = "h"\ndefault = "a { b"', "literal brace"),
        ('help = "h"\ndefault = "d"\nmedia = "{body}"', "unknown placeholder {body}"),
        ('default = "d"', "help: missing"),
        ('help = "h"', "default: missing"),
        ('help = "  "\ndefault = "d"', "help: must not be empty"),
        ('help = "h"\ndefault = "d"\ndefualt = "x"', "unknown setting 'defualt'"),
        ('help = "h"\ndefault = "d"\nkeywords = "hours"', "keywords: must be a [keywords] table"),
        ('help = "h"\ndefault = "d"\n[keywords]\nstop = "x"', "STOP is an opt-out/opt-in word"),
        ('help = "h"\ndefault = "d"\n[keywords]\nHELP = "x"', "set help = "),
        ('help = "h"\ndefault = "d"\n[keywords]\n"?!" = "x"', "needs at least one letter"),
        ('help = "h"\ndefault = "d"\n[keywords]\nhours = "a"\n"HO URS" = "b"', "same keyword as hours"),
        ('help = "h\ndefault = "d"', "not valid TOML"),
    ],
)  # fmt: skip
def test_invalid_rules_are_a_clear_error(text: str, expected: str) -> None:
    assert expected in problems_of(text)


# Twilio's carrier keywords, spelled out here rather than read from dialtone.facts, so a word
# missing from facts fails this test instead of vanishing from it.
CARRIER_KEYWORDS = [
    *("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"),
    *("START", "YES", "UNSTOP"),
    *("HELP", "INFO"),
]


def test_facts_has_every_carrier_keyword() -> None:
    assert set(CARRIER_KEYWORDS) == facts.CARRIER_KEYWORDS


@pytest.mark.parametrize("word", CARRIER_KEYWORDS)
@pytest.mark.parametrize("spelling", [str.lower, str.upper, str.title])
def test_a_carrier_keyword_is_refused_as_a_rules_keyword(
    word: str, spelling: Callable[[str], str]
) -> None:
    problems = problems_of(f'help = "h"\ndefault = "d"\n[keywords]\n{spelling(word)} = "x"')
    assert f"{word} is" in problems  # named, upper case, whatever the spelling in the file


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(RulesError) as caught:
        parse_rules('default = 1\n[keywords]\nhours = "{nope}"', "broken.toml")
    assert len(caught.value.problems) == 3  # help missing, default not a string, {nope}
    assert isinstance(caught.value, DialtoneError)


def test_toml_syntax_errors_say_where(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text('help = "h"\ndefault = "d"\n[keywords]\nhours = Open 9 to 5\n')
    with pytest.raises(RulesError, match=r"line 4"):
        load_rules(path)


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match="no such file") as caught:
        load_rules(tmp_path / "nope.toml")
    assert str(tmp_path / "nope.toml") in str(caught.value)


def test_a_file_that_is_not_utf8_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_bytes(b'help = "caf\xe9"\ndefault = "d"\n')
    with pytest.raises(RulesError, match="not UTF-8"):
        load_rules(path)


def test_a_utf8_bom_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_bytes(b'\xef\xbb\xbfhelp = "h"\ndefault = "d"\n')
    assert load_rules(path).reply("x") == "d"


# --- reloading -----------------------------------------------------------------------------------


def write(path: Path, text: str, bump: int) -> None:
    """Write the file and move its mtime `bump` seconds on, so even a same-size edit is seen."""
    path.write_text(text, encoding="utf-8")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + bump * 1_000_000_000))


def test_an_edit_takes_effect_on_the_next_text(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    write(path, RULES, 0)
    live = RulesFile(path)
    assert live.current().reply("hours") == "Open 9 to 5."
    write(path, RULES.replace("Open 9 to 5.", "Open 8 to 4."), 5)  # same size: mtime tells
    assert live.current().reply("hours") == "Open 8 to 4."
    write(path, RULES + 'joke = "Knock knock."\n', 10)
    assert live.current().reply("JOKE") == "Knock knock."


def test_a_broken_edit_keeps_the_last_good_rules_and_logs_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "rules.toml"
    write(path, RULES, 0)
    live = RulesFile(path)
    with caplog.at_level(logging.ERROR, logger="dialtone.bot.rules"):
        write(path, RULES.replace("Open 9 to 5.", "Open {when}."), 5)
        assert live.current().reply("hours") == "Open 9 to 5."
        assert live.current().reply("hours") == "Open 9 to 5."
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "unknown placeholder {when}" in errors[0].getMessage()
    assert "last good rules" in errors[0].getMessage()
    assert live.last_error is not None
    write(path, RULES.replace("Open 9 to 5.", "Fixed."), 10)
    assert live.current().reply("hours") == "Fixed."
    assert live.last_error is None


def test_a_deleted_file_keeps_the_last_good_rules(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    write(path, RULES, 0)
    live = RulesFile(path)
    path.unlink()
    assert live.current().reply("hours") == "Open 9 to 5."
    assert live.last_error is not None
    assert "no such file" in str(live.last_error)


def test_a_broken_file_at_start_up_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text('help = "h"\n')
    with pytest.raises(RulesError, match="default: missing"):
        RulesFile(path)


def test_the_start_up_line_names_keywords_as_the_file_spells_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "rules.toml"
    write(path, RULES, 0)
    with caplog.at_level(logging.INFO, logger="dialtone.bot.rules"):
        RulesFile(path)
    assert "2 keyword(s): good morning, hours" in caplog.text
