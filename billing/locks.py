"""The one advisory-lock scheme of a billing period, shared by ``bills run``, ``bills issue``
and ``bills correct`` so that they take turns on the bills they share.

A period's meters are cut into blocks of :data:`BLOCK` meter ids (``meter_id // BLOCK``); each
block has a transaction lock ``pg_advisory_xact_lock(period key, block)``. A run takes the blocks
it bills, an issue or a correction every block of the fleet, always in ascending order, so two of
them never deadlock: disjoint runs (``--workers``) never wait for each other, and an issue waits
for the runs of its period in progress (and they for it).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import psycopg

from billing.periods import Period

# Meter ids per block: with reading days spread over 1–28, about 1,000 meters of each reading
# day (billing.run's batch).
BLOCK = 28 * 1000
# key1 of a period's locks: "b" and the period's month number (no clash with the scheduler's
# job locks, which are single 64-bit keys).
_PREFIX = ord("b") << 24


def period_key(period: Period) -> int:
    return _PREFIX | (period.year * 12 + period.month)


def lock_blocks(conn: psycopg.Connection[Any], period: Period, blocks: Iterable[int]) -> None:
    """Take the locks of ``blocks`` of ``period`` (ascending), to the end of the transaction."""
    key = period_key(period)
    for number in sorted(set(blocks)):
        conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (key, number))


def lock_period(conn: psycopg.Connection[Any], period: Period, block: int = BLOCK) -> None:
    """Take every block's lock of ``period``: the blocks of all meter ids there are."""
    row = conn.execute("SELECT coalesce(max(id), 0) FROM meters").fetchone()
    top = int(row[0]) if row else 0
    lock_blocks(conn, period, range(top // block + 1))
