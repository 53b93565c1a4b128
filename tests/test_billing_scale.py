"""``doxa bills run`` split for a large fleet: one reading day (``--reading-day``), several
worker processes over ranges of meter ids (``--workers``), and runs of one period whose ranges
overlap taking turns on advisory locks. The bills are the same as one whole run's."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from test_billing_run import add_meter, add_readings, bills, daily, local

from billing.periods import Period
from billing.run import run_bills, run_reading_day, split_ranges

pytestmark = pytest.mark.db
HCM = ZoneInfo("Asia/Ho_Chi_Minh")


def _fleet(db: psycopg.Connection, n: int = 24) -> None:
    """``n`` customers on reading days 5, 10 and 15, read daily at noon, each its own pace."""
    for k in range(n):
        meter = add_meter(db, f"PB0101{k:07d}", f"S-{k:03d}", (5, 10, 15)[k % 3])
        add_readings(db, meter, daily(local(2025, 5, 1), 70, 100.0 + k, 3.0 + k / 4))


def test_reading_day_bills_only_its_customers(
    db: psycopg.Connection, db_url: str, doxa: Callable[..., Any]
) -> None:
    _fleet(db, 9)
    result = doxa(
        "bills", "run", "--period", "2025-06", "--reading-day", "10",
        env={"DOXA_DATABASE_URL": db_url},
    )  # fmt: skip
    assert result.code == 0, result
    assert "bills 2025-06: 3 computed" in result.out
    rows = db.execute(
        "SELECT c.reading_day, count(*) FROM bills b JOIN customers c ON c.id = b.customer_id"
        " GROUP BY 1"
    ).fetchall()
    assert rows == [(10, 3)]
    report = run_reading_day(db, local(2025, 6, 15).date(), HCM)
    assert report.period == "2025-06" and report.written == 3
    assert run_reading_day(db, local(2025, 6, 30).date(), HCM).written == 0  # nobody's day


def test_bad_reading_day_or_workers_is_exit_2(db_url: str, doxa: Callable[..., Any]) -> None:
    env = {"DOXA_DATABASE_URL": db_url}
    for args in (("--reading-day", "29"), ("--workers", "0")):
        result = doxa("bills", "run", "--period", "2025-06", *args, env=env)
        assert result.code == 2
        assert len(result.err.strip().splitlines()) == 1


def test_workers_give_the_same_bills_as_one_run(
    db: psycopg.Connection, db_url: str, doxa: Callable[..., Any]
) -> None:
    _fleet(db)
    report = run_bills(db, Period(2025, 6), HCM)
    assert report.written == 24
    single = bills(db, "2025-06")
    db.execute("DELETE FROM bills")
    ranges = split_ranges(db, 3, block=5)
    assert len(ranges) == 3
    flat = [(lo, hi) for lo, hi in ranges]
    assert all(a[1] < b[0] for a, b in itertools.pairwise(flat))  # disjoint, ordered
    result = doxa(
        "bills", "run", "--period", "2025-06", "--workers", "3", env={"DOXA_DATABASE_URL": db_url}
    )
    assert result.code == 0, result
    assert "bills 2025-06: 24 computed" in result.out
    assert bills(db, "2025-06") == single


def test_overlapping_runs_of_one_period_take_turns(db: psycopg.Connection, db_url: str) -> None:
    _fleet(db)
    errors: list[BaseException] = []
    reports = []

    def run(meter_range: tuple[int, int] | None) -> None:
        try:
            with psycopg.connect(db_url) as conn:
                reports.append(
                    run_bills(conn, Period(2025, 6), HCM, batch=2, block=4, meter_range=meter_range)
                )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(r,)) for r in (None, (1, 16), (9, 24), None)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert sorted(r.written for r in reports) == [16, 16, 24, 24]
    row = db.execute("SELECT count(*), count(DISTINCT meter_id) FROM bills").fetchone()
    assert row == (24, 24)
