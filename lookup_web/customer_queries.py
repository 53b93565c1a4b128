"""The customer pages' queries: each uses an index, each is prepared, each carries a time bound.

``readings`` is a hypertable in 7-day chunks. A query without a time bound makes the planner open
every chunk, which costs more as history grows; so each reading query states the window it needs.
The latest reading is first sought in the last few days, then further back. Daily and monthly
consumption need only the index at each midnight or period boundary, so they are read as one-row
lookups either side of each instant (two index probes per day, however often the meter reports)
rather than by scanning every reading of the month.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg

from lookup_web.consumption import Anchor, Index, index_at

# The latest reading is sought in these windows, in turn, before giving up.
LATEST_WINDOWS = (timedelta(days=3), timedelta(days=400))
# How far from a boundary the readings that interpolate it are sought: first near, then far.
NEAR_REACH = timedelta(days=1)
BOUNDARY_REACH = timedelta(days=62)
# The readings table pages within these windows, in turn.
PAGE_WINDOWS = (timedelta(days=35), timedelta(days=400))


@dataclass(frozen=True)
class Customer:
    id: int
    code: str
    name: str
    address: str
    tariff_group: str
    reading_day: int


@dataclass(frozen=True)
class Meter:
    id: int
    serial: str
    multiplier: float
    active: bool


@dataclass(frozen=True)
class Reading:
    ts: datetime
    energy_import_kwh: float
    energy_export_kwh: float | None
    power_w: float | None
    voltage_v: float | None
    current_a: float | None
    quality: str


def _one(conn: psycopg.Connection, sql: str, params: Sequence[Any]) -> tuple[Any, ...] | None:
    return conn.execute(sql, params, prepare=True).fetchone()


def find_customer_id(conn: psycopg.Connection, code: str, serial: str) -> int | None:
    """The customer owning this code and meter serial together; one indexed query either way,
    so a wrong code and a wrong serial cost the same."""
    row = _one(
        conn,
        "SELECT c.id FROM customers c JOIN meters m ON m.customer_id = c.id"
        " WHERE c.code = %s AND m.serial = %s",
        (code, serial),
    )
    return int(row[0]) if row else None


def customer(conn: psycopg.Connection, customer_id: int) -> Customer | None:
    row = _one(
        conn,
        "SELECT id, code, name, address, tariff_group, reading_day FROM customers WHERE id = %s",
        (customer_id,),
    )
    return Customer(*row) if row else None


def customer_and_meters(
    conn: psycopg.Connection, customer_id: int
) -> tuple[Customer | None, list[Meter]]:
    """The customer and all their meters (by serial) in one round trip: what every meter page
    needs to check that the meter is theirs and to list the others."""
    rows = conn.execute(
        "SELECT c.id, c.code, c.name, c.address, c.tariff_group, c.reading_day,"
        " m.id, m.serial, m.multiplier::float8, m.active"
        " FROM customers c LEFT JOIN meters m ON m.customer_id = c.id"
        " WHERE c.id = %s ORDER BY m.serial",
        (customer_id,),
        prepare=True,
    ).fetchall()
    if not rows:
        return None, []
    return Customer(*rows[0][:6]), [Meter(*r[6:]) for r in rows if r[6] is not None]


def latest_reading(conn: psycopg.Connection, meter_id: int, now: datetime) -> Reading | None:
    """The newest reading, looked for in the last 3 days, then the last 400."""
    for window in LATEST_WINDOWS:
        row = _one(
            conn,
            "SELECT ts, energy_import_kwh, energy_export_kwh, power_w, voltage_v, current_a,"
            " quality FROM readings WHERE meter_id = %s AND ts >= %s"
            " ORDER BY ts DESC LIMIT 1",
            (meter_id, now - window),
        )
        if row:
            return Reading(*row)
    return None


def indices_at(
    conn: psycopg.Connection, meter_id: int, instants: Sequence[datetime]
) -> list[Index]:
    """The interpolated index at each instant (midnights, period boundaries), from the nearest
    reading on each side.

    Two one-row index lookups per instant, in one round trip: each looks no further than a day
    from its instant, and TimescaleDB opens only the chunk(s) that day falls in. A side found
    empty (a meter silent over the instant) is sought again up to 62 days away — except at the
    leading instants where nothing was found at all, before the meter's history begins."""
    near = _nearest(conn, meter_id, instants, NEAR_REACH)
    seen_data = False
    missing = []
    for k, (before, after) in enumerate(near):
        seen_data = seen_data or before is not None or after is not None
        if seen_data and (before is None or after is None):
            missing.append(k)
    if missing:
        far = _nearest(conn, meter_id, [instants[k] for k in missing], BOUNDARY_REACH)
        for k, (far_before, far_after) in zip(missing, far, strict=True):
            before, after = near[k]
            near[k] = (before or far_before, after or far_after)
    # The readings' times come back as naive UTC; so is each instant here, which makes the
    # interpolation's comparisons and differences exact without a time zone look-up each.
    out = []
    for at, (before, after) in zip(instants, near, strict=True):
        index = index_at(at.astimezone(UTC).replace(tzinfo=None), before, after)
        out.append(Index(at, index.kwh, index.estimated))
    return out


def _nearest(
    conn: psycopg.Connection, meter_id: int, instants: Sequence[datetime], reach: timedelta
) -> list[tuple[Anchor | None, Anchor | None]]:
    """The readings at or before and at or after each instant within ``reach``, in the order of
    ``instants``; their times in naive UTC."""
    if not instants:
        return []
    rows = conn.execute(
        "SELECT lo.ts AT TIME ZONE 'UTC', lo.energy_import_kwh, lo.quality,"
        " hi.ts AT TIME ZONE 'UTC', hi.energy_import_kwh, hi.quality"
        " FROM unnest(%(at)b::timestamptz[]) WITH ORDINALITY AS b(at, k)"
        " LEFT JOIN LATERAL (SELECT ts, energy_import_kwh, quality FROM readings"
        "   WHERE meter_id = %(meter)s AND ts <= b.at AND ts > b.at - %(reach)s"
        "     AND ts >= %(low)s AND ts <= %(high)s"
        "   ORDER BY ts DESC LIMIT 1) lo ON true"
        " LEFT JOIN LATERAL (SELECT ts, energy_import_kwh, quality FROM readings"
        "   WHERE meter_id = %(meter)s AND ts >= b.at AND ts < b.at + %(reach)s"
        "     AND ts >= %(low)s AND ts <= %(high)s"
        "   ORDER BY ts LIMIT 1) hi ON true"
        " ORDER BY b.k",
        {
            "at": list(instants),
            "meter": meter_id,
            "reach": reach,
            # Constant bounds as well, so the planner keeps only the chunks in range.
            "low": min(instants) - reach,
            "high": max(instants) + reach,
        },
        prepare=True,
    ).fetchall()
    return [
        (
            Anchor(lo_ts, lo_kwh, lo_q) if lo_ts is not None else None,
            Anchor(hi_ts, hi_kwh, hi_q) if hi_ts is not None else None,
        )
        for lo_ts, lo_kwh, lo_q, hi_ts, hi_kwh, hi_q in rows
    ]


def tariff(
    conn: psycopg.Connection, tariff_group: str, on: date
) -> list[tuple[int | None, int]] | None:
    """(width kWh or None, price VND) of each tier of the table in force on ``on``."""
    rows = conn.execute(
        "SELECT tt.width_kwh, tt.price_vnd FROM tariff_tiers tt"
        " WHERE tt.tariff_id = (SELECT id FROM tariff_tables WHERE tariff_group = %s"
        "   AND effective_from <= %s ORDER BY effective_from DESC LIMIT 1)"
        " ORDER BY tt.tier",
        (tariff_group, on),
        prepare=True,
    ).fetchall()
    return [(r[0], r[1]) for r in rows] or None


_READING_COLUMNS = (
    "ts, energy_import_kwh, energy_export_kwh, power_w, voltage_v, current_a, quality"
)


def readings_page(
    conn: psycopg.Connection,
    meter_id: int,
    *,
    before: datetime | None = None,
    after: datetime | None = None,
    now: datetime,
    size: int,
) -> tuple[list[Reading], bool]:
    """Up to ``size`` readings, newest first: older than ``before``, or the next newer than
    ``after``, or the newest. Returns the rows and whether more lie in that direction."""
    for window in PAGE_WINDOWS:
        if after is not None:
            rows = conn.execute(
                f"SELECT {_READING_COLUMNS} FROM readings WHERE meter_id = %s AND ts > %s"
                " AND ts <= %s ORDER BY ts LIMIT %s",
                (meter_id, after, after + window, size + 1),
                prepare=True,
            ).fetchall()
        else:
            upper = before if before is not None else now + timedelta(days=1)
            rows = conn.execute(
                f"SELECT {_READING_COLUMNS} FROM readings WHERE meter_id = %s AND ts < %s"
                " AND ts >= %s ORDER BY ts DESC LIMIT %s",
                (meter_id, upper, upper - window, size + 1),
                prepare=True,
            ).fetchall()
        if len(rows) > size:
            break
    more = len(rows) > size
    rows = rows[:size]
    if after is not None:
        rows.reverse()
    return [Reading(*r) for r in rows], more


@dataclass(frozen=True)
class BillRow:
    id: int
    period: str
    meter_serial: str
    period_start: date
    period_end: date
    days: int
    start_index_kwh: Decimal
    end_index_kwh: Decimal
    consumption_kwh: int
    amount_vnd: int
    vat_vnd: int
    total_vnd: int
    estimated: bool
    status: str
    breakdown: dict[str, Any]


_BILL_COLUMNS = (
    "b.id, b.period, m.serial, b.period_start, b.period_end, b.days, b.start_index_kwh,"
    " b.end_index_kwh, b.consumption_kwh, b.amount_vnd, b.vat_vnd, b.total_vnd, b.estimated,"
    " b.status, b.breakdown"
)


def bills(conn: psycopg.Connection, customer_id: int, limit: int = 36) -> list[BillRow]:
    rows = conn.execute(
        f"SELECT {_BILL_COLUMNS} FROM bills b JOIN meters m ON m.id = b.meter_id"
        " WHERE b.customer_id = %s ORDER BY b.period DESC, m.serial LIMIT %s",
        (customer_id, limit),
        prepare=True,
    ).fetchall()
    return [BillRow(*r) for r in rows]


def bill(conn: psycopg.Connection, customer_id: int, bill_id: int) -> BillRow | None:
    """The bill if, and only if, it is this customer's."""
    row = _one(
        conn,
        f"SELECT {_BILL_COLUMNS} FROM bills b JOIN meters m ON m.id = b.meter_id"
        " WHERE b.id = %s AND b.customer_id = %s",
        (bill_id, customer_id),
    )
    return BillRow(*row) if row else None
