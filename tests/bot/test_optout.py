"""Carrier keywords: matched as Twilio matches them, answered with Twilio-like replies."""

from __future__ import annotations

from pathlib import Path

import pytest

from dialtone.bot import optout
from dialtone.bot.optout import Keyword
from dialtone.facts import HELP_KEYWORDS, OPT_IN_KEYWORDS, OPT_OUT_KEYWORDS, carrier_keyword
from dialtone.record.store import Store
from tests.conftest import CALLER, PHONE_NUMBER


@pytest.mark.parametrize(
    "word", ["STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"]
)
def test_opt_out_words(word: str) -> None:
    assert carrier_keyword(word) is Keyword.OPT_OUT


@pytest.mark.parametrize("word", ["START", "YES", "UNSTOP"])
def test_opt_in_words(word: str) -> None:
    assert carrier_keyword(word) is Keyword.OPT_IN


@pytest.mark.parametrize("word", ["HELP", "INFO"])
def test_help_words(word: str) -> None:
    assert carrier_keyword(word) is Keyword.HELP


@pytest.mark.parametrize("body", ["stop", "Stop", "  STOP  ", "\tstop\n", "\u00a0sToP\u00a0"])
def test_case_and_surrounding_whitespace_do_not_matter(body: str) -> None:
    assert carrier_keyword(body) is Keyword.OPT_OUT


@pytest.mark.parametrize(
    "body",
    [
        "",
        None,
        "   ",
        "STOP PLEASE",
        "please stop",
        "STOP.",
        "STOP!",
        "S TOP",
        "stopp",
        "helpme",
        "yes please",
        "\u017ftop",  # the long s upper-cases to S in Python; it is not Twilio's STOP
        "\uff33\uff34\uff2f\uff30",  # full-width STOP
        "STOP" * 100,
    ],
)
def test_anything_else_is_an_ordinary_message(body: str | None) -> None:
    assert carrier_keyword(body) is None
    assert optout.answer(body) is None


def test_answers_carry_the_state_to_record_and_the_reply() -> None:
    stop = optout.answer(" stop ")
    assert stop is not None
    assert (stop.keyword, stop.word, stop.opted_out) == (Keyword.OPT_OUT, "STOP", True)
    assert stop.reply == optout.DEFAULT_OPT_OUT_REPLY
    assert "START" in stop.reply

    start = optout.answer("Unstop")
    assert start is not None
    assert (start.keyword, start.word, start.opted_out) == (Keyword.OPT_IN, "UNSTOP", False)
    assert start.reply == optout.DEFAULT_OPT_IN_REPLY


def test_help_reply_comes_from_the_caller_and_changes_nothing() -> None:
    helped = optout.answer("info", help_reply="Dialtone demo: text anything. STOP to opt out.")
    assert helped is not None
    assert helped.keyword is Keyword.HELP
    assert helped.opted_out is None
    assert helped.reply == "Dialtone demo: text anything. STOP to opt out."
    default = optout.answer("HELP")
    assert default is not None
    assert default.reply == optout.DEFAULT_HELP_REPLY


def test_replies_can_be_replaced() -> None:
    stop = optout.answer("quit", opt_out_reply="Bye.", opt_in_reply="Hi again.")
    start = optout.answer("yes", opt_out_reply="Bye.", opt_in_reply="Hi again.")
    assert stop is not None
    assert start is not None
    assert (stop.reply, start.reply) == ("Bye.", "Hi again.")


def test_word_lists_do_not_overlap() -> None:
    assert not OPT_OUT_KEYWORDS & OPT_IN_KEYWORDS
    assert not OPT_OUT_KEYWORDS & HELP_KEYWORDS
    assert not OPT_IN_KEYWORDS & HELP_KEYWORDS


def test_recording_a_keyword_message_sets_the_opt_out(tmp_path: Path) -> None:
    # The way routes/sms.py is meant to use the two modules together.
    with Store(tmp_path / "dialtone.db") as store:
        for sid, body in (("SM1", "STOP"), ("SM2", "help"), ("SM3", "start"), ("SM4", "END")):
            form = {"MessageSid": sid, "From": CALLER, "To": PHONE_NUMBER, "Body": body}
            found = optout.answer(form["Body"])
            assert found is not None
            store.record_inbound_message(
                form, f"t-{sid}", opted_out=found.opted_out, keyword=found.word
            )
            expected = {"SM1": True, "SM2": True, "SM3": False, "SM4": True}[sid]
            assert store.is_opted_out(CALLER) is expected
        [entry] = store.opt_outs()
        assert entry.keyword == "END"
