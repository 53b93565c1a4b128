"""The customer pages' queries stay cheap as history grows: every reading query is time-bounded
and uses the (meter_id, ts) index, so it opens only the few chunks it needs out of 30 weeks."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from test_web_customer_data import NOW, ZONE, add_customer, ensure_tariffs

from billing.periods import Period, add_months, period_start
from lookup_web import customer_queries as q
from lookup_web.customer_dashboard import build
from schema.register_inputs import registers

pytestmark = pytest.mark.db

WEEKS = 30


class Recorder:
    """Passes queries on to a real connection and remembers them for EXPLAIN."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn
        self.queries: list[tuple[str, Any]] = []

    def execute(self, sql: str, params: Any = None, prepare: bool | None = None) -> Any:
        self.queries.append((sql, params))
        return self.conn.execute(sql, params, prepare=prepare)


def chunk_scans(conn: psycopg.Connection, sql: str, params: Any) -> list[tuple[str, int]]:
    """(node type, times run) of every scan of a readings chunk in the query's executed plan."""
    row = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params).fetchone()
    assert row is not None
    plan = row[0] if isinstance(row[0], list) else json.loads(row[0])
    found = []

    def walk(node: dict[str, Any]) -> None:
        if "_hyper_" in node.get("Relation Name", ""):
            found.append((node["Node Type"], node["Actual Loops"]))
        for child in node.get("Plans", []):
            walk(child)

    walk(plan[0]["Plan"])
    return found


def add_bill(db: psycopg.Connection, meter_id: int, period: str, kwh: int) -> None:
    db.execute(
        "INSERT INTO bills (customer_id, meter_id, period, period_start, period_end, days,"
        " start_index_kwh, end_index_kwh, consumption_kwh, amount_vnd, vat_vnd, total_vnd,"
        " breakdown) SELECT customer_id, id, %s, '2025-01-01', '2025-02-01', 31, 0, 0, %s,"
        " 0, 0, 0, '{}' FROM meters WHERE id = %s",
        (period, kwh, meter_id),
    )


@pytest.fixture
def history(db: psycopg.Connection) -> tuple[q.Customer, q.Meter]:
    """50 meters with hourly readings over 30 weeks: 30 chunks, ~250k rows."""
    ensure_tariffs(db)
    ids = [add_customer(db, f"PB0101{n:07d}", f"M{n:04d}") for n in range(50)]
    db.execute(
        "INSERT INTO readings (meter_id, ts, energy_import_kwh, quality, source)"
        " SELECT m, t, extract(epoch FROM t - %(start)s) / 3600 * 0.3, 'actual', 'backfill'"
        " FROM unnest(%(meters)s::int[]) AS m,"
        " generate_series(%(start)s, %(end)s, interval '1 hour') AS t",
        {"meters": [m for _, m in ids], "start": NOW - timedelta(weeks=WEEKS), "end": NOW},
    )
    db.execute("ANALYZE readings")
    customer, meters = q.customer_and_meters(db, ids[7][0])
    assert customer is not None and [m.serial for m in meters] == ["M0007"]
    meter = meters[0]
    return customer, meter


def test_reading_queries_open_few_chunks_through_an_index(
    db: psycopg.Connection, history: tuple[q.Customer, q.Meter]
) -> None:
    customer, meter = history
    chunks = db.execute("SELECT count(*) FROM show_chunks('readings')").fetchone()
    assert chunks is not None and chunks[0] >= WEEKS
    recorder = Recorder(db)
    for days in (30, 90):
        board = build(recorder, customer, meter, now=NOW, zone=ZONE, days=days)  # type: ignore[arg-type]
        assert board.latest is not None and board.today.kwh == pytest.approx(3.0)  # 10 h × 0.3
    # Once the closed months are billed, the page reads around the days it shows only.
    for months_back in range(1, 12):
        start = add_months(period_start(NOW.date(), customer.reading_day), -months_back)
        add_bill(db, meter.id, str(Period.ending_after(start)), kwh=216)
    billed = build(recorder, customer, meter, now=NOW, zone=ZONE, days=30)  # type: ignore[arg-type]
    assert [m.kwh for m in billed.months[-12:-1]] == [216] * 11
    q.readings_page(recorder, meter.id, now=NOW, size=48)  # type: ignore[arg-type]
    q.readings_page(recorder, meter.id, before=NOW - timedelta(days=50), now=NOW, size=48)  # type: ignore[arg-type]

    reading_queries = [(s, p) for s, p in recorder.queries if "FROM readings" in s]
    assert len(reading_queries) >= 8
    for sql, params in reading_queries:
        scans = chunk_scans(db, sql, params)
        assert scans, sql
        kinds = {kind for kind, _ in scans}
        assert kinds <= {"Index Scan", "Index Only Scan", "Index Scan Backward"}, (sql, kinds)
        if "at" in params:
            # Two one-row probes per instant; each opens the chunk holding its day, two at most.
            probes = 2 * len(params["at"])
            assert sum(loops for _, loops in scans) <= 2 * probes, sql[:60]
        elif "lo" in params:
            # Resets and glitches: one range scan of the meter over the span the page shows
            # (12 months unbilled, the chart's days once billed), never the whole history.
            weeks = (max(params["hi"]) - min(params["lo"])).days // 7 + 2
            opened = [kind for kind, loops in scans if loops]
            assert len(opened) <= weeks, (len(opened), weeks)
        else:
            # The latest reading looks 3 days back, a readings page 35 days: ≤ 6 of 30 chunks.
            assert len(scans) <= 6, (sql[:60], len(scans))
    spans = [p for s, p in recorder.queries if "lo" in p]
    assert (max(spans[-1]["hi"]) - min(spans[-1]["lo"])).days <= 32  # billed: 30 days shown


def test_boundary_inside_a_long_gap_is_interpolated_from_further_away(
    db: psycopg.Connection,
) -> None:
    from datetime import datetime

    from test_web_customer_data import add_readings, steady_readings

    _, meter_id = add_customer(db, "PB01010012345", "GAP-1")
    rows = steady_readings(NOW - timedelta(days=40), NOW, timedelta(hours=1), 0, 1)
    gap = (datetime(2025, 6, 13, tzinfo=ZONE), datetime(2025, 6, 17, tzinfo=ZONE))
    add_readings(db, meter_id, [r for r in rows if not gap[0] <= r[0] < gap[1]])
    boundaries = [datetime(2025, 5, 15, tzinfo=ZONE), datetime(2025, 6, 15, tzinfo=ZONE)]
    before_history = datetime(2025, 4, 15, tzinfo=ZONE)
    instants = [before_history, *boundaries]
    register = registers(db, {meter_id: instants})[meter_id]
    indices = [register.index_at(at) for at in instants]
    assert indices[0].kwh is None  # the meter had no readings yet
    assert indices[1].kwh == pytest.approx(
        rows[0][1] + (boundaries[0] - rows[0][0]).total_seconds() / 3600
    )
    assert not indices[1].estimated
    # 15 June falls in a 4-day gap: interpolated between 12 June 23:00 and 17 June 00:00.
    expected = rows[0][1] + (boundaries[1] - rows[0][0]).total_seconds() / 3600
    assert indices[2].kwh == pytest.approx(expected) and indices[2].estimated
