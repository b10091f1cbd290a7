"""The terminal phone's lines: what an app or an API call wrote cannot rewrite the screen."""

from __future__ import annotations

from dialtone.sandbox.phone.view import render, sent

PHONE = "+15555550100"


def test_a_reply_with_escape_sequences_is_shown_escaped_with_its_line_breaks() -> None:
    event = {
        "type": "message",
        "from_": "+15005550006",
        "body": "hi\x1b[2J\nsecond line\u202e",
        "media_urls": ["https://example.com/a\x1b]0;title\x07.jpg"],
        "time": 0,
    }
    line = render(event, PHONE)
    assert line is not None
    assert "\x1b" not in line.plain
    assert "\\x1b[2J" in line.plain
    assert "\\u202e" in line.plain
    assert "hi\\x1b[2J\nsecond line" in line.plain  # the reply's own line break is kept


def test_the_phones_own_text_is_escaped_too() -> None:
    line = sent("+15005550006", "look\x1b[31m", media=True)
    assert "\x1b" not in line.plain
    assert line.plain.endswith("you → +15005550006: look\\x1b[31m 📎")
