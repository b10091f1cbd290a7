"""`make history`: conversations grouped by number, statuses shown, the record left untouched."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from rich.console import Console

from dialtone.commands import build_parser
from dialtone.commands.history import run
from dialtone.record.base import RecordStore
from dialtone.record.history import NoRecordYet
from dialtone.record.store import Store
from tests.conftest import CALLER, PHONE_NUMBER

OTHER = "+15559990000"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
def record(tmp_path: Path) -> Path:
    """A small record: a texting conversation, and a caller who also opted out."""
    path = tmp_path / "dialtone.db"
    with Store(path, clock=Clock()) as store:
        fill(store)
    return path


def fill(store: RecordStore) -> None:
    """The conversations the tests read back."""
    sms = {"MessageSid": "SM1", "From": CALLER, "To": PHONE_NUMBER}
    store.record_inbound_message(sms | {"Body": "Hello [bold]there[/bold] 👋"}, "t-1")
    store.record_outbound_message("SM2", CALLER, PHONE_NUMBER, "Thanks! We got it.")
    store.record_message_status({"MessageSid": "SM2", "MessageStatus": "delivered"})
    mms = {"MessageSid": "SM3", "From": CALLER, "To": PHONE_NUMBER, "Body": ""}
    store.record_inbound_message(
        mms | {"MediaUrl0": "https://m/1", "MediaContentType0": "image/jpeg"}
    )
    call = {"CallSid": "CA1", "From": OTHER, "To": PHONE_NUMBER, "Direction": "inbound"}
    store.record_call(call | {"CallStatus": "ringing"})
    store.record_digits("CA1", "1")
    store.record_call_status(call | {"CallStatus": "completed", "CallDuration": "42"})
    store.record_outbound_message(
        None, OTHER, PHONE_NUMBER, "Reminder", status="failed", error_code=21610
    )
    store.set_opt_out(OTHER, True, keyword="STOP")


def history(*args: str, console: Console | None = None) -> int:
    """`dialtone history ARGS`, printing to `console`."""
    return run(build_parser().parse_args(["history", *args]), console=console)


def render(*args: str) -> str:
    console = Console(record=True, width=100, color_system=None)
    assert history(*args, console=console) == 0
    return console.export_text()


def rows(output: str) -> list[list[str]]:
    """The table rows of the output, as lists of cell texts."""
    return [
        [cell.strip() for cell in line.split("│")]
        for line in output.splitlines()
        if re.match(r"^\s*\d{4}-\d\d-\d\d ", line)
    ]


def test_history_groups_by_number_with_statuses(record: Path) -> None:
    output = render("--db", str(record))
    assert f"Recent conversations in {record} (times in UTC)" in " ".join(output.split())
    # The most recently active number comes first.
    assert output.index(OTHER) < output.index(CALLER)
    assert re.search(rf"{re.escape(OTHER)}\s+1 message, 1 call\s+opted out", output)
    assert re.search(rf"{re.escape(CALLER)}\s+3 messages *\n", output)
    headers = [line for line in output.splitlines() if "When" in line]
    assert [cell.strip() for cell in headers[0].split("┃")] == ["When", "In/out", "What", "Status"]
    table = rows(output)
    assert [row[1:] for row in table] == [
        ["in", "call, 42 s, pressed 1", "completed"],
        ["out", "Reminder", "failed (21610)"],
        ["in", "Hello [bold]there[/bold] 👋", "received"],  # markup in a body stays text
        ["out", "Thanks! We got it.", "delivered"],
        ["in", "[image/jpeg]", "received"],
    ]
    # Within a conversation, oldest first; times are the record's, in UTC.
    assert table[0][0] < table[1][0]
    assert table[2][0] < table[3][0] < table[4][0]
    assert table[2][0].startswith("2024-05-01 12:00:")


def test_history_limits_and_filters(record: Path) -> None:
    output = render("--db", str(record), "--number", CALLER, "--messages", "2")
    assert OTHER not in output
    assert [row[2] for row in rows(output)] == ["Thanks! We got it.", "[image/jpeg]"]
    assert "the latest 2 of 3" in output
    only_latest = render("--db", str(record), "--limit", "1")
    assert CALLER not in only_latest


def test_a_number_is_found_without_its_plus_or_with_spaces(record: Path) -> None:
    digits = CALLER.removeprefix("+")
    spaced = f"{CALLER[:2]} ({digits[1:4]}) {digits[4:7]}-{digits[7:]}"  # +1 (555) 765-4321
    pasted = f"{CALLER[:2]}\u00a0{digits[1:4]}\u2011{digits[4:]}"  # a no-break space, a hyphen
    wide = "".join(chr(ord(c) + 0xFEE0) for c in digits)  # full-width digits
    for spelling in (digits, spaced, pasted, wide):
        output = render("--db", str(record), "--number", spelling)
        assert CALLER in output, spelling
        assert OTHER not in output


def test_an_address_that_is_not_a_phone_number_is_looked_up_as_typed(tmp_path: Path) -> None:
    path = tmp_path / "dialtone.db"
    with Store(path, clock=Clock()) as store:
        for sid, peer in (("CA1", "sip:alice@example.com"), ("CA2", "client:dev-phone")):
            call = {"CallSid": sid, "From": peer, "To": PHONE_NUMBER, "Direction": "inbound"}
            store.record_call(call | {"CallStatus": "ringing"})
    for peer in ("sip:alice@example.com", "client:dev-phone"):
        assert peer in render("--db", str(path), "--number", peer)
    missing = " ".join(render("--db", str(path), "--number", "sip:bob@example.com").split())
    assert missing.endswith("has no messages or calls with sip:bob@example.com.")  # no E.164 hint


def test_an_unknown_number_says_so_and_how_numbers_are_written(record: Path) -> None:
    output = " ".join(render("--db", str(record), "--number", "5550000000").split())
    assert "has no messages or calls with 5550000000." in output
    assert "E.164" in output
    output = " ".join(render("--db", str(record), "--number", "+15550000000").split())
    assert output.endswith("has no messages or calls with +15550000000.")


@pytest.mark.parametrize("option", ["--limit", "--messages"])
@pytest.mark.parametrize("value", ["0", "-1", "ten"])
def test_a_count_below_one_is_refused_in_one_line(
    record: Path, capsys: pytest.CaptureFixture[str], option: str, value: str
) -> None:
    with pytest.raises(SystemExit) as stopped:
        history("--db", str(record), option, value)
    assert stopped.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("dialtone history: error: argument " + option)
    assert "Traceback" not in error


def test_messages_counts_calls_too(record: Path) -> None:
    # OTHER has 1 message and 1 call: --messages 1 shows the latest one of the two.
    output = render("--db", str(record), "--number", OTHER, "--messages", "1")
    assert [row[2] for row in rows(output)] == ["Reminder"]
    assert "the latest 1 of 2" in output


def test_history_leaves_the_record_untouched(record: Path) -> None:
    before = hashlib.sha256(record.read_bytes()).hexdigest()
    render("--db", str(record))
    assert hashlib.sha256(record.read_bytes()).hexdigest() == before


def test_an_empty_record_says_so(tmp_path: Path) -> None:
    Store(tmp_path / "empty.db").close()
    output = " ".join(render("--db", str(tmp_path / "empty.db")).split())
    assert output.endswith("has no messages or calls yet.")


def test_no_database_yet_is_one_clear_paragraph(tmp_path: Path) -> None:
    missing = tmp_path / "var" / "dialtone.db"
    with pytest.raises(NoRecordYet, match="DATABASE_PATH"):
        history("--db", str(missing))
    assert not missing.parent.exists()  # nothing was created

    result = subprocess.run(
        [sys.executable, "-m", "dialtone", "history", "--db", str(missing)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    paragraph = result.stderr.strip()
    assert paragraph.startswith(f"There is no record at {missing} yet.")
    assert "\n" not in paragraph
    assert "Traceback" not in result.stderr


def test_history_reads_postgresql_when_database_url_is_set(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dialtone.record.postgres import PostgresStore

    with PostgresStore(postgres_url, clock=Clock()) as store:
        fill(store)
    monkeypatch.chdir(tmp_path)  # no .env here
    monkeypatch.setenv("DATABASE_URL", postgres_url)
    output = render()
    assert "PostgreSQL database" in output
    assert re.search(rf"{re.escape(OTHER)}\s+1 message, 1 call\s+opted out", output)
    assert len(rows(output)) == 5


def test_history_on_a_postgresql_record_at_another_version_says_what_to_do(
    postgres_url: str,
) -> None:
    import psycopg

    from dialtone.record.errors import SchemaMismatch
    from dialtone.record.postgres import PostgresStore

    with pytest.raises(SchemaMismatch, match=r"has no Dialtone tables yet.*Run `make migrate`"):
        PostgresStore(postgres_url, readonly=True)
    PostgresStore(postgres_url).close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("UPDATE dialtone_schema SET version = version + 1")
    with pytest.raises(SchemaMismatch, match="Upgrade Dialtone") as raised:
        PostgresStore(postgres_url, readonly=True)
    assert "make migrate" not in str(raised.value)
