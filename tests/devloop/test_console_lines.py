"""make dev's webhook lines: they fit the terminal, shortening the Body rather than wrapping."""

from __future__ import annotations

import io
import logging

import pytest
from rich.console import Console

from dialtone.devloop.console import (
    Banner,
    RequestLogHandler,
    dev_console,
    render_banner,
    render_request,
)
from dialtone.web.accesslog import RequestRecord

LONG = "hello there, this is a long message that goes on and on and on"


@pytest.mark.parametrize("width", [72, 80, 100])
def test_a_long_body_is_shortened_to_fit_the_terminal(width: int) -> None:
    record = RequestRecord("POST", "/sms_url", 200, 1.4, {"from": "+15555550100", "body": LONG})
    line = render_request(record, 0, width).plain
    assert len(line) <= width
    assert line.endswith(" 200 1.4ms")  # the status is never the part that goes
    assert "'hello" in line


def test_without_a_width_the_body_keeps_its_50_characters() -> None:
    record = RequestRecord("POST", "/sms_url", 200, 1.4, {"from": "+15555550100", "body": LONG})
    assert "'hello there, this is a long message that goes o...'" in render_request(record).plain


def test_in_a_file_or_a_pipe_each_request_and_message_stays_one_line() -> None:
    # make dev > dev.log: rich's width there is 80 columns, which used to break lines in two.
    out = io.StringIO()
    handler = RequestLogHandler(dev_console(out))
    record = RequestRecord(
        "POST",
        "/voice_url/menu",
        200,
        1.3,
        {"from": "+15555550100", "digits": "1", "status": "in-progress"},
    )
    handler.emit(logging.makeLogRecord({"msg": "request", "request": record}))
    handler.emit(logging.makeLogRecord({"msg": "x" * 120, "levelno": logging.WARNING}))
    lines = out.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert lines[0].endswith(" 200 1.3ms")
    assert lines[1] == "x" * 120


def test_the_banner_shows_the_app_once_when_webhooks_reach_it_directly() -> None:
    def shown(public_url: str) -> str:
        out = io.StringIO()
        banner = Banner("sandbox", public_url, None, "http://127.0.0.1:5000")
        Console(file=out, width=120).print(render_banner(banner))
        return out.getvalue()

    direct = shown("http://127.0.0.1:5000")
    assert "Public URL" not in direct
    assert "http://127.0.0.1:5000 (webhooks come here directly)" in direct
    tunnelled = shown("https://abc.ngrok.app")
    assert "Public URL" in tunnelled
    assert "https://abc.ngrok.app" in tunnelled
