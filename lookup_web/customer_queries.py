"""The customer pages' queries: each uses an index, each is prepared, each carries a time bound.

``readings`` is a hypertable in 7-day chunks. A query without a time bound makes the planner open
every chunk, which costs more as history grows; so each reading query states the window it needs.
The latest reading is first sought in the last few days, then further back. The readings that
daily and monthly use rest on are fetched by ``schema.register_inputs``, the one place the
metering rules' inputs are read (as bills and the closing-index export read them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg

from billing.tariff import Tier

# The latest reading is sought in these windows, in turn, before giving up.
LATEST_WINDOWS = (timedelta(days=3), timedelta(days=400))
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
    multiplier: Decimal
    active: bool
    households: int = 1  # sharing the meter: its tier widths × households (contract §11)


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
        " m.id, m.serial, m.multiplier, m.active, m.households"
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


def meter_bills(
    conn: psycopg.Connection, meter_id: int, periods: Sequence[str]
) -> dict[str, tuple[int, bool]]:
    """(billed kWh, estimated) of this meter's bills of ``periods``: the monthly chart shows a
    closed period as billed."""
    rows = conn.execute(
        # A corrected bill's versions add up to the corrected consumption.
        "SELECT period, sum(consumption_kwh), bool_or(estimated) FROM bills"
        " WHERE meter_id = %s AND period = ANY(%s) GROUP BY period",
        (meter_id, list(periods)),
        prepare=True,
    ).fetchall()
    return {period: (int(kwh), bool(estimated)) for period, kwh, estimated in rows}


def tariff(conn: psycopg.Connection, tariff_group: str, on: date) -> list[Tier] | None:
    """The tiers of the table in force on ``on``."""
    rows = conn.execute(
        "SELECT tt.tier, tt.width_kwh, tt.price_vnd FROM tariff_tiers tt"
        " WHERE tt.tariff_id = (SELECT id FROM tariff_tables WHERE tariff_group = %s"
        "   AND effective_from <= %s ORDER BY effective_from DESC LIMIT 1)"
        " ORDER BY tt.tier",
        (tariff_group, on),
        prepare=True,
    ).fetchall()
    return [Tier(*r) for r in rows] or None


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
    # Contract §11: a correction is a further version holding the difference; the name is the
    # account's on the bill's last day (frozen when issued).
    version: int = 1
    correction_reason: str | None = None
    customer_name: str = ""
    meter_id: int = 0


_BILL_COLUMNS = (
    "b.id, b.period, m.serial, b.period_start, b.period_end, b.days, b.start_index_kwh,"
    " b.end_index_kwh, b.consumption_kwh, b.amount_vnd, b.vat_vnd, b.total_vnd, b.estimated,"
    " b.status, b.breakdown, b.version, b.correction_reason,"
    " coalesce(b.customer_name, customer_name_on(b.customer_id, b.period_end - 1)), b.meter_id"
)


def bills(conn: psycopg.Connection, customer_id: int, limit: int = 36) -> list[BillRow]:
    rows = conn.execute(
        f"SELECT {_BILL_COLUMNS} FROM bills b JOIN meters m ON m.id = b.meter_id"
        " WHERE b.customer_id = %s ORDER BY b.period DESC, m.serial, b.version LIMIT %s",
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


def bill_versions(conn: psycopg.Connection, bill: BillRow) -> list[BillRow]:
    """Every version of the bill's meter and period, first first (one, unless corrected)."""
    rows = conn.execute(
        f"SELECT {_BILL_COLUMNS} FROM bills b JOIN meters m ON m.id = b.meter_id"
        " WHERE b.meter_id = %s AND b.period = %s ORDER BY b.version",
        (bill.meter_id, bill.period),
    ).fetchall()
    return [BillRow(*r) for r in rows]
