"""Compute one period's bills into the ``bills`` table (contract §8); the I/O shell around the
pure ``closing`` and ``tariff`` modules.

For every active meter of every customer (each customer's period ends on its reading day of the
month): find the readings nearest each boundary (indexed ``LIMIT 1`` queries bounded to
:data:`SEARCH_WINDOW`), the recorded replacements and the register drops between them, close the
indices, price the consumption and upsert the bill with its breakdown. Re-running replaces draft
bills and never duplicates; issued bills are left alone. Meters that cannot be billed are listed
with the reason in the report and in ``bill_skips``, and any draft of theirs is removed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import psycopg
from psycopg.types.json import Jsonb

from billing.periods import Period
from billing.tariff import Priced, TariffTable, Tier, VatRate, price
from doxa.errors import BillingDataError, NoClosing, TariffError
from metering.calendar import local_midnight
from metering.register import (
    DETECTED_DROP,
    DROP_NOISE_KWH,
    MAX_REGISTER_KW,
    REPLACEMENT,
    Closing,
    Point,
    Reset,
    close,
    outer_readings,
)

# How far from a boundary a reading may be and still close it. Also bounds every readings query
# in time, so the hypertable only opens the chunks around the boundaries.
SEARCH_WINDOW = timedelta(days=62)
# pg_advisory_xact_lock key prefix "bill": two runs of one period take turns.
_LOCK_PREFIX = int.from_bytes(b"bill", "big") << 20


@dataclass(frozen=True)
class MeterToBill:
    meter_id: int
    serial: str
    multiplier: Decimal
    customer_id: int
    customer_code: str
    reading_day: int
    tariff_group: str


class Replacement(NamedTuple):
    """A row of ``meter_resets``."""

    ts: datetime
    old_final_kwh: float | None
    new_start_kwh: float


@dataclass(frozen=True)
class Skipped:
    customer_code: str
    meter_serial: str
    reason: str


@dataclass
class RunReport:
    period: str
    written: int = 0
    estimated: int = 0
    kept_issued: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


# The nearest reading on each side of two instants, each an index scan of (meter_id, ts) bounded
# in time. A reading exactly at an instant is found on both sides.
_BRACKETS = """
(SELECT ts, energy_import_kwh FROM readings
  WHERE meter_id = %(m)s AND ts <= %(s)s AND ts > %(s_lo)s ORDER BY ts DESC LIMIT 1)
UNION ALL
(SELECT ts, energy_import_kwh FROM readings
  WHERE meter_id = %(m)s AND ts >= %(s)s AND ts < %(s_hi)s ORDER BY ts LIMIT 1)
UNION ALL
(SELECT ts, energy_import_kwh FROM readings
  WHERE meter_id = %(m)s AND ts <= %(e)s AND ts > %(e_lo)s ORDER BY ts DESC LIMIT 1)
UNION ALL
(SELECT ts, energy_import_kwh FROM readings
  WHERE meter_id = %(m)s AND ts >= %(e)s AND ts < %(e_hi)s ORDER BY ts LIMIT 1)
"""

# Consecutive readings between the outer brackets where the register fell by more than noise
# (a reset) or climbed faster than a meter can count (a glitch). One range scan per meter that
# returns only those pairs.
_STEPS = """
SELECT prev_ts, prev_kwh, ts, kwh, kwh < prev_kwh - %(noise)s AS dropped FROM (
  SELECT ts, energy_import_kwh AS kwh,
         lag(ts) OVER (ORDER BY ts) AS prev_ts,
         lag(energy_import_kwh) OVER (ORDER BY ts) AS prev_kwh
    FROM readings WHERE meter_id = %(m)s AND ts >= %(lo)s AND ts <= %(hi)s
) pairs
WHERE kwh < prev_kwh - %(noise)s
   OR kwh - prev_kwh > %(max_kw)s * greatest(extract(epoch FROM ts - prev_ts) / 3600, 1.0 / 3600)
ORDER BY ts
"""

_LAST_BEFORE = """
SELECT ts, energy_import_kwh FROM readings
 WHERE meter_id = %s AND ts < %s AND ts >= %s ORDER BY ts DESC LIMIT 1
"""

_UPSERT = """
INSERT INTO bills (customer_id, meter_id, period, period_start, period_end, days,
                   start_index_kwh, end_index_kwh, consumption_kwh, amount_vnd, vat_vnd,
                   total_vnd, estimated, breakdown)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (meter_id, period) DO UPDATE SET
    customer_id = EXCLUDED.customer_id, period_start = EXCLUDED.period_start,
    period_end = EXCLUDED.period_end, days = EXCLUDED.days,
    start_index_kwh = EXCLUDED.start_index_kwh, end_index_kwh = EXCLUDED.end_index_kwh,
    consumption_kwh = EXCLUDED.consumption_kwh, amount_vnd = EXCLUDED.amount_vnd,
    vat_vnd = EXCLUDED.vat_vnd, total_vnd = EXCLUDED.total_vnd,
    estimated = EXCLUDED.estimated, breakdown = EXCLUDED.breakdown, computed_at = now()
WHERE bills.status = 'draft'
RETURNING id
"""


def load_tariffs(conn: psycopg.Connection) -> dict[str, list[TariffTable]]:
    """Every tariff table, by tariff group."""
    rows = conn.execute(
        "SELECT t.tariff_group, t.effective_from, t.source, s.tier, s.width_kwh, s.price_vnd"
        " FROM tariff_tables t JOIN tariff_tiers s ON s.tariff_id = t.id"
        " ORDER BY t.tariff_group, t.effective_from, s.tier"
    ).fetchall()
    tiers: dict[tuple[str, Any, str], list[Tier]] = defaultdict(list)
    for group, effective_from, source, tier, width, price_vnd in rows:
        tiers[(group, effective_from, source)].append(Tier(tier, width, price_vnd))
    tables: dict[str, list[TariffTable]] = defaultdict(list)
    try:
        for (group, effective_from, source), group_tiers in tiers.items():
            tables[group].append(TariffTable(effective_from, tuple(group_tiers), source))
    except TariffError as exc:
        raise BillingDataError(f"tariff data: {exc}") from exc
    return dict(tables)


def load_vat_rates(conn: psycopg.Connection) -> list[VatRate]:
    rows = conn.execute("SELECT effective_from, rate FROM vat_rates ORDER BY effective_from")
    return [VatRate(day, rate) for day, rate in rows]


def meters_to_bill(conn: psycopg.Connection) -> list[MeterToBill]:
    rows = conn.execute(
        "SELECT m.id, m.serial, m.multiplier, c.id, c.code, c.reading_day, c.tariff_group"
        " FROM meters m JOIN customers c ON c.id = m.customer_id"
        " WHERE m.active ORDER BY c.code, m.serial"
    ).fetchall()
    return [MeterToBill(*row) for row in rows]


def _point(row: tuple[datetime, float] | None) -> Point | None:
    return None if row is None else Point(row[0], row[1])


def load_replacements(
    conn: psycopg.Connection, period: Period, zone: ZoneInfo
) -> dict[int, list[Replacement]]:
    """The replacements recorded in ``meter_resets`` that may matter to ``period``, by meter."""
    before = period.previous()
    lo = local_midnight(date(before.year, before.month, 1), zone) - SEARCH_WINDOW
    hi = local_midnight(date(period.year, period.month, 28), zone) + SEARCH_WINDOW
    found: dict[int, list[Replacement]] = defaultdict(list)
    for meter_id, *replacement in conn.execute(
        "SELECT meter_id, ts, old_final_kwh, new_start_kwh FROM meter_resets"
        " WHERE ts > %s AND ts <= %s ORDER BY meter_id, ts",
        (lo, hi),
    ):
        found[meter_id].append(Replacement(*replacement))
    return dict(found)


def find_resets(
    conn: psycopg.Connection,
    meter_id: int,
    lo: datetime,
    hi: datetime,
    recorded: Sequence[Replacement],
) -> tuple[list[Reset], str | None]:
    """The register resets of a meter between two instants: the recorded replacements and the
    drops seen in the readings. Returns them, or a reason not to bill."""
    replacements = []
    previous = lo
    for ts, old_final, new_start in (r for r in recorded if lo < r.ts <= hi):
        if old_final is not None:
            old_last: Point | None = Point(ts, old_final)
        else:  # the old register's last reading stands for its final value
            old_last = _point(conn.execute(_LAST_BEFORE, (meter_id, ts, previous)).fetchone())
        replacements.append(Reset(old_last, Point(ts, new_start), REPLACEMENT))
        previous = ts
    drops = []
    steps = conn.execute(
        _STEPS,
        {"m": meter_id, "lo": lo, "hi": hi, "noise": DROP_NOISE_KWH, "max_kw": MAX_REGISTER_KW},
    ).fetchall()
    for prev_ts, prev_kwh, ts, kwh, dropped in steps:
        if any(prev_ts < r.new_first.ts <= ts for r in replacements):
            continue  # explained by a recorded replacement
        if not dropped:
            return [], (
                f"implausible register jump from {prev_kwh:g} to {kwh:g} kWh"
                f" between {prev_ts:%Y-%m-%d %H:%M %z} and {ts:%Y-%m-%d %H:%M %z}"
                " (a glitch, or a replacement to record in the inventory)"
            )
        drops.append(Reset(Point(prev_ts, prev_kwh), Point(ts, kwh), DETECTED_DROP))
    return replacements + drops, None


def close_meter(
    conn: psycopg.Connection,
    meter_id: int,
    start: datetime,
    end: datetime,
    recorded: Sequence[Replacement] = (),
) -> Closing:
    """Close a meter's register at ``start`` and ``end`` from the database; raises NoClosing."""
    readings = [
        Point(ts, kwh)
        for ts, kwh in conn.execute(
            _BRACKETS,
            {
                "m": meter_id,
                "s": start,
                "s_lo": start - SEARCH_WINDOW,
                "s_hi": start + SEARCH_WINDOW,
                "e": end,
                "e_lo": end - SEARCH_WINDOW,
                "e_hi": end + SEARCH_WINDOW,
            },
        )
    ]
    try:
        first, last = outer_readings(start, end, readings)
    except NoClosing as exc:
        raise NoClosing(f"{exc} (searched {SEARCH_WINDOW.days} days)") from None
    resets, problem = find_resets(conn, meter_id, first.ts, last.ts, recorded)
    if problem:
        raise NoClosing(problem)
    return close(start, end, readings, resets)


def breakdown(
    priced: Priced, closing: Closing, meter: MeterToBill, zone: ZoneInfo
) -> dict[str, Any]:
    """The JSON the customer page renders, part by part and tier by tier."""
    return {
        "parts": [part.to_json() for part in priced.parts],
        "segments": [s.to_json(meter.serial, meter.multiplier, zone) for s in closing.segments],
        "estimated": closing.estimated,
        "multiplier": f"{meter.multiplier.normalize():f}",
    }


@dataclass(frozen=True)
class _Run:
    """What every meter of one run needs, loaded once."""

    period: Period
    zone: ZoneInfo
    tariffs: dict[str, list[TariffTable]]
    vat_rates: list[VatRate]
    replacements: dict[int, list[Replacement]]


def run_bills(conn: psycopg.Connection, period: Period, zone: ZoneInfo) -> RunReport:
    """Compute the bills of ``period`` for every active meter, in one transaction."""
    report = RunReport(str(period))
    with conn.transaction():
        conn.execute(
            "SELECT pg_advisory_xact_lock(%s)", (_LOCK_PREFIX | (period.year * 12 + period.month),)
        )
        # Timestamps come back in local time, as the customer reads them in messages.
        conn.execute("SELECT set_config('TimeZone', %s, true)", (zone.key,))
        conn.execute("DELETE FROM bill_skips WHERE period = %s", (str(period),))
        run = _Run(
            period,
            zone,
            load_tariffs(conn),
            load_vat_rates(conn),
            load_replacements(conn, period, zone),
        )
        issued = {
            row[0]
            for row in conn.execute(
                "SELECT meter_id FROM bills WHERE period = %s AND status = 'issued'", (str(period),)
            )
        }
        for meter in meters_to_bill(conn):
            if meter.meter_id in issued:
                report.kept_issued.append((meter.customer_code, meter.serial))
                continue
            try:
                estimated = _bill_meter(conn, run, meter)
            except (NoClosing, TariffError) as exc:
                _record_skip(conn, period, meter, str(exc))
                report.skipped.append(Skipped(meter.customer_code, meter.serial, str(exc)))
                continue
            if estimated is None:
                report.kept_issued.append((meter.customer_code, meter.serial))
            else:
                report.written += 1
                report.estimated += estimated
    return report


def _bill_meter(conn: psycopg.Connection, run: _Run, meter: MeterToBill) -> bool | None:
    """Compute and upsert one meter's bill; returns whether it is estimated, or None when an
    issued bill was in the way."""
    first_day, closing_day = run.period.dates(meter.reading_day)
    closing = close_meter(
        conn,
        meter.meter_id,
        local_midnight(first_day, run.zone),
        local_midnight(closing_day, run.zone),
        run.replacements.get(meter.meter_id, ()),
    )
    consumption = closing.consumption_kwh(meter.multiplier)
    try:
        priced = price(
            consumption,
            first_day,
            closing_day,
            run.tariffs.get(meter.tariff_group, []),
            run.vat_rates,
        )
    except TariffError as exc:
        raise TariffError(f"{meter.tariff_group} tariff: {exc}") from None
    row = conn.execute(
        _UPSERT,
        (
            meter.customer_id,
            meter.meter_id,
            str(run.period),
            first_day,
            closing_day,
            (closing_day - first_day).days,
            closing.start_kwh,
            closing.end_kwh,
            consumption,
            priced.amount_vnd,
            priced.vat_vnd,
            priced.total_vnd,
            closing.estimated,
            Jsonb(breakdown(priced, closing, meter, run.zone)),
        ),
    ).fetchone()
    return None if row is None else closing.estimated


def _record_skip(conn: psycopg.Connection, period: Period, meter: MeterToBill, reason: str) -> None:
    """List the meter in ``bill_skips`` and drop the draft it may have from an earlier run."""
    conn.execute(
        "DELETE FROM bills WHERE meter_id = %s AND period = %s AND status = 'draft'",
        (meter.meter_id, str(period)),
    )
    conn.execute(
        "INSERT INTO bill_skips (meter_id, period, customer_id, reason) VALUES (%s, %s, %s, %s)",
        (meter.meter_id, str(period), meter.customer_id, reason),
    )
