"""Rate limits in the record: counted across instances with PostgreSQL, per process with SQLite."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import webtest

from dialtone.record.limits import SharedLimiter, limiter_factory
from dialtone.record.postgres import PostgresStore
from dialtone.record.store import Store
from dialtone.settings import Settings
from dialtone.web.api_auth import AUTH_FAILURES_PER_MINUTE
from dialtone.web.ratelimit import RateLimiter, in_memory
from tests.conftest import API_TOKEN


def test_with_sqlite_the_limits_count_in_this_process(tmp_path: Path) -> None:
    with Store(tmp_path / "record.db") as store:
        limiter = limiter_factory(store, in_memory)("api", 2, 60.0)
        assert isinstance(limiter, RateLimiter)
        assert limiter_factory(None, in_memory)("api", 2, 60.0).limit == 2


def test_two_instances_share_one_count(postgres_url: str) -> None:
    with PostgresStore(postgres_url) as one, PostgresStore(postgres_url) as two:
        first = limiter_factory(one, in_memory)("api", 3, 60.0)
        second = limiter_factory(two, in_memory)("api", 3, 60.0)
        assert isinstance(first, SharedLimiter)
        assert [first.hit("k"), second.hit("k"), first.hit("k")] == [None, None, None]
        wait = second.hit("k")
        assert wait is not None
        assert 0 < wait <= 60
        assert first.hit("other key") is None  # each key counts on its own
        other_scope = limiter_factory(two, in_memory)("failures", 3, 60.0)
        assert other_scope.hit("k") is None  # and each scope


def test_hits_leave_the_window(postgres_url: str) -> None:
    with PostgresStore(postgres_url) as store:
        limiter = limiter_factory(store, in_memory)("texts", 1, 0.2)
        assert limiter.hit("+15550001111") is None
        assert limiter.hit("+15550001111") is not None
        time.sleep(0.3)
        assert limiter.hit("+15550001111") is None


def test_concurrent_hits_from_two_instances_never_exceed_the_limit(postgres_url: str) -> None:
    allowed: list[bool] = []
    with PostgresStore(postgres_url) as one, PostgresStore(postgres_url) as two:
        limiters = [limiter_factory(s, in_memory)("api", 10, 60.0) for s in (one, two)]
        barrier = threading.Barrier(8)

        def worker(n: int) -> None:
            barrier.wait()
            for _ in range(5):
                allowed.append(limiters[n % 2].hit("token") is None)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert allowed.count(True) == 10
    assert len(allowed) == 40


def test_without_the_database_it_counts_in_memory_meanwhile(postgres_url: str) -> None:
    store = PostgresStore(postgres_url)
    limiter = limiter_factory(store, in_memory)("api", 2, 60.0)
    store.close()  # every write now fails with StoreUnavailable
    assert [limiter.hit("k"), limiter.hit("k")] == [None, None]
    assert limiter.hit("k") is not None


def test_odd_keys_are_counted(postgres_url: str) -> None:
    with PostgresStore(postgres_url) as store:
        limiter = limiter_factory(store, in_memory)("menu", 1, 60.0)
        assert limiter.hit("caller\x00\ud800") is None
        assert limiter.hit("caller\x00\ud800") is not None


def test_two_apps_on_one_database_share_the_api_limits(
    postgres_url: str, settings: Settings, make_app: Callable[..., webtest.TestApp]
) -> None:
    limited = settings.with_overrides(rate_limit_per_minute=3)
    with PostgresStore(postgres_url) as one, PostgresStore(postgres_url) as two:
        first, second = make_app(limited, store=one), make_app(limited, store=two)
        auth = {"Authorization": f"Bearer {API_TOKEN}"}
        first.get("/messages", headers=auth)
        second.get("/messages", headers=auth)
        first.get("/calls", headers=auth)
        refused = second.get("/messages", headers=auth, status=429)
        assert "Retry-After" in refused.headers
        # Guessing the token through both instances is counted once, across them.
        wrong = {"Authorization": "Bearer wrong-token-wrong-token-wrong"}
        answers = [
            app.get("/messages", headers=wrong, status="*").status_int
            for app in [first, second] * (AUTH_FAILURES_PER_MINUTE // 2 + 1)
        ]
        assert answers[:AUTH_FAILURES_PER_MINUTE] == [403] * AUTH_FAILURES_PER_MINUTE
        assert answers[AUTH_FAILURES_PER_MINUTE:] == [429] * (
            len(answers) - AUTH_FAILURES_PER_MINUTE
        )


def test_locked_asks_without_counting_across_instances(postgres_url: str) -> None:
    with PostgresStore(postgres_url) as one, PostgresStore(postgres_url) as two:
        first = limiter_factory(one, in_memory)("api-auth-failures", 2, 60.0)
        second = limiter_factory(two, in_memory)("api-auth-failures", 2, 60.0)
        assert first.locked("203.0.113.9") is None
        assert first.locked("203.0.113.9") is None  # asking twice counts nothing
        assert first.hit("203.0.113.9") is None
        assert second.hit("203.0.113.9") is None
        wait = second.locked("203.0.113.9")
        assert wait is not None
        assert 0 < wait <= 60
        assert first.locked("198.51.100.7") is None


def test_a_locked_out_address_is_refused_the_right_token_on_every_instance(
    postgres_url: str, settings: Settings, make_app: Callable[..., webtest.TestApp]
) -> None:
    with PostgresStore(postgres_url) as one, PostgresStore(postgres_url) as two:
        first, second = make_app(settings, store=one), make_app(settings, store=two)
        wrong = {"Authorization": "Bearer wrong-token-wrong-token-wrong"}
        for _ in range(AUTH_FAILURES_PER_MINUTE):
            first.get("/messages", headers=wrong, status=403)
        right = {"Authorization": f"Bearer {API_TOKEN}"}
        second.get("/messages", headers=right, status=429)


def test_locked_without_the_database_asks_the_memory_meanwhile(postgres_url: str) -> None:
    store = PostgresStore(postgres_url)
    limiter = limiter_factory(store, in_memory)("api", 1, 60.0)
    store.close()
    assert limiter.locked("k") is None
    assert limiter.hit("k") is None
    assert limiter.locked("k") is not None


def test_after_a_failure_it_counts_in_memory_for_a_while_without_trying(
    postgres_url: str,
) -> None:
    """Found in review: with rate_hits locked, every hit waited the statement timeout (3 s; a
    voice link text makes two), and nothing stopped the next one from waiting as long."""
    with PostgresStore(postgres_url) as store:
        tries = []
        real = store.transaction

        def counted(work: Callable[..., object]) -> object:
            tries.append(1)
            return real(work)

        store.transaction = counted  # type: ignore[method-assign,assignment]
        limiter = limiter_factory(store, in_memory)("api", 100, 60.0)
        store.close()  # every write now fails
        for _ in range(10):
            assert limiter.hit("k") is None
            assert limiter.locked("k") is None
        assert len(tries) == 1
