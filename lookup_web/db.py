"""One psycopg connection pool per app; request code borrows a connection with ``connection()``.

With ``READ_DATABASE_URL`` (``DOXA_DATABASE_READ_URL``: a streaming replica) a second pool serves
``read_connection()``, which the customer pages and the exports use for what they only read; a
page that writes (sign-in, rate limits, forms, audit) uses ``connection()``, the primary. A
replica lagging behind simply shows the readings it has replayed so far.
"""

from __future__ import annotations

import select
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from flask import Flask, current_app
from psycopg_pool import ConnectionPool

_EXTENSION = "doxa_pool"
_READ_EXTENSION = "doxa_read_pool"


def init_app(app: Flask) -> None:
    app.extensions[_EXTENSION] = _pool(app, app.config["DATABASE_URL"], "doxa-web")
    read_url = app.config.get("READ_DATABASE_URL")
    if read_url:
        app.extensions[_READ_EXTENSION] = _pool(app, read_url, "doxa-web-read")


def _pool(app: Flask, url: str, name: str) -> ConnectionPool:
    pool = ConnectionPool(
        url,
        min_size=app.config["DB_POOL_MIN"],
        max_size=app.config["DB_POOL_MAX"],
        open=False,
        timeout=app.config.get("DB_POOL_TIMEOUT", 5),
        check=check_idle_connection,
        kwargs={"autocommit": True, "prepare_threshold": 0},
        name=name,
    )
    # Opening without waiting lets the site start (and /healthz answer 503) while the
    # database is still down.
    pool.open(wait=False)
    return pool


def check_idle_connection(conn: psycopg.Connection) -> None:
    """The pool's check on every checkout, without a round trip when nothing is wrong.

    An idle connection has nothing to read; when the server has closed it (restart,
    ``pg_terminate_backend``, idle timeout) its socket turns readable with the farewell message
    or end of file. Only then is the connection tried with an empty query, which raises and makes
    the pool replace it, so a request never gets a connection the server has already dropped.
    (``ConnectionPool.check_connection`` alone would cost a round trip on every page.)"""
    if conn.closed or _readable(conn.pgconn.socket):
        ConnectionPool.check_connection(conn)


def _readable(fd: int) -> bool:
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLERR | select.POLLHUP)
        return bool(poller.poll(0))
    return bool(select.select([fd], [], [], 0)[0])  # Windows: no poll()


def pool() -> ConnectionPool:
    return current_app.extensions[_EXTENSION]


@contextmanager
def connection() -> Iterator[psycopg.Connection]:
    """A pooled autocommit connection; statements are prepared server-side from first use."""
    with pool().connection() as conn:
        yield conn


@contextmanager
def read_connection() -> Iterator[psycopg.Connection]:
    """A pooled autocommit connection to the replica when one is configured, else the primary:
    for pages and exports that only read."""
    read_pool = current_app.extensions.get(_READ_EXTENSION)
    with (read_pool or pool()).connection() as conn:
        yield conn


def close(app: Flask) -> None:
    app.extensions[_EXTENSION].close()
    read_pool = app.extensions.get(_READ_EXTENSION)
    if read_pool is not None:
        read_pool.close()
