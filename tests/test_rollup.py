"""The daily rollup and retention (contract §14) against a real TimescaleDB.

- As a property over random meters (gaps, qualities, drops, replacements, noise, glitches,
  multipliers): every day the rollup holds as final has the use and estimated flag the customer
  page computes live, and the page built on the rollup shows the same days as without it.
- The page really reads the rollup for final days; the day holding the latest reading is live.
- /ops completeness from the rollup equals the live computation.
- Retention drops raw chunks older than N months; the rollup rows and the page's bars stay.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_metering_agreement import ORIGIN, _load, histories

from lookup_web import customer_queries as q
from lookup_web.customer_dashboard import build
from lookup_web.ops import Thresholds, completeness
from schema.retention import apply_retention
from schema.rollup import rollup_days, rollup_job

pytestmark = pytest.mark.db
ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
NOW = ORIGIN + timedelta(days=81, hours=3)  # after the histories' last reading (day 80)
DAYS = 90


def _reset(db: psycopg.Connection) -> None:
    db.execute(
        "TRUNCATE bills, bill_skips, meter_resets, readings, meter_status, audit_log, meters,"
        " customers, meter_days, province_days RESTART IDENTITY CASCADE"
    )


def _days(db: psycopg.Connection, meter_id: int, now: datetime = NOW) -> list[Any]:
    customer_id = db.execute("SELECT customer_id FROM meters WHERE id = %s", (meter_id,)).fetchone()
    assert customer_id is not None
    customer, meters = q.customer_and_meters(db, customer_id[0])
    assert customer is not None
    board = build(db, customer, meters[0], now=now, zone=ZONE, days=DAYS)
    return [(u.start, u.kwh, u.estimated if u.kwh is not None else False) for u in board.days]


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.large_base_example,
        HealthCheck.data_too_large,
    ],
)
@given(meters=st.lists(histories(), min_size=1, max_size=3))
def test_rollup_days_equal_the_live_rule(
    db: psycopg.Connection, meters: list[dict[str, Any]]
) -> None:
    _reset(db)
    ids = [_load(db, k, m) for k, m in enumerate(meters)]
    live = {m: _days(db, m) for m in ids}
    first, last = live[ids[0]][0][0], live[ids[0]][-1][0]
    counts = rollup_days(db, first, last, zone=ZONE, batch=2)  # several blocks
    assert counts.rows == len(ids) * DAYS
    rows = {
        (m, d): (kwh, est, final)
        for m, d, kwh, est, final in db.execute(
            "SELECT meter_id, day, use_kwh, estimated, final FROM meter_days"
        )
    }
    for m in ids:
        for day, kwh, estimated in live[m]:
            rolled_kwh, rolled_est, final = rows[(m, day)]
            if final:
                assert rolled_kwh == kwh, (m, day)
                assert (rolled_est if rolled_kwh is not None else False) == estimated, (m, day)
            else:
                assert rolled_kwh is None  # no value after the day's end yet
        assert _days(db, m) == live[m]  # the page on the rollup shows the same days


def _steady_meter(
    db: psycopg.Connection, code: str, serial: str, start: datetime, days: int
) -> int:
    """A meter read every hour from ``start`` for ``days`` days, 1 kWh an hour."""
    row = db.execute(
        "INSERT INTO customers (code, name, reading_day, province) VALUES (%s, 'x', 5, 'Cần Thơ')"
        " RETURNING id",
        (code,),
    ).fetchone()
    assert row is not None
    meter = db.execute(
        "INSERT INTO meters (serial, customer_id, protocol, created_at)"
        " VALUES (%s, %s, 'mqtt', %s) RETURNING id",
        (serial, row[0], start),
    ).fetchone()
    assert meter is not None
    db.execute(
        "INSERT INTO readings (meter_id, ts, energy_import_kwh, source)"
        " SELECT %s, %s::timestamptz + k * interval '1 hour', 100 + k, 'backfill'"
        " FROM generate_series(0, %s) k",
        (meter[0], start, days * 24 - 1),
    )
    return int(meter[0])


def test_page_reads_final_days_from_the_rollup_and_today_live(db: psycopg.Connection) -> None:
    _reset(db)
    start = datetime(2025, 3, 1, tzinfo=ZONE)
    meter_id = _steady_meter(db, "PB01010000001", "ST-1", start, 40)
    now = start + timedelta(days=39, hours=12)  # the last reading is at day 39, 23:00
    before = _days(db, meter_id, now)
    assert before[-2][1] == Decimal(24)  # yesterday: 24 kWh
    rollup_days(db, date(2025, 3, 1), date(2025, 4, 9), zone=ZONE)
    assert _days(db, meter_id, now) == before
    # A final rolled-up day is read, not recomputed: change it and the page follows.
    yesterday = now.date() - timedelta(days=1)
    db.execute(
        "UPDATE meter_days SET use_kwh = 99 WHERE meter_id = %s AND day = %s", (meter_id, yesterday)
    )
    after = _days(db, meter_id, now)
    assert after[-2][1] == Decimal(99)
    # The day holding the latest reading runs up to it, live (not final in the rollup either).
    row = db.execute(
        "SELECT final FROM meter_days WHERE meter_id = %s AND day = %s", (meter_id, now.date())
    ).fetchone()
    assert row == (False,)
    assert after[-1] == before[-1]


def test_ops_completeness_from_the_rollup_equals_the_live_count(db: psycopg.Connection) -> None:
    _reset(db)
    start = datetime(2025, 3, 1, tzinfo=ZONE)
    _steady_meter(db, "PB01010000001", "ST-1", start, 10)
    gappy = _steady_meter(db, "PB01010000002", "ST-2", start, 10)
    db.execute(
        "DELETE FROM readings WHERE meter_id = %s AND ts >= %s AND ts < %s",
        (gappy, start + timedelta(days=5, hours=3), start + timedelta(days=5, hours=5)),
    )
    thresholds = Thresholds(15, 60, 3600.0, 3600.0)
    for k in range(10):
        day = date(2025, 3, 1) + timedelta(days=k)
        live = completeness(db, day, ZONE.key, thresholds)
        rollup_days(db, day, day, zone=ZONE, mqtt_interval=3600.0, poll_interval=3600.0)
        rolled = db.execute(
            "SELECT province, meters, complete FROM province_days WHERE day = %s", (day,)
        ).fetchall()
        assert [(c.province, c.meters, c.complete) for c in live] == rolled
    day6 = db.execute(
        "SELECT meters, complete FROM province_days WHERE day = '2025-03-06'"
    ).fetchone()
    assert day6 == (2, 1)  # the gap of two hours makes one meter incomplete that day


def test_retention_drops_old_chunks_and_keeps_rollup_and_bars(db: psycopg.Connection) -> None:
    _reset(db)
    start = datetime(2025, 1, 1, tzinfo=ZONE)
    meter_id = _steady_meter(db, "PB01010000001", "ST-1", start, 120)  # to 1 May
    chunks = db.execute("SELECT count(*) FROM show_chunks('readings')").fetchone()
    assert chunks is not None and chunks[0] > 10
    now = datetime(2025, 4, 30, 12, tzinfo=ZONE)
    counts = apply_retention(db, now, months=1, zone=ZONE)  # keep from 1 March
    assert counts.chunks_dropped > 0
    oldest = db.execute("SELECT min(ts) FROM readings").fetchone()
    assert oldest is not None and oldest[0] >= counts.cutoff - timedelta(days=7)
    # Every day of the dropped chunks was rolled up first, with its use.
    row = db.execute(
        "SELECT count(*), min(use_kwh), max(use_kwh) FROM meter_days"
        " WHERE meter_id = %s AND day >= '2025-01-02' AND day < '2025-02-01'",
        (meter_id,),
    ).fetchone()
    assert row == (30, Decimal(24), Decimal(24))
    # The drop is audited: who, the cutoff, each chunk's range.
    entry = db.execute(
        "SELECT actor, row_count, (detail->>'cutoff')::timestamptz, detail->'chunks'"
        " FROM audit_log WHERE action = 'readings.retention'"
    ).fetchone()
    assert entry is not None and entry[:3] == ("cli", counts.chunks_dropped, counts.cutoff)
    assert len(entry[3]) == counts.chunks_dropped
    assert all(datetime.fromisoformat(end) <= counts.cutoff for _, end in entry[3])
    # No retention: nothing dropped.
    assert apply_retention(db, now, months=0, zone=ZONE).chunks_dropped == 0


def test_rollup_job_rolls_the_last_days_and_pending_ones(db: psycopg.Connection) -> None:
    _reset(db)
    start = datetime(2025, 3, 1, tzinfo=ZONE)
    meter_id = _steady_meter(db, "PB01010000001", "ST-1", start, 10)
    counts = rollup_job(db, datetime(2025, 3, 8, 1, tzinfo=ZONE), zone=ZONE)
    assert counts.rows == 3  # 5, 6 and 7 March
    days = db.execute(
        "SELECT day, use_kwh, final FROM meter_days WHERE meter_id = %s ORDER BY day", (meter_id,)
    ).fetchall()
    assert days == [(date(2025, 3, d), Decimal(24), True) for d in (5, 6, 7)]


def test_rollup_and_retention_commands(
    db: psycopg.Connection, db_url: str, doxa: Callable[..., Any]
) -> None:
    _reset(db)
    start = datetime(2025, 3, 1, tzinfo=ZONE)
    _steady_meter(db, "PB01010000001", "ST-1", start, 10)
    env = {"DOXA_DATABASE_URL": db_url}
    result = doxa("rollup", "--from", "2025-03-02", "--to", "2025-03-04", env=env)
    assert result.code == 0, result
    assert "3 meter-days over 3 day(s) of 1 meter(s), 3 final" in result.out
    bad = doxa("rollup", "--from", "2025-03-04", "--to", "2025-03-02", env=env)
    assert bad.code == 2 and len(bad.err.strip().splitlines()) == 1
    kept = doxa("retention", env=env)  # DOXA_RETENTION_MONTHS unset: 0, keep everything
    assert kept.code == 0 and "nothing dropped" in kept.out
    negative = doxa("retention", env={**env, "DOXA_RETENTION_MONTHS": "-1"})
    assert negative.code == 2
