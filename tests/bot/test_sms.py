"""POST /sms_url: signed texts and MMS answered from the rules file, as parsed TwiML."""

from __future__ import annotations

import logging
import os
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest
import webtest

import dialtone.bot.sms
from dialtone.app import create_app
from dialtone.bot.rules import MAX_REPLY_CHARS, RulesError, twilio_length
from dialtone.errors import DialtoneError
from dialtone.settings import Settings
from tests.conftest import CALLER
from tests.support.forms import inbound_sms as text

Post = Callable[..., webtest.TestResponse]

RULES = """
help = "Workshop bot. Reply STOP to opt out."
default = 'You said: "{body}"'
empty = "Say something!"
[keywords]
hours = "Open 9 to 5."
"good morning" = "Morning, {from}!"
"""


@pytest.fixture
def rules_path(tmp_path: Path) -> Path:
    path = tmp_path / "rules.toml"
    path.write_text(RULES, encoding="utf-8")
    return path


@pytest.fixture
def settings(settings: Settings, rules_path: Path) -> Settings:
    """The shared test settings, answering from this module's rules file."""
    return settings.with_overrides(rules_file=rules_path)


def mms(body: str, *types: str) -> dict[str, str]:
    """An inbound MMS webhook form with one MediaUrlN/MediaContentTypeN pair per type."""
    media = {}
    for i, kind in enumerate(types):
        media[f"MediaUrl{i}"] = (
            f"https://api.twilio.com/2010-04-01/Accounts/AC/Messages/MM/Media/ME{i}"
        )
        media[f"MediaContentType{i}"] = kind
    return text(body, NumMedia=str(len(types)), **media)


def messages(response: webtest.TestResponse) -> list[str]:
    """The texts of the <Message> verbs in a TwiML answer (asserting it is a <Response>)."""
    assert response.status_int == 200
    assert response.content_type == "text/xml"
    root = ET.fromstring(response.body)
    assert root.tag == "Response"
    assert all(child.tag == "Message" for child in root)
    return [child.text or "" for child in root]


def write(path: Path, content: str, bump: int) -> None:
    path.write_text(content, encoding="utf-8")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + bump * 1_000_000_000))


@pytest.mark.parametrize(
    "body", ["hours", "HOURS", "  Hours ", "ho urs", "Hours?", "\uff28\uff2f\uff35\uff32\uff33"]
)
def test_a_keyword_in_any_case_and_spacing_is_answered(post_webhook: Post, body: str) -> None:
    assert messages(post_webhook("/sms_url", text(body))) == ["Open 9 to 5."]


def test_a_reply_can_use_the_senders_number(post_webhook: Post) -> None:
    assert messages(post_webhook("/sms_url", text("GOOD  MORNING"))) == [f"Morning, {CALLER}!"]


@pytest.mark.parametrize(
    "body",
    [
        "what are your hours",
        "{body} {from} {0} {{x}} %s %(body)s",
        "Hello 👋🏽 from the 👨‍👩‍👧",
        "你好\uff0c世界",
        "こんにちは",
        "مرحبا، كيف حالك؟",
        "שלום",
        "<b>&amp;</b> ]]>",
    ],
)
def test_the_default_reply_echoes_the_senders_words(post_webhook: Post, body: str) -> None:
    assert messages(post_webhook("/sms_url", text(body))) == [f'You said: "{body}"']


def test_help_gets_the_help_text(post_webhook: Post) -> None:
    assert messages(post_webhook("/sms_url", text("Help"))) == [
        "Workshop bot. Reply STOP to opt out."
    ]


def test_stop_gets_no_auto_reply(post_webhook: Post) -> None:
    assert messages(post_webhook("/sms_url", text("STOP"))) == []


def test_an_empty_body_is_answered(post_webhook: Post) -> None:
    assert messages(post_webhook("/sms_url", text(""))) == ["Say something!"]


def test_a_missing_body_is_answered_like_an_empty_one(post_webhook: Post) -> None:
    form = text("")
    del form["Body"]
    assert messages(post_webhook("/sms_url", form)) == ["Say something!"]


@pytest.mark.parametrize("char", ["x", "ж", "字", "🎉"])
def test_a_1600_character_body_gets_a_reply_within_the_limit(post_webhook: Post, char: str) -> None:
    [reply] = messages(post_webhook("/sms_url", text(char * 1600)))
    assert twilio_length(reply) <= MAX_REPLY_CHARS
    assert reply.startswith(f'You said: "{char}{char}')
    assert reply.endswith('…"')


def test_mms_with_one_attachment_is_acknowledged(post_webhook: Post) -> None:
    assert messages(post_webhook("/sms_url", mms("", "image/jpeg"))) == [
        "Thanks for the 1 attachment (image/jpeg)."
    ]


def test_mms_with_three_attachments_and_a_body(post_webhook: Post) -> None:
    form = mms("hours", "image/jpeg", "video/mp4", "audio/amr")
    assert messages(post_webhook("/sms_url", form)) == [
        "Thanks for the 3 attachments (image/jpeg, video/mp4, audio/amr). Open 9 to 5."
    ]


@pytest.mark.parametrize("num_media", ["two", "-1", "11", "1e3"])
def test_a_malformed_num_media_is_400(post_webhook: Post, num_media: str) -> None:
    reply = post_webhook("/sms_url", text("hi", NumMedia=num_media), status=400)
    assert "NumMedia" in reply.text
    assert "Traceback" not in reply.text


def test_an_edit_to_the_rules_file_takes_effect_on_the_next_text(
    post_webhook: Post, rules_path: Path
) -> None:
    assert messages(post_webhook("/sms_url", text("hours"))) == ["Open 9 to 5."]
    write(rules_path, RULES.replace("Open 9 to 5.", "Open 8 to 4."), 5)
    assert messages(post_webhook("/sms_url", text("hours"))) == ["Open 8 to 4."]


def test_a_broken_edit_keeps_answering_with_the_old_rules(
    post_webhook: Post, rules_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write(rules_path, RULES + "joke = \n", 5)
    with caplog.at_level(logging.ERROR, logger="dialtone.bot.rules"):
        assert messages(post_webhook("/sms_url", text("hours"))) == ["Open 9 to 5."]
    assert str(rules_path) in caplog.text
    assert "not valid TOML" in caplog.text


def test_a_broken_rules_file_at_start_up_is_a_clear_error(
    settings: Settings, rules_path: Path
) -> None:
    rules_path.write_text('help = "h"\ndefault = "Hi {name}"\n', encoding="utf-8")
    with pytest.raises(RulesError) as caught:
        create_app(settings)
    assert isinstance(caught.value, DialtoneError)
    assert str(rules_path) in str(caught.value)
    assert "unknown placeholder {name}" in str(caught.value)


def test_a_missing_rules_file_at_start_up_is_a_clear_error(
    settings: Settings, tmp_path: Path
) -> None:
    with pytest.raises(RulesError, match="no such file"):
        create_app(settings.with_overrides(rules_file=tmp_path / "missing.toml"))


def test_an_error_in_the_handler_answers_no_reply_and_logs_the_traceback(
    post_webhook: Post, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("rules exploded")

    monkeypatch.setattr(dialtone.bot.sms, "auto_reply", broken)
    with caplog.at_level(logging.ERROR, logger="dialtone.routes"):
        assert messages(post_webhook("/sms_url", text("hours"))) == []
    assert "rules exploded" in caplog.text
    assert "Traceback" in caplog.text


def test_unsigned_is_403(app: webtest.TestApp) -> None:
    app.post("/sms_url", text("hours"), status=403)


def test_signed_for_another_url_is_403(post_webhook: Post) -> None:
    post_webhook("/sms_url", text("hours"), url="https://evil.example.com/sms_url", status=403)


def test_get_is_405(app: webtest.TestApp) -> None:
    app.get("/sms_url", status=405)
