"""Gathers one meter's overview for its customer: latest index, today, this billing period with
its projection and tier, the daily and the monthly series.

Every figure comes from the metering rules (``metering.usage`` over a
``metering.register.Register``), fed by ``schema.register_inputs`` as bills and the
closing-index export are; a closed billing period that has a bill shows the bill's kWh, so chart
and bill cannot disagree, and a day the daily rollup holds as final shows the rollup's value (the
same rule's, computed by ``schema.rollup``), so only the days not rolled up yet (today, the last
day or two) are computed live and the readings scanned for resets span those days and the
current period rather than the whole chart. Periods are ``billing.periods``' and the tier widths
``billing.tariff``'s. A handful of indexed, time-bounded queries.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import psycopg

from billing.periods import Period, add_months, period_start
from billing.tariff import Band, band_reached, bands
from lookup_web import customer_queries as q
from metering.calendar import local_midnight
from metering.register import Point, Register
from metering.usage import Use, billed_period, daily, projected_total, use_between
from schema.register_inputs import registers
from schema.rollup import final_days

MONTHS = 12


@dataclass(frozen=True)
class Dashboard:
    latest: q.Reading | None
    today: Use
    days: list[Use]
    period_start: date
    period_end: date
    period_so_far: Use
    projected_kwh: Decimal | None
    tiers: list[Band]
    projected_tier: Band | None
    months: list[Use]  # the last MONTHS billing periods by start day, the current one last
    register: Register  # what the figures rest on (the closing indices of each period)


def build(
    conn: psycopg.Connection,
    customer: q.Customer,
    meter: q.Meter,
    *,
    now: datetime,
    zone: ZoneInfo,
    days: int,
) -> Dashboard:
    today = now.astimezone(zone).date()
    latest = q.latest_reading(conn, meter.id, now)
    point = Point(latest.ts, latest.energy_import_kwh, latest.quality) if latest else None

    day_list = [today - timedelta(days=days - 1 - k) for k in range(days)]
    current = period_start(today, customer.reading_day)
    starts = [add_months(current, k) for k in range(-(MONTHS - 1), 1)]
    names = [str(Period.ending_after(s)) for s in starts]
    billed = q.meter_bills(conn, meter.id, names[:-1])

    # Days the rollup holds as final come from it; the day holding the latest reading runs up to
    # that reading, so it is always computed here.
    rolled = final_days(conn, meter.id, day_list)
    if point is not None:
        rolled.pop(point.ts.astimezone(zone).date(), None)
    live_days = [d for d in day_list if d not in rolled]

    # The instants the figures rest on: both local midnights of each day computed live, the
    # boundaries of the periods not billed yet, and the latest reading (the newest there is:
    # nothing lies after it, so tonight's midnight needs no look-up).
    instants = set()
    for d in live_days:
        instants.add(local_midnight(d, zone))
        end = local_midnight(d + timedelta(days=1), zone)
        if point is None or end <= point.ts:
            instants.add(end)
    for k, start in enumerate(starts):
        if names[k] not in billed:
            instants.add(local_midnight(start, zone))
            instants.add(local_midnight(add_months(start, 1), zone))
    if point is not None:
        instants.add(point.ts)
    register = registers(conn, {meter.id: instants}, {meter.id: meter.serial})[meter.id]

    multiplier = meter.multiplier
    live = dict(zip(live_days, daily(register, live_days, zone, multiplier, point), strict=True))
    day_uses = [
        live[d] if d in live else Use(d, rolled[d].kwh, rolled[d].estimated) for d in day_list
    ]
    months = []
    for k, start in enumerate(starts[:-1]):
        if names[k] in billed:
            kwh, estimated = billed[names[k]]
            months.append(Use(start, Decimal(kwh), estimated, billed=True))
        else:
            months.append(billed_period(register, start, starts[k + 1], zone, multiplier))
    period_begins = local_midnight(current, zone)
    if point is not None and point.ts >= period_begins:
        so_far = use_between(register, current, period_begins, point.ts, multiplier, partial=True)
    else:
        so_far = Use(current, None, partial=True)
    months.append(so_far)

    end = add_months(current, 1)
    projected = projected_total(
        so_far.kwh, period_begins, local_midnight(end, zone), point.ts if point else None
    )
    table = q.tariff(conn, customer.tariff_group, today)
    tiers = bands(table, current, end, meter.households) if table else []
    reached = band_reached(tiers, projected) if projected is not None and tiers else None
    return Dashboard(
        latest=latest,
        today=day_uses[-1],
        days=day_uses,
        period_start=current,
        period_end=end,
        period_so_far=so_far,
        projected_kwh=projected,
        tiers=tiers,
        projected_tier=reached,
        months=months,
        register=register,
    )
