"""Retention (contract §14, ``DOXA_RETENTION_MONTHS``): raw readings older than N months are
dropped a whole chunk at a time with TimescaleDB's ``drop_chunks`` (the Apache build has no
retention policy; the scheduler calls :func:`apply_retention` daily), while the daily rollup
(``meter_days``), the bills and everything else stay.

Before a chunk goes, every local day it holds that has no rollup row yet is rolled up
(:func:`schema.rollup.rollup_days`), so the customer's daily chart keeps its bars. What is lost
with the raw rows: the readings table and export of those days, and re-running a bill whose
boundaries lie there (it is skipped with "no reading"; issued bills never change anyway).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from billing.periods import add_months
from metering.expected import MQTT_INTERVAL_S, POLL_INTERVAL_S
from schema import audit
from schema.rollup import MAX_DAYS, rollup_days


@dataclass
class RetentionCounts:
    """What one retention run did."""

    cutoff: datetime | None = None
    chunks_dropped: int = 0
    days_rolled_up: int = 0

    def __str__(self) -> str:
        if self.cutoff is None:
            return "retention off (DOXA_RETENTION_MONTHS=0): nothing dropped"
        return (
            f"readings before {self.cutoff:%Y-%m-%d}: {self.chunks_dropped} chunk(s) dropped,"
            f" {self.days_rolled_up} day(s) rolled up first"
        )


def cutoff(scheduled_for: datetime, months: int, zone: ZoneInfo) -> datetime:
    """00:00 local of the same day ``months`` months before ``scheduled_for``'s local day."""
    day = scheduled_for.astimezone(zone).date().replace(day=1)
    first = add_months(day, -months)
    return datetime.combine(first, datetime.min.time(), tzinfo=zone)


def apply_retention(
    conn: psycopg.Connection[Any],
    scheduled_for: datetime,
    *,
    months: int,
    zone: ZoneInfo,
    mqtt_interval: float = MQTT_INTERVAL_S,
    poll_interval: float = POLL_INTERVAL_S,
    actor: str = "cli",
) -> RetentionCounts:
    """Drop the raw readings chunks wholly older than ``months`` months (from the first of the
    month), after rolling up their days not rolled up yet (with the configured expected
    intervals, as ``doxa rollup`` does); ``months`` 0 keeps everything. The drop is in the audit
    log (``readings.retention``: the cutoff and each chunk's time range), in its transaction."""
    if months <= 0:
        return RetentionCounts()
    before = cutoff(scheduled_for, months, zone)
    counts = RetentionCounts(before)
    chunks = conn.execute(
        "SELECT range_start, range_end FROM timescaledb_information.chunks"
        " WHERE hypertable_name = 'readings' AND range_end <= %s ORDER BY range_start",
        (before,),
    ).fetchall()
    if not chunks:
        return counts
    first_day: date = chunks[0][0].astimezone(zone).date()
    last_day: date = chunks[-1][1].astimezone(zone).date()
    rolled = {
        row[0]
        for row in conn.execute(
            "SELECT DISTINCT day FROM meter_days WHERE day >= %s AND day <= %s",
            (first_day, last_day),
        )
    }
    missing = [
        first_day + timedelta(days=k)
        for k in range((last_day - first_day).days + 1)
        if first_day + timedelta(days=k) not in rolled
    ]
    # Contiguous runs of missing days, at most MAX_DAYS each.
    runs: list[list[date]] = []
    for day in missing:
        if runs and day - runs[-1][-1] == timedelta(days=1) and len(runs[-1]) < MAX_DAYS:
            runs[-1].append(day)
        else:
            runs.append([day])
    for run in runs:
        rollup_days(conn, run[0], run[-1], zone=zone, mqtt_interval=mqtt_interval,
                    poll_interval=poll_interval)  # fmt: skip
        counts.days_rolled_up += len(run)
    with conn.transaction():
        dropped = conn.execute(
            "SELECT drop_chunks('readings', older_than => %s::timestamptz)", (before,)
        ).fetchall()
        counts.chunks_dropped = len(dropped)
        audit.record(conn, actor, "readings.retention",
                     {"months": months, "cutoff": before.isoformat(),
                      "chunks": [[a.isoformat(), b.isoformat()] for a, b in chunks]},
                     len(dropped))  # fmt: skip
    return counts
