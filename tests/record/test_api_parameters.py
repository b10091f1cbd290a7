"""Small holes in the JSON API (issue 9.10), against the real server: huge numbers, a `since`
outside UTC's range and a query that is not UTF-8 are a 400 naming the parameter; impossible
numbers are refused."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator

import pytest

from dialtone.app import create_app
from dialtone.record.store import Store
from dialtone.settings import Settings
from tests.conftest import API_TOKEN, CALLER, PHONE_NUMBER
from tests.support.live_server import free_socket, serve_app

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


@pytest.fixture
def served(settings: Settings, store: Store) -> Iterator[int]:
    store.record_inbound_message(
        {"MessageSid": "SM" + "1" * 32, "From": CALLER, "To": PHONE_NUMBER}
    )
    app = create_app(settings, store=store)
    sock = free_socket()
    with serve_app(app, settings, sock):
        yield sock.getsockname()[1]


def call(port: int, method: str, target: str, payload: object = None) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        body = json.dumps(payload).encode() if payload is not None else None
        headers = {**AUTH, "Content-Type": "application/json"}
        conn.request(method, target, body=body, headers=headers)
        answer = conn.getresponse()
        assert answer.getheader("Content-Type") == "application/json"
        return answer.status, json.loads(answer.read())
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("limit=" + "9" * 5000, "limit"),
        ("before=" + "9" * 5000, "before"),
        ("limit=" + "0" * 5000 + "5", None),  # leading zeros: still 5
        ("before=" + "1" * 20, "before"),
        ("since=9999-12-31T23:59:59-12:00", "since"),
        ("since=0001-01-01T00:00:00%2B14:00", "since"),
        ("number=%ff", "number"),
        ("number=%2B1555%ff", "number"),
        ("status=%c3%28", "status"),
    ],
)
@pytest.mark.parametrize("path", ["/messages", "/calls"])
def test_bad_parameters_are_a_400_naming_them(
    served: int, path: str, query: str, name: str | None
) -> None:
    status, answer = call(served, "GET", f"{path}?{query}")
    if name is None:
        assert status == 200
        return
    assert status == 400, answer
    assert f'"{name}"' in answer["error"]["message"]


@pytest.mark.parametrize("since", ["0999-01-01", "1000-01-01T00:00:00%2B01:00", "0001-01-01"])
def test_a_since_before_the_year_1000_finds_what_came_after(served: int, since: str) -> None:
    # The record's timestamps are text; a year of three digits used to sort after 2026.
    status, answer = call(served, "GET", f"/messages?since={since}")
    assert (status, len(answer["messages"])) == (200, 1)


def test_a_filter_is_never_silently_dropped(served: int) -> None:
    status, answer = call(served, "GET", "/messages?number=%2B15557654321")
    assert (status, len(answer["messages"])) == (200, 1)
    assert call(served, "GET", "/messages?number=%ff")[0] == 400  # was: every message


@pytest.mark.parametrize("to", ["+12", "+1555", "+44123", "+" + "1" * 15])
@pytest.mark.parametrize("path", ["/send_sms", "/make_call"])
def test_impossible_numbers_are_refused(served: int, path: str, to: str) -> None:
    status, answer = call(served, "POST", path, {"to": to, "body": "hi", "message": "hi"})
    assert status == 400
    assert '"to"' in answer["error"]["message"]
