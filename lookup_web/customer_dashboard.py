"""Gathers one meter's overview for its customer: latest index, today, this billing period with
its projection and tier, the daily and the monthly series. Four indexed, time-bounded queries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg

from lookup_web import customer_queries as q
from lookup_web.consumption import (
    Amount,
    Anchor,
    Tier,
    add_months,
    daily,
    local_midnight,
    period_start,
    periods,
    projected_total,
    tier_reached,
    tiers_for_period,
)

MONTHS = 12


@dataclass(frozen=True)
class Dashboard:
    latest: q.Reading | None
    today: Amount
    days: list[Amount]
    period_start: date
    period_end: date
    period_so_far: Amount
    projected_kwh: float | None
    tiers: list[Tier]
    projected_tier: Tier | None
    months: list[Amount]


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
    anchor = Anchor(latest.ts, latest.energy_import_kwh, latest.quality) if latest else None

    first_day = today - timedelta(days=days - 1)
    day_list = [first_day + timedelta(days=k) for k in range(days)]
    # Each day's start; a day's end is the next day's start, today's is the latest reading.
    midnights = [local_midnight(d, zone) for d in day_list]
    day_amounts = daily(
        day_list,
        {i.at: i for i in q.indices_at(conn, meter.id, midnights)},
        zone,
        meter.multiplier,
        anchor,
    )

    current = period_start(today, customer.reading_day)
    starts = [add_months(current, k) for k in range(-(MONTHS - 1), 1)]
    indices = q.indices_at(conn, meter.id, [local_midnight(s, zone) for s in starts])
    month_amounts = periods(starts, indices, meter.multiplier, anchor)

    end = add_months(current, 1)
    so_far = month_amounts[-1]
    projected = projected_total(
        so_far.kwh,
        local_midnight(current, zone),
        local_midnight(end, zone),
        latest.ts if latest else None,
    )
    table = q.tariff(conn, customer.tariff_group, today)
    tiers = tiers_for_period(table, current, end) if table else []
    reached = tier_reached(tiers, projected) if projected is not None and tiers else None
    return Dashboard(
        latest=latest,
        today=day_amounts[-1],
        days=day_amounts,
        period_start=current,
        period_end=end,
        period_so_far=so_far,
        projected_kwh=projected,
        tiers=tiers,
        projected_tier=reached,
        months=month_amounts,
    )
