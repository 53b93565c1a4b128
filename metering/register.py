"""Closing indices (contract §8): a meter's register at the start and end of a period, and the
register consumption between them, across register resets. Pure: the caller supplies readings
(at least the nearest one on each side of each boundary) and the resets it found.

- The index at a boundary is the register at that instant, interpolated linearly between the
  nearest known values on either side; the bill is *estimated* when those are more than
  :data:`MAX_GAP` apart, and there is no bill while either side has no reading.
- A reset splits the register into stretches. A meter replacement recorded in the inventory gives
  the old register's final value and the new one's start at the replacement instant; a drop seen
  in the readings (more than :data:`DROP_NOISE_KWH` below the previous reading) gives the last
  reading of the old register and the first of the new one. The consumption of every stretch
  inside the period is added, so a reset never yields a negative or absurd consumption. What was
  used between the two sides of a detected drop is unknown and is not billed.
- Indices are rounded half-up to 0.001 kWh before subtracting, so the bill shows numbers that add
  up; a stretch that runs backwards by less than the noise counts as 0.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from decimal import Decimal
from fractions import Fraction
from typing import Any

from doxa.errors import NoClosing
from metering.rounding import exact, half_up, half_up_3

MAX_GAP = timedelta(hours=2)
# A reading this much below the previous one is a register reset, not measurement noise.
DROP_NOISE_KWH = 1.0
# A register that climbs faster than this between two readings is a glitch, not consumption
# (a direct-connected three-phase 100 A meter tops out near 70 kW; a CT meter counts less).
MAX_REGISTER_KW = 1000.0

PERIOD_START = "period_start"
REPLACEMENT = "replacement"
DETECTED_DROP = "detected_drop"

_US = timedelta(microseconds=1)


@dataclass(frozen=True)
class Point:
    """A known value of a register."""

    ts: datetime
    kwh: float


@dataclass(frozen=True)
class Reset:
    """One register ended with ``old_last`` (None: unknown) and another began with ``new_first``."""

    old_last: Point | None
    new_first: Point
    reason: str  # REPLACEMENT or DETECTED_DROP


@dataclass(frozen=True)
class Segment:
    """The stretch of one register inside the period."""

    reason: str  # why it begins: PERIOD_START, REPLACEMENT or DETECTED_DROP
    start_ts: datetime
    start_kwh: Decimal
    end_ts: datetime
    end_kwh: Decimal

    @property
    def register_kwh(self) -> Decimal:
        return max(Decimal(0), self.end_kwh - self.start_kwh)

    def to_json(self, meter_serial: str, multiplier: Decimal, zone: tzinfo) -> dict[str, Any]:
        return {
            "meter_serial": meter_serial,
            "start_index_kwh": float(self.start_kwh),
            "end_index_kwh": float(self.end_kwh),
            "consumption_kwh": float(self.register_kwh * multiplier),
            "reason": self.reason,
            "start": self.start_ts.astimezone(zone).isoformat(),
            "end": self.end_ts.astimezone(zone).isoformat(),
        }


@dataclass(frozen=True)
class Closing:
    start_kwh: Decimal
    end_kwh: Decimal
    segments: tuple[Segment, ...]
    estimated: bool

    def consumption_kwh(self, multiplier: Decimal | int = 1) -> int:
        """Billed kWh: the register consumption of every segment × multiplier, rounded half-up."""
        register = sum((s.register_kwh for s in self.segments), Decimal(0))
        return half_up(Fraction(register) * Fraction(multiplier))


def value_at(points: Sequence[Point], at: datetime) -> Fraction:
    """The register at ``at``, linear between the nearest ``points`` (sorted, one per instant)
    on either side; ``at`` must lie within them."""
    times = [p.ts for p in points]
    i = bisect.bisect_left(times, at)
    if i < len(points) and times[i] == at:
        return exact(points[i].kwh)
    if i == 0 or i == len(points):
        raise ValueError(f"{at} lies outside the known values")
    left, right = points[i - 1], points[i]
    share = Fraction((at - left.ts) // _US, (right.ts - left.ts) // _US)
    return exact(left.kwh) + (exact(right.kwh) - exact(left.kwh)) * share


def gap_around(points: Iterable[Point], at: datetime) -> timedelta | None:
    """Time between the nearest known values on either side of ``at`` (zero when one is at
    ``at``); None when a side has none."""
    before = [p.ts for p in points if p.ts <= at]
    after = [p.ts for p in points if p.ts >= at]
    if not before or not after:
        return None
    return min(after) - max(before)


def _registers(readings: Sequence[Point], resets: Sequence[Reset]) -> list[list[Point]]:
    """The known values of each register, in time order: a reading at or after a reset's
    ``new_first`` belongs to the newer register."""
    starts = [r.new_first.ts for r in resets]
    by_register: list[dict[datetime, Point]] = [{} for _ in range(len(resets) + 1)]
    for p in readings:
        by_register[bisect.bisect_right(starts, p.ts)][p.ts] = p
    for k, reset in enumerate(resets):
        if reset.old_last is not None:
            by_register[k].setdefault(reset.old_last.ts, reset.old_last)
        by_register[k + 1][reset.new_first.ts] = reset.new_first
    return [sorted(points.values(), key=lambda p: p.ts) for points in by_register]


def outer_readings(
    start: datetime, end: datetime, readings: Iterable[Point]
) -> tuple[Point, Point]:
    """The last reading at or before ``start`` and the first at or after ``end``: the stretch in
    which resets matter. Raises :class:`NoClosing` naming the side that has none."""
    before = [p for p in readings if p.ts <= start]
    after = [p for p in readings if p.ts >= end]
    if not before:
        raise NoClosing(f"no reading at or before the period start, {start:%Y-%m-%d %H:%M %z}")
    if not after:
        raise NoClosing(f"no reading at or after the period end, {end:%Y-%m-%d %H:%M %z}, yet")
    return max(before, key=lambda p: p.ts), min(after, key=lambda p: p.ts)


def close(
    start: datetime,
    end: datetime,
    readings: Iterable[Point],
    resets: Iterable[Reset] = (),
    *,
    max_gap: timedelta = MAX_GAP,
) -> Closing:
    """Close the register at ``start`` and ``end`` (see the module docstring).

    Raises :class:`NoClosing` when a boundary has no reading on one side, or when a reset leaves
    no register stretch inside the period.
    """
    readings = sorted(readings, key=lambda p: p.ts)
    resets = sorted(resets, key=lambda r: r.new_first.ts)
    outer_readings(start, end, readings)
    segments = []
    for k, points in enumerate(_registers(readings, resets)):
        if not points:
            continue
        lo, hi = max(start, points[0].ts), min(end, points[-1].ts)
        if lo >= hi:
            continue
        reason = PERIOD_START if k == 0 else resets[k - 1].reason
        segments.append(
            Segment(
                reason,
                lo,
                half_up_3(value_at(points, lo)),
                hi,
                half_up_3(value_at(points, hi)),
            )
        )
    if not segments:
        raise NoClosing("the register was reset and no reading lies inside the period")
    known = [*readings, *(r.new_first for r in resets)]
    known += [r.old_last for r in resets if r.old_last is not None]
    gaps = [gap_around(known, start), gap_around(known, end)]
    estimated = any(g is not None and g > max_gap for g in gaps)
    return Closing(segments[0].start_kwh, segments[-1].end_kwh, tuple(segments), estimated)
