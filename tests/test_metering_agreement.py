"""Contract §10, checked as a property over random meters against a real TimescaleDB: for any
readings (irregular times, gaps, qualities, register drops, glitches, noise), recorded
replacements and reading days, the three users of the metering rule agree.

- The bill's end index equals the closing-index export's index of that period, to the 0.001 kWh
  the contract names, and an estimated export index means an estimated bill.
- The bill's start and end index equal the indices the customer's page rests the period's
  monthly bar on, and the bar before the bill is computed equals the bill's kWh; after, the bar
  is the bill's kWh.
- A meter the bill run skips has no bar for that period on the page either.
"""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import exports
from billing.periods import Period
from billing.run import run_bills
from lookup_web import customer_queries as q
from lookup_web.customer_dashboard import build
from metering.calendar import local_midnight

pytestmark = pytest.mark.db
ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
ORIGIN = datetime(2025, 3, 1, tzinfo=ZONE)
QUALITIES = st.sampled_from(["actual"] * 30 + ["estimated", "edited"])
# Per reading: mostly a climb; now and then a reset, a replacement, noise or a glitch.
EVENTS = st.sampled_from(["climb"] * 200 + ["drop", "replace"] * 2 + ["noise", "glitch"])


@st.composite
def histories(draw: st.DrawFn) -> dict[str, Any]:
    """One meter's readings over about 80 days with the odd reset, replacement and glitch."""
    readings: list[tuple[datetime, float, str]] = []
    replacements: list[tuple[datetime, float | None, float]] = []
    ts, kwh = (
        ORIGIN + timedelta(minutes=draw(st.integers(0, 600))),
        draw(st.floats(0, 50_000).map(lambda x: round(x, 3))),
    )
    end = ORIGIN + timedelta(days=80)
    while ts < end:
        readings.append((ts, kwh, draw(QUALITIES)))
        gap = timedelta(
            minutes=draw(st.sampled_from([1440, 15, 30, 30, 60, 90, 150, 300, 4000]))
            + draw(st.integers(0, 14))
        )
        event = draw(EVENTS)
        hours = gap / timedelta(hours=1)
        climb = round(hours * draw(st.floats(0, 3)), 3)
        if event == "drop":
            kwh = round(draw(st.floats(0, 20)), 3)
            kwh_next = kwh
        elif event == "replace":
            swap = ts + gap / 2
            final = round(kwh + climb / 2, 3)
            start = round(draw(st.floats(0, 5)), 3)
            replacements.append((swap, draw(st.sampled_from([final, None])), start))
            kwh_next = round(start + climb / 2, 3)
        elif event == "noise":
            kwh_next = round(kwh - draw(st.floats(0, 0.9)), 3)
        elif event == "glitch":
            kwh_next = kwh + 1e7
        else:
            kwh_next = round(kwh + climb, 3)
        ts, kwh = ts + gap, kwh_next
    return {
        "readings": readings,
        "replacements": replacements,
        "reading_day": draw(st.integers(1, 28)),
        "multiplier": draw(st.sampled_from([Decimal(1), Decimal(1), Decimal(40), Decimal("2.5")])),
    }


def _reset(db: psycopg.Connection) -> None:
    db.execute(
        "TRUNCATE bills, bill_skips, meter_resets, readings, meter_status, audit_log, meters,"
        " customers RESTART IDENTITY CASCADE"
    )


def _load(db: psycopg.Connection, k: int, meter: dict[str, Any]) -> int:
    customer = db.execute(
        "INSERT INTO customers (code, name, reading_day) VALUES (%s, 'x', %s) RETURNING id",
        (f"PB0101{k:07d}", meter["reading_day"]),
    ).fetchone()
    assert customer is not None
    row = db.execute(
        "INSERT INTO meters (serial, customer_id, protocol, multiplier)"
        " VALUES (%s, %s, 'mqtt', %s) RETURNING id",
        (f"P-{k}", customer[0], meter["multiplier"]),
    ).fetchone()
    assert row is not None
    with db.cursor() as cur:
        cur.executemany(
            "INSERT INTO readings (meter_id, ts, energy_import_kwh, quality, source)"
            " VALUES (%s, %s, %s, %s, 'backfill')",
            [(row[0], ts, kwh, quality) for ts, kwh, quality in meter["readings"]],
        )
        cur.executemany(
            "INSERT INTO meter_resets (meter_id, ts, old_final_kwh, new_start_kwh)"
            " VALUES (%s, %s, %s, %s)",
            [(row[0], *r) for r in meter["replacements"]],
        )
    return int(row[0])


def _month(db: psycopg.Connection, meter_id: int, now: datetime, start: date) -> Any:
    """The page's monthly bar of the period starting on ``start`` (and what it rests on)."""
    customer_id = db.execute("SELECT customer_id FROM meters WHERE id = %s", (meter_id,)).fetchone()
    assert customer_id is not None
    customer, meters = q.customer_and_meters(db, customer_id[0])
    assert customer is not None
    board = build(db, customer, meters[0], now=now, zone=ZONE, days=30)
    (bar,) = [m for m in board.months if m.start == start]
    return bar


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.large_base_example,
        HealthCheck.data_too_large,
    ],
)
@given(meters=st.lists(histories(), min_size=1, max_size=3), back=st.integers(1, 2))
def test_bill_export_and_page_agree(
    db: psycopg.Connection, meters: list[dict[str, Any]], back: int
) -> None:
    _reset(db)
    ids = [_load(db, k, m) for k, m in enumerate(meters)]
    serials = {meter_id: f"P-{k}" for k, meter_id in enumerate(ids)}
    # The readings end on 20 May; period 2025-04 or 2025-05 has closed by 1 June for every
    # reading day (each meter's customer has its own, so the boundaries differ per meter).
    now = datetime(2025, 6, 1, 12, tzinfo=ZONE)
    period = Period(2025, 3 + back)
    starts = {
        meter_id: period.dates(m["reading_day"])[0] for meter_id, m in zip(ids, meters, strict=True)
    }
    before = {meter_id: _month(db, meter_id, now, starts[meter_id]) for meter_id in ids}

    report = run_bills(db, period, ZONE, batch=2)  # several batches
    bills = {
        row[0]: row[1:]
        for row in db.execute(
            "SELECT meter_id, start_index_kwh, end_index_kwh, consumption_kwh, estimated"
            " FROM bills WHERE period = %s",
            (str(period),),
        )
    }
    assert report.written == len(bills) and report.written + len(report.skipped) == len(ids)

    text = b"".join(exports.iter_csv(db, exports.closing_indices(str(period), ZONE.key))).decode()
    exported = {row["meter_serial"]: row for row in csv.DictReader(io.StringIO(text))}
    assert len(exported) == len(ids)

    for meter_id in ids:
        bar = before[meter_id]
        row = exported[serials[meter_id]]
        start, end = period.dates(meters[ids.index(meter_id)]["reading_day"])
        assert row["closing_at"] == local_midnight(end, ZONE).isoformat()
        history = meters[ids.index(meter_id)]
        event(f"replacements: {min(len(history['replacements']), 2)}")
        if meter_id not in bills:
            event("skipped")
            assert bar.kwh is None  # the rule gives no figure: neither bill nor bar
            continue
        start_kwh, end_kwh, consumption, estimated = bills[meter_id]
        assert Decimal(row["index_kwh"]) == end_kwh
        if row["estimated"] == "true":
            assert estimated
        event(f"billed, {len(bar.closing.segments) if bar.closing else 0} stretch(es)")
        event(f"estimated: {estimated}")
        assert bar.closing is not None and not bar.billed
        assert (bar.closing.start_kwh, bar.closing.end_kwh) == (start_kwh, end_kwh)
        assert (bar.kwh, bar.estimated) == (consumption, estimated)
        after = _month(db, meter_id, now, start)
        assert after.billed and (after.kwh, after.estimated) == (consumption, estimated)
