"""Control characters from outside never reach a log or a terminal raw (issue 9.6): the request
log, every log message, the dev console and `make history` escape them with one function."""

from __future__ import annotations

import http.client
import io
import logging
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

import pytest
from rich.console import Console

from dialtone.app import close_app, create_app
from dialtone.devloop.console import RequestLogHandler, render_request
from dialtone.logs import EscapingFormatter
from dialtone.record.history import show_history
from dialtone.record.store import Store
from dialtone.settings import Settings
from dialtone.untrusted import printable
from dialtone.web.accesslog import AccessLog, RequestRecord
from tests.conftest import AUTH_TOKEN, CALLER, PHONE_NUMBER, PUBLIC_URL
from tests.support.live_server import free_socket, serve_app
from tests.support.twilio_signing import sign

# A forged log line, a screen clear, a window-title change ended by BEL, a bidi override.
HOSTILE = "hi\n2026-01-01 00:00:00 INFO    dialtone.access: forged\r\x1b[2J\x1b]0;pwned\x07\u202e"
RAW = ["\n", "\r", "\x1b", "\x07", "\u202e"]


def assert_escaped(text: str) -> None:
    """No raw control character of HOSTILE in `text`, and its escapes are there to read."""
    for char in RAW:
        assert char not in text, f"raw {char!r} in {text!r}"
    assert "\\x1b[2J" in text
    assert "\\n2026-01-01" in text


def test_printable_escapes_every_control_character() -> None:
    shown = printable(HOSTILE, None)
    assert_escaped(shown)
    assert shown.startswith("hi\\n")
    assert printable("plain +15551234567 é 👋") == "plain +15551234567 é 👋"
    assert len(printable("x" * 1000)) == 200


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    """Everything logged, formatted as `make serve` formats it."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(EscapingFormatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield out
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


@pytest.fixture
def served(settings: Settings) -> Iterator[int]:
    app = create_app(settings)
    sock = free_socket()
    with serve_app(app, settings, sock):
        yield sock.getsockname()[1]
    close_app(app)


def request(port: int, method: str, path: str, body: str = "", **headers: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        conn.request(method, path, body=body.encode(), headers=headers)
        answer = conn.getresponse()
        answer.read()
        return answer.status
    finally:
        conn.close()


class Collect(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__()
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_a_path_with_control_characters_is_one_escaped_request_log_line(
    served: int, log_output: io.StringIO
) -> None:
    path = "/nothing%0a2026-01-01%2000:00:00%20INFO%20forged%0d%1b[2J%1b]0;pwned%07"
    records: list[logging.LogRecord] = []
    collect = Collect(records)
    logging.getLogger("dialtone.access").addHandler(collect)
    try:
        assert request(served, "GET", path) == 404
    finally:
        logging.getLogger("dialtone.access").removeHandler(collect)
    # The structured record make dev renders holds the path escaped too, not only the text line.
    [access] = records
    shown = access.request.path  # type: ignore[attr-defined]
    assert shown.startswith("/nothing\\n2026")
    assert "\x1b" not in shown
    assert "\\x1b[2J" in shown
    lines = [line for line in log_output.getvalue().splitlines() if "dialtone.access" in line]
    assert len(lines) == 1
    line = lines[0]
    assert "\\n2026-01-01" in line
    assert "\\x1b[2J" in line
    assert "\x1b" not in log_output.getvalue()
    assert "\r" not in log_output.getvalue()


def test_a_hostile_webhook_is_escaped_in_the_request_log_and_in_log_messages(
    served: int, log_output: io.StringIO
) -> None:
    form = {
        "CallSid": "CA" + "2" * 32,
        "From": CALLER,
        "To": PHONE_NUMBER,
        "Body": HOSTILE,
        "RecordingUrl": HOSTILE,  # logged by the voice menu's /recorded route
        "RecordingDuration": "3",
    }
    signature = sign(AUTH_TOKEN, PUBLIC_URL + "/voice_url/recorded", form)
    status = request(
        served, "POST", "/voice_url/recorded", urlencode(form), **{"X-Twilio-Signature": signature}
    )
    assert status == 200
    output = log_output.getvalue()
    for char in RAW[1:]:
        assert char not in output
    # Every line is a record's own: none was started by the attacker's newline.
    assert all(line.split(" ")[0] in ("INFO", "WARNING") for line in output.splitlines())
    recording = [line for line in output.splitlines() if "recording from call" in line]
    assert len(recording) == 1
    assert "\\x1b[2J" in recording[0]
    access = [line for line in output.splitlines() if line.startswith("INFO dialtone.access")]
    assert len(access) == 1
    assert "\\n2026" in access[0]


def test_the_dev_console_escapes_what_it_prints() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, color_system="standard", width=300)
    handler = RequestLogHandler(console)
    handler.emit(
        logging.makeLogRecord(
            {"msg": "caller said %s", "args": (HOSTILE,), "levelno": logging.INFO}
        )
    )
    record = RequestRecord("POST", printable("/sms_url\x1b[2J"), 200, 1.0, {"body": HOSTILE})
    console.print(render_request(record))
    text = out.getvalue()
    assert "caller said" in text
    # rich adds its own colour sequences (ESC [ ... m); none of the hostile ones may appear.
    assert "\x1b[2J" not in text
    assert "\x1b]0;" not in text
    assert "\x07" not in text
    assert "\u202e" not in text
    assert "\\x1b[2J" in text


def test_the_dev_console_shows_a_routes_traceback_and_indents_every_line_after_the_first() -> None:
    out = io.StringIO()
    handler = RequestLogHandler(Console(file=out, force_terminal=False, width=300))
    try:
        no_frm: dict[str, str] = {}
        no_frm["Frm"]
    except KeyError:
        failed = logging.makeLogRecord(
            {"msg": "POST /hello failed", "levelno": logging.ERROR, "exc_info": sys.exc_info()}
        )
    handler.emit(failed)
    handler.emit(
        logging.makeLogRecord(
            {"msg": "body %s", "args": ("x\n12:00:00 POST /fake 200",), "levelno": logging.INFO}
        )
    )
    lines = out.getvalue().splitlines()
    assert lines[0] == "POST /hello failed"
    assert "  Traceback (most recent call last):" in lines
    assert "  KeyError: 'Frm'" in lines
    assert "  12:00:00 POST /fake 200" in lines  # cannot pass for a line of its own
    assert all(line.startswith(("POST", "body", "  ")) for line in lines)


def test_make_history_escapes_bodies_numbers_and_media_types(tmp_path: Path) -> None:
    path = tmp_path / "dialtone.db"
    with Store(path, clock=lambda: datetime(2026, 1, 1, tzinfo=UTC)) as store:
        store.record_inbound_message(
            {
                "MessageSid": "SM" + "3" * 32,
                "From": CALLER + "\x1b[2J",
                "To": PHONE_NUMBER,
                "Body": HOSTILE,
                "MediaUrl0": "https://m/1",
                "MediaContentType0": "image/\x1b]0;pwned\x07png",
            }
        )
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, color_system="standard", width=400)
    assert show_history(path, console=console) == 0
    text = out.getvalue()
    assert "\x1b[2J" not in text
    assert "\x1b]0;" not in text
    assert "\x07" not in text
    assert "\u202e" not in text
    assert "\\x1b[2J" in text
    assert "\\x1b]0;pwned" in text


def test_a_traceback_quoting_a_request_keeps_its_lines_but_not_escapes() -> None:
    formatter = EscapingFormatter("%(levelname)s %(message)s")
    try:
        raise ValueError(f"bad body {HOSTILE}")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    text = formatter.format(record)
    assert text.startswith("ERROR failed\nTraceback")
    assert "\x1b" not in text
    assert "\r" not in text
    assert "\\x1b[2J" in text


def test_the_access_line_names_the_client_and_a_forged_one_cannot_pass_for_a_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Through TRUSTED_PROXY, REMOTE_ADDR is the X-Forwarded-For value the proxy passed on.
    def app(environ: dict[str, object], start_response: Callable[..., object]) -> list[bytes]:
        start_response("204 No Content", [])
        return []

    for address, shown in (
        ("203.0.113.5", "203.0.113.5 POST /status 204 "),
        ("1.2.3.4 GET /admin 200", "'1.2.3.4 GET /admin 200' POST /status 204 "),
        ("evil\n2026", "'evil\\\\n2026' POST /status 204 "),
        ("\uff11.\uff12.\uff13.\uff14", "'\uff11.\uff12.\uff13.\uff14' POST /status 204 "),
        ("2001:db8::1", "2001:db8::1 POST /status 204 "),
        ("", "- POST /status 204 "),
    ):
        environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/status", "REMOTE_ADDR": address}
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="dialtone.access"):
            AccessLog(app)(environ, lambda *args: None)
        assert caplog.records[0].getMessage().startswith(shown), caplog.records[0].getMessage()
    # A path with spaces (%20 is decoded) cannot pass for a status and a duration either.
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/x 200 0.1ms", "REMOTE_ADDR": "127.0.0.1"}
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="dialtone.access"):
        AccessLog(app)(environ, lambda *args: None)
    assert caplog.records[0].getMessage().startswith("127.0.0.1 GET '/x 200 0.1ms' 204 ")
