"""Estimating the register inside a gap between two real readings (contract §12). Pure.

- **Linear** (gaps up to ``estimate_linear_max_s``, default an hour, as IESO practice): the
  register at each missing instant on the straight line between the two readings.
- **Profile** (longer gaps): the meter's own use of the same weekday and time over the previous
  ``estimate_profile_weeks`` weeks (the gap's instants shifted back by whole weeks, the register
  interpolated there) gives each missing interval its share; the shares are scaled to the use
  the two real readings say happened, so the estimated series climbs from the first reading to
  the last and meets both exactly. Without usable history, linear.

Values are exact fractions rounded half-up to 0.001 kWh (``metering.rounding``), so the last
estimated value never passes the reading that ends the gap.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from fractions import Fraction

from metering.register import Point
from metering.rounding import exact, half_up_3

LINEAR = "linear"
PROFILE = "profile"
WEEK = timedelta(days=7)


def slots(start: datetime, end: datetime, interval_s: float) -> list[datetime]:
    """The instants strictly between ``start`` and ``end`` that are whole multiples of
    ``interval_s`` since the Unix epoch (where a meter read every ``interval_s`` would have)."""
    step = timedelta(seconds=interval_s)
    epoch = datetime(1970, 1, 1, tzinfo=start.tzinfo)
    k = (start - epoch) // step + 1
    out = []
    ts = epoch + k * step
    while ts < end:
        if ts > start:
            out.append(ts)
        k += 1
        ts = epoch + k * step
    return out


def _scaled(before: Point, after: Point, weights: Sequence[Fraction]) -> list[Decimal]:
    """The register at the ends of the first len(weights) − 1 intervals, when interval k uses
    weights[k] / Σ weights of the use between ``before`` and ``after``."""
    e0, e1 = exact(before.kwh), exact(after.kwh)
    total = sum(weights, Fraction(0))
    out, done = [], Fraction(0)
    for w in weights[:-1]:
        done += w
        out.append(half_up_3(e0 + (e1 - e0) * done / total))
    return out


def linear(before: Point, after: Point, at: Sequence[datetime]) -> list[Decimal]:
    """The register at each instant of ``at`` on the line from ``before`` to ``after``."""
    bounds = [before.ts, *at, after.ts]
    return _scaled(
        before,
        after,
        [Fraction((b - a) // timedelta(microseconds=1)) for a, b in itertools.pairwise(bounds)],
    )


def _register_at(points: Sequence[Point], times: Sequence[datetime], at: datetime) -> Fraction:
    i = bisect.bisect_left(times, at)
    if i < len(points) and times[i] == at:
        return exact(points[i].kwh)
    left, right = points[i - 1], points[i]
    share = Fraction((at - left.ts) // timedelta(microseconds=1)) / Fraction(
        (right.ts - left.ts) // timedelta(microseconds=1)
    )
    return exact(left.kwh) + (exact(right.kwh) - exact(left.kwh)) * share


def profile_weights(
    history: Sequence[Point],
    bounds: Sequence[datetime],
    weeks: int,
    max_spacing: timedelta,
) -> list[Fraction] | None:
    """The use of each interval between consecutive ``bounds``, averaged over the same weekday
    and time of the ``weeks`` previous weeks, from ``history`` (one register, in time order). A
    week counts only when the register is known around each shifted bound from readings at most
    ``max_spacing`` apart and never falls. None when no week counts or the total is 0."""
    times = [p.ts for p in history]
    sums: list[Fraction] | None = None
    used = 0
    for w in range(1, weeks + 1):
        shifted = [b - w * WEEK for b in bounds]
        lo = bisect.bisect_right(times, shifted[0]) - 1
        hi = bisect.bisect_left(times, shifted[-1])
        if lo < 0 or hi >= len(times):
            continue
        window = times[lo : hi + 1]
        if any(b - a > max_spacing for a, b in itertools.pairwise(window)):
            continue
        values = [_register_at(history, times, s) for s in shifted]
        uses = [b - a for a, b in itertools.pairwise(values)]
        if any(u < 0 for u in uses):
            continue
        sums = uses if sums is None else [x + u for x, u in zip(sums, uses, strict=True)]
        used += 1
    if sums is None or sum(sums) <= 0:
        return None
    return [s / used for s in sums]


def estimate_gap(
    before: Point,
    after: Point,
    at: Sequence[datetime],
    history: Sequence[Point],
    *,
    linear_max: timedelta,
    weeks: int,
    max_spacing: timedelta,
) -> tuple[str, list[Decimal]]:
    """The method and the register at each instant of ``at`` between two real readings."""
    if not at:
        return LINEAR, []
    if after.ts - before.ts > linear_max:
        weights = profile_weights(history, [before.ts, *at, after.ts], weeks, max_spacing)
        if weights is not None:
            return PROFILE, _scaled(before, after, weights)
    return LINEAR, linear(before, after, at)
