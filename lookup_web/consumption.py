"""Consumption arithmetic for the customer pages: pure functions, no I/O, no clock.

**Definition.** A meter's index at an instant (a local midnight, a billing-period boundary) is its
register interpolated linearly between the nearest readings on either side — the rule billing
uses for closing indices (contract §8). The consumption of a local day D is ``(index at D+1 00:00
− index at D 00:00) × multiplier``; of a billing period, the same between its boundaries. So the
days of a period add up to the period, nothing between the last reading of one day and the first
of the next is lost or counted twice, and a gap of several days is spread evenly over the days it
covers. An index is *estimated* when the two readings around it are more than two hours apart or
either has a quality other than ``actual``; a day or period is estimated when an index it starts
or ends with is. (Readings inside a day do not change its consumption, so they do not mark it.)
Today and the current period run up to the latest reading (``partial``). A negative difference
(the register was reset or the meter replaced) has no meaningful value and is shown as unknown.
"""

from __future__ import annotations

from calendar import monthrange
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import NamedTuple
from zoneinfo import ZoneInfo

MAX_GAP = timedelta(hours=2)
ONE_DAY = timedelta(days=1)

# The records below are NamedTuples: a meter page makes a few hundred of them, and a tuple is
# made about twice as fast as a frozen dataclass.


class Anchor(NamedTuple):
    """One reading: when, and the register (kWh, before the multiplier)."""

    ts: datetime
    kwh: float
    quality: str = "actual"


class Index(NamedTuple):
    """The register at an instant; ``kwh`` is None when a side has no reading."""

    at: datetime
    kwh: float | None
    estimated: bool


class Amount(NamedTuple):
    """Consumption (kWh, multiplier applied) of a day or a billing period."""

    start: date
    kwh: float | None
    estimated: bool = False
    partial: bool = False


class Tier(NamedTuple):
    number: int
    lower_kwh: int  # the first kWh of this tier is lower_kwh + 1
    upper_kwh: int | None  # None: unbounded
    price_vnd: int


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone)


def index_at(at: datetime, before: Anchor | None, after: Anchor | None) -> Index:
    """The register at ``at`` from the nearest readings at or before and at or after it."""
    for exact in (before, after):
        if exact is not None and exact.ts == at:
            return Index(at, exact.kwh, exact.quality != "actual")
    if before is None or after is None:
        return Index(at, None, False)
    span = (after.ts - before.ts).total_seconds()
    share = (at - before.ts).total_seconds() / span
    kwh = before.kwh + (after.kwh - before.kwh) * share
    estimated = (
        after.ts - before.ts > MAX_GAP or before.quality != "actual" or after.quality != "actual"
    )
    return Index(at, kwh, estimated)


def _difference(start: Index, end_kwh: float | None, multiplier: float) -> float | None:
    if start.kwh is None or end_kwh is None or end_kwh < start.kwh:
        return None
    return (end_kwh - start.kwh) * multiplier


def daily(
    days: Sequence[date],
    midnights: Mapping[datetime, Index],
    zone: ZoneInfo,
    multiplier: float,
    latest: Anchor | None,
) -> list[Amount]:
    """Consumption of each of ``days`` from the index at each local midnight (those not yet
    reached may be missing). The day holding the latest reading runs up to it (partial)."""
    out = []
    starts = [local_midnight(day, zone) for day in days]
    # Which day holds the latest reading is decided in UTC: comparing datetimes of two
    # different time zones looks both zones up, every time.
    latest_utc = latest.ts.astimezone(UTC) if latest is not None else None
    for k, day in enumerate(days):
        start = midnights.get(starts[k])
        if start is None:
            out.append(Amount(day, None))
            continue
        following = day + ONE_DAY
        if k + 1 < len(days) and days[k + 1] == following:
            end_at = starts[k + 1]  # consecutive days: the next day's start, already made
        else:
            end_at = local_midnight(following, zone)
        if (
            latest is not None
            and latest_utc is not None
            and start.at.astimezone(UTC) <= latest_utc < end_at.astimezone(UTC)
        ):
            value = _difference(start, latest.kwh, multiplier)
            estimated = start.estimated or latest.quality != "actual"
            out.append(Amount(day, value, estimated and value is not None, partial=True))
            continue
        end = midnights.get(end_at)
        value = _difference(start, end.kwh if end else None, multiplier)
        estimated = start.estimated or (end is not None and end.estimated)
        out.append(Amount(day, value, estimated and value is not None))
    return out


def period_start(today: date, reading_day: int) -> date:
    """The first day of the billing period holding ``today``: the last reading day on or before
    it (period ``YYYY-MM`` runs from day d of the previous month to day d of ``YYYY-MM``)."""
    if today.day >= reading_day:
        return today.replace(day=reading_day)
    return add_months(today.replace(day=reading_day), -1)


def add_months(day: date, months: int) -> date:
    """Same day of another month; reading days are 1–28 so the day always exists."""
    total = day.year * 12 + day.month - 1 + months
    return day.replace(year=total // 12, month=total % 12 + 1)


def period_name(start: date) -> date:
    """The period a start day belongs to is named after the month in which it ends."""
    return add_months(start, 1).replace(day=1)


def periods(
    starts: Sequence[date], indices: Sequence[Index], multiplier: float, latest: Anchor | None
) -> list[Amount]:
    """Consumption of consecutive billing periods given the index at each start; the last period
    (the current one) runs to the latest reading."""
    out = []
    for k, start in enumerate(starts):
        begin = indices[k]
        if k + 1 < len(indices):
            end = indices[k + 1]
            value = _difference(begin, end.kwh, multiplier)
            out.append(
                Amount(start, value, (begin.estimated or end.estimated) and value is not None)
            )
        else:
            end_kwh = latest.kwh if latest is not None and latest.ts >= begin.at else None
            value = _difference(begin, end_kwh, multiplier)
            estimated = begin.estimated or (latest is not None and latest.quality != "actual")
            out.append(Amount(start, value, estimated and value is not None, partial=True))
    return out


def round_half_up(value: float | Decimal) -> int:
    return int(Decimal(str(value)).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def projected_total(
    so_far_kwh: float | None, start: datetime, end: datetime, latest_ts: datetime | None
) -> float | None:
    """The period's total if use goes on at the pace so far; None with less than a day seen."""
    if so_far_kwh is None or latest_ts is None:
        return None
    elapsed = (latest_ts - start).total_seconds()
    if elapsed < 86_400:
        return None
    return so_far_kwh * (end - start).total_seconds() / elapsed


def tiers_for_period(
    widths_and_prices: Sequence[tuple[int | None, int]], start: date, end: date
) -> list[Tier]:
    """The tiers of a period of N days: widths round(width × N / T), T the number of days of the
    calendar month before the month in which the period ends (contract §8)."""
    n = (end - start).days
    before_end_month = add_months(end.replace(day=1), -1)
    t = monthrange(before_end_month.year, before_end_month.month)[1]
    out = []
    lower = 0
    for number, (width, price) in enumerate(widths_and_prices, start=1):
        if width is None:
            out.append(Tier(number, lower, None, price))
            break
        upper = lower + round_half_up(Decimal(width) * n / t)
        out.append(Tier(number, lower, upper, price))
        lower = upper
    return out


def tier_reached(tiers: Sequence[Tier], kwh: float) -> Tier | None:
    """The highest tier a consumption of ``kwh`` (rounded half-up) reaches."""
    whole = round_half_up(kwh)
    for tier in tiers:
        if tier.upper_kwh is None or whole <= tier.upper_kwh:
            return tier
    return tiers[-1] if tiers else None
