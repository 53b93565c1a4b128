"""One psycopg connection pool per app; request code borrows a connection with ``connection()``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from flask import Flask, current_app
from psycopg_pool import ConnectionPool

_EXTENSION = "doxa_pool"


def init_app(app: Flask) -> None:
    pool = ConnectionPool(
        app.config["DATABASE_URL"],
        min_size=app.config["DB_POOL_MIN"],
        max_size=app.config["DB_POOL_MAX"],
        open=False,
        timeout=app.config.get("DB_POOL_TIMEOUT", 5),
        check=ConnectionPool.check_connection,
        kwargs={"autocommit": True, "prepare_threshold": 0},
        name="doxa-web",
    )
    # Opening without waiting lets the site start (and /healthz answer 503) while the
    # database is still down.
    pool.open(wait=False)
    app.extensions[_EXTENSION] = pool


def pool() -> ConnectionPool:
    return current_app.extensions[_EXTENSION]


@contextmanager
def connection() -> Iterator[psycopg.Connection]:
    """A pooled autocommit connection; statements are prepared server-side from first use."""
    with pool().connection() as conn:
        yield conn


def close(app: Flask) -> None:
    app.extensions[_EXTENSION].close()
