"""Compute one period's bills into the ``bills`` table (contract §8); the I/O shell around the
pure ``metering.register`` (indices and consumption) and ``billing.tariff`` (amounts).

Meters are taken in blocks of :data:`BLOCK` meter ids (``meter_id // BLOCK``), and inside a
block in batches of up to :data:`BATCH` meters of one reading day: for each batch,
``schema.register_inputs`` fetches the readings nearest both boundaries of every meter's period
(all meters of a batch share their two boundaries, so TimescaleDB opens only the chunks around
them), the recorded replacements and the register drops between them, in three statements
whatever the batch size; the indices are closed and priced in Python, and the bills upserted
with their breakdown in one pipelined round trip.
Re-running replaces draft bills and never duplicates; issued bills are left alone. Meters that
cannot be billed are listed with the reason in the report and in ``bill_skips``, and any draft of
theirs is removed.

**Splitting a run.** A run may be limited to the customers of one reading day
(:func:`run_reading_day`, ``doxa bills run --reading-day N``) and to a range of meter ids
(``meter_range``): ``doxa bills run --workers K`` runs K processes on K disjoint ranges
(:func:`split_ranges`, cut at blocks). Before a block is billed its lock (period, block) is
taken and held to the end of the run's transaction, blocks in ascending order: two runs of one
period whose ranges overlap take turns on the shared blocks (never deadlock), disjoint ranges
never wait.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg.types.json import Jsonb

from billing import locks
from billing.lifecycle import Window, window
from billing.periods import Period
from billing.tariff import Priced, TariffTable, Tier, VatRate, price
from doxa.errors import BillingDataError, NoClosing, TariffError
from metering.calendar import local_midnight
from metering.register import Closing, Register
from schema.register_inputs import Predecessor, registers

# Meters whose inputs are fetched together: a few statements per batch.
BATCH = 1000
# Meter ids per advisory-lock block (billing.locks: one scheme for run, issue and correct).
BLOCK = locks.BLOCK
# The bills table keeps indices as numeric(14, 3): a register beyond this is a glitch.
MAX_INDEX_KWH = Decimal(10) ** 11


@dataclass(frozen=True)
class MeterToBill:
    meter_id: int
    serial: str
    multiplier: Decimal
    customer_id: int
    customer_code: str
    reading_day: int
    tariff_group: str
    # Its life (contract §11; billing.lifecycle): shared by households, replaced, retired.
    households: int = 1
    predecessor: Predecessor | None = None
    retired_at: datetime | None = None
    retired_reason: str | None = None

    def window(self, period: Period, zone: ZoneInfo) -> Window | None:
        installed = self.predecessor.until if self.predecessor else None
        return window(period, self.reading_day, zone, installed_at=installed,
                      retired_at=self.retired_at, retired_reason=self.retired_reason)  # fmt: skip


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


_UPSERT = """
INSERT INTO bills (customer_id, meter_id, period, period_start, period_end, days,
                   start_index_kwh, end_index_kwh, consumption_kwh, amount_vnd, vat_vnd,
                   total_vnd, estimated, breakdown, households)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (meter_id, period) WHERE version = 1 DO UPDATE SET
    customer_id = EXCLUDED.customer_id, period_start = EXCLUDED.period_start,
    period_end = EXCLUDED.period_end, days = EXCLUDED.days,
    start_index_kwh = EXCLUDED.start_index_kwh, end_index_kwh = EXCLUDED.end_index_kwh,
    consumption_kwh = EXCLUDED.consumption_kwh, amount_vnd = EXCLUDED.amount_vnd,
    vat_vnd = EXCLUDED.vat_vnd, total_vnd = EXCLUDED.total_vnd,
    estimated = EXCLUDED.estimated, breakdown = EXCLUDED.breakdown, computed_at = now(),
    households = EXCLUDED.households, held_reason = NULL
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


MeterRange = tuple[int, int]  # meter ids lo..hi, both included


def meters_to_bill(
    conn: psycopg.Connection,
    period: Period | None = None,
    reading_days: Collection[int] | None = None,
    meter_range: MeterRange | None = None,
) -> list[MeterToBill]:
    """The meters in service (only those of customers with one of ``reading_days``, and with an
    id in ``meter_range``, when given), and those retired recently enough to owe a bill of
    ``period`` (``MeterToBill.window`` decides), by meter id."""
    since = Period(2000, 1) if period is None else period.previous().previous()
    days = None if reading_days is None else sorted(reading_days)
    lo, hi = meter_range if meter_range is not None else (None, None)
    rows = conn.execute(
        "SELECT m.id, m.serial, m.multiplier, c.id, c.code, c.reading_day, c.tariff_group,"
        " m.households, m.replaces_meter_id, p.serial, m.installed_at, m.retired_at,"
        " m.retired_reason"
        " FROM meters m JOIN customers c ON c.id = m.customer_id"
        " LEFT JOIN meters p ON p.id = m.replaces_meter_id"
        " WHERE (m.active OR m.retired_at >= %(since)s)"
        " AND (%(days)s::int[] IS NULL OR c.reading_day = ANY(%(days)s::int[]))"
        " AND (%(lo)s::int IS NULL OR m.id >= %(lo)s) AND (%(hi)s::int IS NULL OR m.id <= %(hi)s)"
        " ORDER BY m.id",
        {
            "since": datetime(since.year, since.month, 1, tzinfo=ZoneInfo("UTC")),
            "days": days,
            "lo": lo,
            "hi": hi,
        },
    ).fetchall()
    return [
        MeterToBill(
            meter_id=r[0],
            serial=r[1],
            multiplier=r[2],
            customer_id=r[3],
            customer_code=r[4],
            reading_day=r[5],
            tariff_group=r[6],
            households=r[7],
            predecessor=Predecessor(r[8], r[9], r[10]) if r[8] else None,
            retired_at=r[11],
            retired_reason=r[12],
        )
        for r in rows
    ]


def split_ranges(
    conn: psycopg.Connection, workers: int, *, block: int = BLOCK, reading_day: int | None = None
) -> list[MeterRange]:
    """Up to ``workers`` disjoint ranges of meter ids, cut at block boundaries (so two workers
    never wait on one lock), holding about as many blocks each (one cheap aggregate)."""
    row = conn.execute(
        "SELECT array_agg(DISTINCT m.id / %(block)s ORDER BY m.id / %(block)s)"
        " FROM meters m JOIN customers c ON c.id = m.customer_id"
        " WHERE m.active AND (%(day)s::int IS NULL OR c.reading_day = %(day)s)",
        {"block": block, "day": reading_day},
    ).fetchone()
    blocks: list[int] = (row[0] if row else None) or []
    if not blocks:
        return []
    share = -(-len(blocks) // max(1, workers))
    return [
        (blocks[k] * block, blocks[min(k + share, len(blocks)) - 1] * block + block - 1)
        for k in range(0, len(blocks), share)
    ]


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


def _life(meter: MeterToBill, bill_window: Window) -> dict[str, Any]:
    """What the breakdown says of the meter's life: households, a final bill."""
    out: dict[str, Any] = {"households": meter.households}
    if bill_window.final:
        out["final"] = True
    return out


@dataclass(frozen=True)
class _Run:
    """What every meter of one run needs, loaded once."""

    period: Period
    zone: ZoneInfo
    tariffs: dict[str, list[TariffTable]]
    vat_rates: list[VatRate]
    issued: set[int]


def run_bills(
    conn: psycopg.Connection[Any],
    period: Period,
    zone: ZoneInfo,
    *,
    batch: int = BATCH,
    block: int = BLOCK,
    reading_days: Collection[int] | None = None,
    reading_day: int | None = None,
    meter_range: MeterRange | None = None,
) -> RunReport:
    """Compute the bills of ``period`` for every active meter, in one transaction; with
    ``reading_days`` (or one ``reading_day``), only for the customers of those reading days (the
    scheduler's daily run: the customers whose period closed that day), and with
    ``meter_range`` only for meters with an id in it; the skips of the meters billed alone are
    replaced."""
    if reading_day is not None:
        reading_days = {reading_day, *(reading_days or ())}
    report = RunReport(str(period))
    with conn.transaction():
        # Timestamps come back in local time, as the customer reads them in messages.
        conn.execute("SELECT set_config('TimeZone', %s, true)", (zone.key,))
        issued = {
            row[0]
            for row in conn.execute(
                "SELECT meter_id FROM bills WHERE period = %s AND status = 'issued'", (str(period),)
            )
        }
        if reading_days is None and meter_range is None:
            # A whole run also forgets the skips of meters no longer billed.
            conn.execute("DELETE FROM bill_skips WHERE period = %s", (str(period),))
        run = _Run(period, zone, load_tariffs(conn), load_vat_rates(conn), issued)
        meters = meters_to_bill(conn, period, reading_days, meter_range)
        blocks: dict[int, dict[int, list[MeterToBill]]] = defaultdict(lambda: defaultdict(list))
        for meter in meters:
            blocks[meter.meter_id // block][meter.reading_day].append(meter)
        for number in sorted(blocks):
            locks.lock_blocks(conn, period, [number])
            for _day, group in sorted(blocks[number].items()):
                for k in range(0, len(group), batch):
                    _bill_batch(conn, run, group[k : k + batch], report)
    report.skipped.sort(key=lambda s: (s.customer_code, s.meter_serial))
    report.kept_issued.sort()
    return report


def run_reading_day(
    conn: psycopg.Connection[Any], day: date, zone: ZoneInfo, *, batch: int = BATCH
) -> RunReport:
    """The bills closing on ``day``: the customers whose reading day it is, for the period of
    that month (nothing on days 29–31, which are nobody's reading day). Run it once the day's
    first readings are in (the boundary is 00:00 of ``day``); re-running is harmless."""
    period = Period(day.year, day.month)
    if day.day > 28:
        return RunReport(str(period))
    return run_bills(conn, period, zone, batch=batch, reading_day=day.day)


def period_bounds(period: Period, reading_day: int, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The instants a customer's period starts and ends: 00:00 local of its two reading days."""
    first_day, closing_day = period.dates(reading_day)
    return local_midnight(first_day, zone), local_midnight(closing_day, zone)


def _bill_batch(
    conn: psycopg.Connection[Any], run: _Run, meters: Sequence[MeterToBill], report: RunReport
) -> None:
    """Bill one batch: fetch every meter's inputs together, price in Python, write together."""
    windows = {m.meter_id: m.window(run.period, run.zone) for m in meters}
    todo = [m for m in meters if m.meter_id not in run.issued and windows[m.meter_id]]
    conn.execute(
        "DELETE FROM bill_skips WHERE period = %s AND meter_id = ANY(%s)",
        (str(run.period), [m.meter_id for m in meters]),
    )
    report.kept_issued += [(m.customer_code, m.serial) for m in meters if m.meter_id in run.issued]
    bounds = {m.meter_id: (w.start, w.end) for m in todo if (w := windows[m.meter_id])}
    found = registers(
        conn,
        bounds,
        {m.meter_id: m.serial for m in todo},
        {m.meter_id: m.predecessor for m in todo if m.predecessor},
    )
    bills: list[tuple[MeterToBill, tuple[Any, ...]]] = []
    # Meters not billed for the period (retired, not yet installed) lose any draft of it.
    skips: list[tuple[MeterToBill, str]] = [
        (m, "") for m in meters if m.meter_id not in run.issued and not windows[m.meter_id]
    ]
    for meter in todo:
        try:
            row = _bill_meter(run, meter, found[meter.meter_id], windows[meter.meter_id])
        except (NoClosing, TariffError) as exc:
            skips.append((meter, str(exc)))
            continue
        bills.append((meter, row))
    _write(conn, run, bills, skips, report)


def _bill_meter(
    run: _Run, meter: MeterToBill, register: Register, bill_window: Window | None
) -> tuple[Any, ...]:
    """One meter's bill as the row to upsert; raises NoClosing or TariffError (a skip)."""
    assert bill_window is not None
    closing = register.between(bill_window.start, bill_window.end)
    for index in (closing.start_kwh, closing.end_kwh):
        if abs(index) >= MAX_INDEX_KWH:
            raise NoClosing(f"register index {index:g} kWh is beyond what a bill holds")
    consumption = closing.consumption_kwh(meter.multiplier)
    first_day, closing_day = bill_window.first_day, bill_window.closing_day
    try:
        priced = price(
            consumption,
            first_day,
            closing_day,
            run.tariffs.get(meter.tariff_group, []),
            run.vat_rates,
            meter.households,
        )
    except TariffError as exc:
        raise TariffError(f"{meter.tariff_group} tariff: {exc}") from None
    row = (
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
        Jsonb(breakdown(priced, closing, meter, run.zone) | _life(meter, bill_window)),
        meter.households,
    )
    return row


def _write(
    conn: psycopg.Connection[Any],
    run: _Run,
    bills: Sequence[tuple[MeterToBill, tuple[Any, ...]]],
    skips: Sequence[tuple[MeterToBill, str]],
    report: RunReport,
) -> None:
    """Upsert the bills (a bill issued meanwhile is kept) and record the skips, pipelined."""
    period = str(run.period)
    with conn.cursor() as cur:
        if bills:
            cur.executemany(_UPSERT, [row for _, row in bills], returning=True)
            for meter, row in bills:
                if cur.fetchone() is None:
                    report.kept_issued.append((meter.customer_code, meter.serial))
                else:
                    report.written += 1
                    report.estimated += bool(row[12])
                cur.nextset()
        if skips:
            cur.executemany(
                "DELETE FROM bills WHERE meter_id = %s AND period = %s AND status = 'draft'",
                [(meter.meter_id, period) for meter, _ in skips],
            )
            cur.executemany(
                "INSERT INTO bill_skips (meter_id, period, customer_id, reason)"
                " VALUES (%s, %s, %s, %s)",
                [(m.meter_id, period, m.customer_id, reason) for m, reason in skips if reason],
            )
    report.skipped += [Skipped(m.customer_code, m.serial, r) for m, r in skips if r]
