"""GET /messages and GET /calls: bearer auth, filters, paging, plain 400s."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
import webtest

from dialtone.record.base import RecordStore
from dialtone.settings import Settings
from tests.conftest import API_TOKEN, CALLER, PHONE_NUMBER
from tests.support.postgres import BACKENDS, open_backend

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
OTHER = "+15559990000"
START = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


class Clock:
    """A clock the test moves: one minute per message recorded."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=BACKENDS)
def store(
    request: pytest.FixtureRequest, settings: Settings, clock: Clock
) -> Iterator[RecordStore]:
    with open_backend(request, request.param, settings.database_path, clock=clock) as store:
        yield store


def inbound(store: RecordStore, clock: Clock, n: int, sender: str = CALLER) -> None:
    """Record `n` inbound texts from `sender`, one a minute."""
    for _ in range(n):
        clock.now += timedelta(minutes=1)
        sid = f"SM{len(store.messages(limit=500)):032x}"
        store.record_inbound_message(
            {"MessageSid": sid, "From": sender, "To": PHONE_NUMBER, "Body": sid}
        )


def test_messages_needs_the_api_token(app: webtest.TestApp) -> None:
    app.get("/messages", status=401)
    app.get("/messages", headers={"Authorization": "Bearer nope"}, status=403)
    app.get("/calls", status=401)


def test_messages_newest_first_with_filters(
    app: webtest.TestApp, store: RecordStore, clock: Clock
) -> None:
    inbound(store, clock, 3)
    inbound(store, clock, 2, sender=OTHER)
    store.record_message_status(
        {"MessageSid": "SM" + "f" * 32, "MessageStatus": "delivered", "To": CALLER}
    )
    everything = app.get("/messages", headers=AUTH).json
    assert len(everything["messages"]) == 6
    assert everything["next"] is None
    ids = [m["id"] for m in everything["messages"]]
    assert ids == sorted(ids, reverse=True)

    mine = app.get("/messages", {"number": CALLER}, headers=AUTH).json["messages"]
    assert len(mine) == 4
    assert all(CALLER in (m["from"], m["to"]) for m in mine)
    delivered = app.get("/messages", {"status": "delivered"}, headers=AUTH).json["messages"]
    assert [m["sid"] for m in delivered] == ["SM" + "f" * 32]
    since = (START + timedelta(minutes=3)).isoformat()
    recent = app.get("/messages", {"since": since}, headers=AUTH).json["messages"]
    assert len(recent) == 4  # minutes 3, 4, 5 and the status callback at minute 5
    outbound = app.get("/messages", {"direction": "outbound"}, headers=AUTH).json["messages"]
    assert len(outbound) == 1


def test_paging_with_the_before_cursor_and_next_link(
    app: webtest.TestApp, store: RecordStore, clock: Clock
) -> None:
    inbound(store, clock, 7)
    seen: list[str] = []
    url = "/messages?limit=3&number=%2B15557654321"
    pages = 0
    while url:
        answer = app.get(url, headers=AUTH).json
        seen += [m["sid"] for m in answer["messages"]]
        url = answer["next"]
        pages += 1
        if url:
            assert "number=%2B15557654321" in url
            assert "limit=3" in url
    assert pages == 3  # 3 + 3 + 1
    assert len(seen) == len(set(seen)) == 7


def test_since_accepts_a_z_suffix_and_a_date(
    app: webtest.TestApp, store: RecordStore, clock: Clock
) -> None:
    inbound(store, clock, 2)
    assert (
        len(app.get("/messages", {"since": "2025-03-01T12:02:00Z"}, headers=AUTH).json["messages"])
        == 1
    )
    assert len(app.get("/messages", {"since": "2025-03-01"}, headers=AUTH).json["messages"]) == 2
    assert app.get("/messages", {"since": "2025-03-02"}, headers=AUTH).json["messages"] == []


@pytest.mark.parametrize(
    ("query", "word"),
    [
        ({"since": "yesterday"}, "since"),
        ({"since": "2025-13-01"}, "since"),
        ({"limit": "0"}, "limit"),
        ({"limit": "501"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limit": "٣"}, "limit"),  # a non-ASCII digit
        ({"before": "-1"}, "before"),
        ({"before": "99999999999999999999999"}, "before"),
        ({"status": "exploded"}, "status"),
        ({"direction": "sideways"}, "direction"),
        ({"number": "555-1234"}, "number"),
        ({"sort": "asc"}, "sort"),
    ],
)
def test_bad_filters_are_a_plain_400(
    app: webtest.TestApp, query: dict[str, str], word: str
) -> None:
    answer = app.get("/messages", query, headers=AUTH, status=400)
    assert answer.content_type == "application/json"
    assert word in answer.json["error"]["message"]
    assert "Traceback" not in answer.text


def test_calls_with_filters(app: webtest.TestApp, store: RecordStore, clock: Clock) -> None:
    for i, status in enumerate(["completed", "busy", "completed"]):
        clock.now += timedelta(minutes=1)
        store.record_call(
            {"CallSid": f"CA{i:032x}", "From": CALLER, "To": PHONE_NUMBER, "CallStatus": status}
        )
    store.record_digits(f"CA{0:032x}", "12")
    answer = app.get("/calls", {"status": "completed", "limit": "1"}, headers=AUTH).json
    assert [c["sid"] for c in answer["calls"]] == [f"CA{2:032x}"]
    rest = app.get(answer["next"], headers=AUTH).json
    assert [c["sid"] for c in rest["calls"]] == [f"CA{0:032x}"]
    assert rest["calls"][0]["digits"] == ["12"]
    app.get("/calls", {"status": "delivered"}, headers=AUTH, status=400)


def test_a_record_that_cannot_be_read_is_503(app: webtest.TestApp, store: RecordStore) -> None:
    store.close()
    answer = app.get("/messages", headers=AUTH, status=503)
    assert "record" in answer.json["error"]["message"]


def test_the_api_shares_the_outbound_rate_limit(
    settings: Settings, store: RecordStore, make_app: Callable[..., webtest.TestApp]
) -> None:
    app = make_app(settings.with_overrides(rate_limit_per_minute=2), store=store)
    app.get("/messages", headers=AUTH)
    app.post_json("/send_sms", {"to": "bad"}, headers=AUTH, status=400)  # counts, then 400
    answer = app.get("/calls", headers=AUTH, status=429)
    assert "Retry-After" in answer.headers
