"""The rate-limit counters in PostgreSQL (what every ``doxa web`` process shares): fixed windows
that count, expire and restart, against the real database."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest
from limits import RateLimitItemPerSecond
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter
from psycopg_pool import PoolTimeout

from lookup_web.ratelimit_storage import PostgresStorage

pytestmark = pytest.mark.db


@pytest.fixture
def storage(db_url: str) -> Iterator[PostgresStorage]:
    made = storage_from_string(db_url)  # the scheme picks this storage, as Flask-Limiter does
    assert isinstance(made, PostgresStorage)
    yield made
    made.close()


def test_hits_count_up_within_a_window_and_restart_after_it(storage: PostgresStorage) -> None:
    assert storage.check()
    assert [storage.incr("k", expiry=1) for _ in range(3)] == [1, 2, 3]
    assert storage.get("k") == 3
    assert time.time() < storage.get_expiry("k") <= time.time() + 1
    assert storage.incr("other", expiry=60, amount=5) == 5  # keys do not mix
    time.sleep(1.1)
    assert storage.get("k") == 0  # the window is over
    assert storage.incr("k", expiry=1) == 1  # and the next hit starts a new one
    assert storage.get("other") == 5


def test_clear_and_reset(storage: PostgresStorage, db: psycopg.Connection) -> None:
    storage.incr("a", expiry=60)
    storage.incr("b", expiry=60)
    storage.clear("a")
    assert (storage.get("a"), storage.get("b")) == (0, 1)
    assert storage.reset() == 1
    row = db.execute("SELECT count(*) FROM rate_limits").fetchone()
    assert row is not None and row[0] == 0


def test_a_fixed_window_limiter_on_it(storage: PostgresStorage) -> None:
    limiter = FixedWindowRateLimiter(storage)
    two_a_second = RateLimitItemPerSecond(2)
    assert [limiter.hit(two_a_second, "client") for _ in range(3)] == [True, True, False]
    assert limiter.hit(two_a_second, "another client")


def test_an_unreachable_database_is_reported(tmp_path: object) -> None:
    from doxa.services._proc import free_port

    storage = storage_from_string(
        f"postgresql://doxa@127.0.0.1:{free_port()}/doxa?connect_timeout=1", timeout=1
    )
    try:
        assert not storage.check()
        with pytest.raises((psycopg.Error, PoolTimeout)):
            storage.incr("k", expiry=60)
    finally:
        storage.close()  # type: ignore[attr-defined]
