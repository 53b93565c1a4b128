"""Flask-Limiter's counters in PostgreSQL, so that every process of ``doxa web`` shares them.

The ``limits`` library picks a storage by the scheme of ``RATELIMIT_STORAGE_URI``; importing
this module registers ``postgresql://`` (and ``postgres://``) for the table ``rate_limits``
(migration 0500). Only the fixed-window strategy is supported (Flask-Limiter's default, and the
site's). Each process opens its own small pool on first use — after gunicorn has forked it.
"""

from __future__ import annotations

import threading
import time

import psycopg
from limits.storage import Storage
from psycopg_pool import ConnectionPool, PoolTimeout

SWEEP_EVERY = 500  # hits between deletions of expired windows (per process)

_INCR = """
INSERT INTO rate_limits AS r (key, hits, expires_at)
VALUES (%(key)s, %(amount)s, now() + make_interval(secs => %(expiry)s))
ON CONFLICT (key) DO UPDATE SET
    hits = CASE WHEN r.expires_at <= now() THEN excluded.hits ELSE r.hits + excluded.hits END,
    expires_at = CASE WHEN r.expires_at <= now() THEN excluded.expires_at ELSE r.expires_at END
RETURNING hits
"""


class PostgresStorage(Storage):
    """Fixed windows as rows (key, hits, expires_at); one statement per hit, atomic."""

    STORAGE_SCHEME = ["postgresql", "postgres"]  # noqa: RUF012  (the limits base class types it as a list)

    def __init__(self, uri: str, wrap_exceptions: bool = False, **options: object) -> None:
        super().__init__(uri, wrap_exceptions=wrap_exceptions)
        self._uri = uri
        self._timeout = float(options.get("timeout", 5))  # type: ignore[arg-type]
        self._pool: ConnectionPool | None = None
        self._lock = threading.Lock()
        self._hits = 0

    @property
    def base_exceptions(self) -> tuple[type[Exception], ...]:
        return (psycopg.Error, PoolTimeout)

    def _connections(self) -> ConnectionPool:
        with self._lock:
            if self._pool is None:
                self._pool = ConnectionPool(
                    self._uri,
                    min_size=1,
                    max_size=2,
                    open=False,
                    timeout=self._timeout,
                    check=ConnectionPool.check_connection,
                    kwargs={"autocommit": True},
                    name="doxa-rate-limits",
                )
                self._pool.open(wait=False)
            return self._pool

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        with self._connections().connection() as conn:
            row = conn.execute(_INCR, {"key": key, "amount": amount, "expiry": expiry}).fetchone()
            self._hits += 1
            if self._hits % SWEEP_EVERY == 0:
                conn.execute("DELETE FROM rate_limits WHERE expires_at <= now()")
        assert row is not None
        return int(row[0])

    def decr(self, key: str, amount: int = 1) -> int:
        """Give hits back (a success after ``lookup_web.attempts`` counted it); never below 0,
        and never into a window that has already expired."""
        with self._connections().connection() as conn:
            row = conn.execute(
                "UPDATE rate_limits SET hits = greatest(hits - %s, 0)"
                " WHERE key = %s AND expires_at > now() RETURNING hits",
                (amount, key),
            ).fetchone()
        return int(row[0]) if row else 0

    def get(self, key: str) -> int:
        with self._connections().connection() as conn:
            row = conn.execute(
                "SELECT hits FROM rate_limits WHERE key = %s AND expires_at > now()", (key,)
            ).fetchone()
        return int(row[0]) if row else 0

    def get_expiry(self, key: str) -> float:
        with self._connections().connection() as conn:
            row = conn.execute(
                "SELECT extract(epoch FROM expires_at)::float8 FROM rate_limits"
                " WHERE key = %s AND expires_at > now()",
                (key,),
            ).fetchone()
        return float(row[0]) if row else time.time()

    def check(self) -> bool:
        try:
            with self._connections().connection() as conn:
                conn.execute("SELECT 1")
        except (psycopg.Error, PoolTimeout):
            return False
        return True

    def reset(self) -> int | None:
        with self._connections().connection() as conn:
            return conn.execute("DELETE FROM rate_limits").rowcount

    def clear(self, key: str) -> None:
        with self._connections().connection() as conn:
            conn.execute("DELETE FROM rate_limits WHERE key = %s", (key,))

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None
