"""The register at an instant, and the use between two instants (contract §8, §10). Pure.

**Input.** A metering point's register history as a sequence of :class:`Stretch` es: the known
values of one register each, in time order, a reset between one stretch and the next. A reset is
a meter replacement (the old register's final value and the new one's start, recorded by staff;
the two registers may belong to two meters of the same customer) or a drop seen in the readings
(more than :data:`DROP_NOISE_KWH` below the previous reading: the last reading of the old
register and the first of the new). :meth:`Register.from_readings` builds the stretches of one
meter from its readings and resets; ``schema.register_inputs`` fetches those for a batch of
meters. A climb faster than :data:`MAX_REGISTER_KW` between two readings is a :class:`Glitch`:
no use is given across it.

**The rules.**

- The register at an instant is interpolated linearly between the nearest known values on
  either side, on the stretch in force; exact (a float reading is taken as the decimal it prints
  as) and rounded half-up to 0.001 kWh (:func:`metering.rounding.half_up_3`), so that indices
  shown, exported and billed add up.
- An index is *estimated* when the nearest known values around its instant are more than
  :data:`MAX_GAP` apart, or when one it rests on has a quality other than ``actual``
  (``estimated``, ``edited``); there is no index while a side has no known value.
- The use between two instants adds the use of every stretch inside them (a reset never yields a
  negative or absurd figure; what was used between the two sides of a detected drop is unknown
  and not counted); a stretch running backwards by less than the noise counts 0. Billed kWh
  are that register use × the multiplier, rounded half-up to whole kWh
  (:meth:`Closing.consumption_kwh`).
- Readings are looked for up to :data:`SEARCH_WINDOW` away from an instant.

Everything else here is bookkeeping for those rules. A value that is not a finite number is not
a known value.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from decimal import Decimal
from fractions import Fraction
from functools import lru_cache
from typing import Any, NamedTuple

from doxa.errors import NoClosing
from metering.rounding import exact, half_up

# The constants of the rules, named once (import them; never write the numbers again).
MAX_GAP = timedelta(hours=2)  # known values further apart than this make an index estimated
SEARCH_WINDOW = timedelta(days=62)  # how far from an instant its readings are looked for
# A reading this much below the previous one is a register reset, not measurement noise.
DROP_NOISE_KWH = 1.0
# A register that climbs faster than this between two readings is a glitch, not consumption
# (a direct-connected three-phase 100 A meter tops out near 70 kW; a CT meter counts less).
MAX_REGISTER_KW = 1000.0
ACTUAL = "actual"

# Why a stretch begins (the bill's breakdown names it).
PERIOD_START = "period_start"  # the first stretch
REPLACEMENT = "replacement"
DETECTED_DROP = "detected_drop"

_US = timedelta(microseconds=1)
_KWH_PER_KW_US = 3_600_000_000  # µs in an hour


class Point(NamedTuple):
    """A known value of a register: a reading, or a value recorded at a replacement."""

    ts: datetime
    kwh: float | Decimal | int | Fraction
    quality: str = ACTUAL


class Reset(NamedTuple):
    """One register ended with ``old_last`` (None: unknown) and another began with ``new_first``."""

    old_last: Point | None
    new_first: Point
    reason: str  # REPLACEMENT or DETECTED_DROP


class Replacement(NamedTuple):
    """A recorded replacement (a row of ``meter_resets``) as the rule needs it."""

    ts: datetime
    old_final_kwh: float | None  # None: not written down
    new_start_kwh: float
    old_last_reading: Point | None = None  # the old register's last reading before ``ts``


class Glitch(NamedTuple):
    """Two consecutive readings between which the register climbed faster than a meter counts."""

    before: Point
    after: Point

    def describe(self) -> str:
        return (
            f"implausible register jump from {self.before.kwh:g} to {self.after.kwh:g} kWh"
            f" between {self.before.ts:%Y-%m-%d %H:%M %z} and {self.after.ts:%Y-%m-%d %H:%M %z}"
            " (a glitch, or a replacement to record in the inventory)"
        )


@dataclass(frozen=True)
class Stretch:
    """The known values of one register, in time order, one per instant."""

    reason: str  # why it begins: PERIOD_START, REPLACEMENT or DETECTED_DROP
    points: tuple[Point, ...]
    meter: str = ""  # the meter whose register it is, when the caller says


class Index(NamedTuple):
    """The register at an instant (kWh, before the multiplier); ``kwh`` is None when a side has
    no known value (or a glitch straddles the instant). ``before``/``after`` are the known values
    it rests on."""

    at: datetime
    kwh: Decimal | None
    estimated: bool
    before: Point | None = None
    after: Point | None = None


@dataclass(frozen=True)
class Segment:
    """The stretch of one register inside a period."""

    reason: str  # why it begins: PERIOD_START, REPLACEMENT or DETECTED_DROP
    start_ts: datetime
    start_kwh: Decimal
    end_ts: datetime
    end_kwh: Decimal
    meter: str = ""

    @property
    def register_kwh(self) -> Decimal:
        return max(Decimal(0), self.end_kwh - self.start_kwh)

    def to_json(self, meter_serial: str, multiplier: Decimal, zone: tzinfo) -> dict[str, Any]:
        return {
            "meter_serial": self.meter or meter_serial,
            "start_index_kwh": float(self.start_kwh),
            "end_index_kwh": float(self.end_kwh),
            "consumption_kwh": float(self.register_kwh * multiplier),
            "reason": self.reason,
            "start": self.start_ts.astimezone(zone).isoformat(),
            "end": self.end_ts.astimezone(zone).isoformat(),
        }


@dataclass(frozen=True)
class Closing:
    """The use between two instants: the indices at both ends and the stretches between."""

    start_kwh: Decimal
    end_kwh: Decimal
    segments: tuple[Segment, ...]
    estimated: bool

    @property
    def register_kwh(self) -> Decimal:
        """Register use of every segment (before the multiplier), exact."""
        return sum((s.register_kwh for s in self.segments), Decimal(0))

    def use_kwh(self, multiplier: Decimal | int | float = 1) -> Fraction:
        """Register use × multiplier, exact (a day's bar; the bill rounds it)."""
        return Fraction(self.register_kwh) * exact(multiplier)

    def consumption_kwh(self, multiplier: Decimal | int = 1) -> int:
        """Billed kWh: the register consumption of every segment × multiplier, rounded half-up."""
        return half_up(self.use_kwh(multiplier))


# -- exact interpolation ------------------------------------------------------------------------


@lru_cache(maxsize=1 << 16)
def _ratio(kwh: float | Decimal | int | Fraction) -> tuple[int, int]:
    """``kwh`` as numerator and (positive) denominator; a float as the decimal it prints as."""
    return exact(kwh).as_integer_ratio()


def _round3(num: int, den: int) -> Decimal:
    """num / den (den > 0) rounded half-up (away from zero) to 0.001, as a Decimal."""
    q = (2000 * num + den) // (2 * den) if num >= 0 else -((-2000 * num + den) // (2 * den))
    return Decimal(q).scaleb(-3)


def _value(points: Sequence[Point], times: Sequence[datetime], at: datetime) -> Decimal:
    """The register at ``at`` (within the points' span), linear between the nearest points,
    rounded half-up to 0.001 kWh: exactly ``half_up_3(a + (b − a) × share)``."""
    i = bisect.bisect_left(times, at)
    if i < len(points) and times[i] == at:
        return _round3(*_ratio(points[i].kwh))
    if i == 0 or i == len(points):
        raise ValueError(f"{at} lies outside the known values")
    left, right = points[i - 1], points[i]
    t, span = (at - left.ts) // _US, (right.ts - left.ts) // _US
    na, da = _ratio(left.kwh)
    nb, db = _ratio(right.kwh)
    return _round3(na * db * span + (nb * da - na * db) * t, da * db * span)


def _finite(p: Point) -> bool:
    return not isinstance(p.kwh, float) or math.isfinite(p.kwh)


# -- steps between readings ---------------------------------------------------------------------


def is_drop(before: Point, after: Point) -> bool:
    """The register fell by more than noise: a reset (contract §10)."""
    return float(after.kwh) < float(before.kwh) - DROP_NOISE_KWH


def is_glitch(before: Point, after: Point) -> bool:
    """The register climbed faster than :data:`MAX_REGISTER_KW` (over at least a second)."""
    hours = max((after.ts - before.ts) // _US, 1_000_000) / _KWH_PER_KW_US
    return float(after.kwh) - float(before.kwh) > MAX_REGISTER_KW * hours


def breaks(
    replacements: Iterable[Replacement], steps: Iterable[tuple[Point, Point]]
) -> tuple[list[Reset], list[Glitch]]:
    """The resets and glitches of one meter from its recorded replacements and the pairs of
    consecutive readings that fell or climbed (``steps``; others are ignored). A step across a
    recorded replacement is explained by it."""
    resets = []
    for r in sorted(replacements, key=lambda r: r.ts):
        old_last = Point(r.ts, r.old_final_kwh) if r.old_final_kwh is not None else None
        # The old register's last reading stands for its final value when none was written down.
        resets.append(
            Reset(old_last or r.old_last_reading, Point(r.ts, r.new_start_kwh), REPLACEMENT)
        )
    swaps = [r.new_first.ts for r in resets]
    glitches = []
    for before, after in sorted(steps, key=lambda s: s[1].ts):
        if any(before.ts < ts <= after.ts for ts in swaps):
            continue
        if is_drop(before, after):
            resets.append(Reset(before, after, DETECTED_DROP))
        elif is_glitch(before, after):
            glitches.append(Glitch(before, after))
    return resets, glitches


# -- the register -------------------------------------------------------------------------------


class Register:
    """A metering point's register history: its stretches and glitches.

    Ask it only about instants whose nearest readings it was given (``schema.register_inputs``
    fetches exactly those): between given known values it cannot see a reset it was not told of.
    """

    def __init__(self, stretches: Sequence[Stretch], glitches: Sequence[Glitch] = ()) -> None:
        self.stretches = tuple(
            Stretch(s.reason, tuple(p for p in s.points if _finite(p)), s.meter) for s in stretches
        )
        self.stretches = tuple(s for s in self.stretches if s.points)
        self._times = [[p.ts for p in s.points] for s in self.stretches]
        self.glitches = tuple(sorted(glitches, key=lambda g: g.before.ts))
        known: dict[datetime, Point] = {}
        for s in self.stretches:
            for p in s.points:
                if p.ts not in known or p.quality != ACTUAL:
                    known[p.ts] = p  # at a shared instant, a non-actual value decides
        self._known_times = sorted(known)
        self._known = [known[ts] for ts in self._known_times]
        self._values: dict[tuple[int, datetime], Decimal] = {}

    @classmethod
    def from_readings(
        cls,
        readings: Iterable[Point],
        resets: Iterable[Reset] = (),
        glitches: Sequence[Glitch] = (),
        meter: str = "",
    ) -> Register:
        """One meter's register: a reading at or after a reset's ``new_first`` belongs to the
        newer register."""
        ordered = sorted(resets, key=lambda r: r.new_first.ts)
        starts = [r.new_first.ts for r in ordered]
        by_register: list[dict[datetime, Point]] = [{} for _ in range(len(ordered) + 1)]
        for p in readings:
            by_register[bisect.bisect_right(starts, p.ts)][p.ts] = p
        for k, reset in enumerate(ordered):
            if reset.old_last is not None:
                by_register[k].setdefault(reset.old_last.ts, reset.old_last)
            by_register[k + 1][reset.new_first.ts] = reset.new_first
        stretches = [
            Stretch(
                PERIOD_START if k == 0 else ordered[k - 1].reason,
                tuple(sorted(points.values(), key=lambda p: p.ts)),
                meter,
            )
            for k, points in enumerate(by_register)
        ]
        return cls(stretches, glitches)

    # -- what an instant rests on --

    def support(self, at: datetime) -> tuple[Point | None, Point | None]:
        """The nearest known values at or before and at or after ``at`` (the same one when a
        value is at ``at``), whichever register they belong to."""
        i = bisect.bisect_left(self._known_times, at)
        if i < len(self._known) and self._known_times[i] == at:
            return self._known[i], self._known[i]
        before = self._known[i - 1] if i > 0 else None
        after = self._known[i] if i < len(self._known) else None
        return before, after

    @staticmethod
    def _estimated(before: Point, after: Point) -> bool:
        return after.ts - before.ts > MAX_GAP or before.quality != ACTUAL or after.quality != ACTUAL

    def _at(self, k: int, at: datetime) -> Decimal:
        key = (k, at)
        value = self._values.get(key)
        if value is None:
            value = self._values[key] = _value(self.stretches[k].points, self._times[k], at)
        return value

    def _glitch_within(self, lo: datetime, hi: datetime) -> Glitch | None:
        """The first glitch between known values ``lo`` and ``hi`` (both included)."""
        for g in self.glitches:
            if g.after.ts > lo and g.before.ts < hi:
                return g
        return None

    # -- the two questions --

    def index_at(self, at: datetime) -> Index:
        """The register at ``at`` as a period closing there reads it: the stretch in force
        just before ``at`` (at a replacement instant, the old register's final value)."""
        before, after = self.support(at)
        if before is None or after is None:
            return Index(at, None, False, before, after)
        if before.ts < at < after.ts and self._glitch_within(before.ts, after.ts):
            return Index(at, None, False, before, after)
        chosen = None
        for k, s in enumerate(self.stretches):
            first = s.points[0].ts
            if first < at or (first == at and chosen is None):
                chosen = k
        if chosen is None:
            return Index(at, None, False, before, after)
        last = self.stretches[chosen].points[-1].ts
        kwh = self._at(chosen, min(at, last))
        return Index(at, kwh, self._estimated(before, after), before, after)

    def between(self, start: datetime, end: datetime) -> Closing:
        """The use between ``start`` and ``end`` (see the module docstring).

        Raises :class:`NoClosing` when an end has no known value on one side, when a glitch
        lies between them, or when a reset leaves no register stretch between them.
        """
        first_before, first_after = self.support(start)
        last_before, last_after = self.support(end)
        if first_before is None:
            raise NoClosing(
                f"no reading at or before the period start, {start:%Y-%m-%d %H:%M %z}"
                f" (searched {SEARCH_WINDOW.days} days)"
            )
        if last_after is None:
            raise NoClosing(
                f"no reading at or after the period end, {end:%Y-%m-%d %H:%M %z}, yet"
                f" (searched {SEARCH_WINDOW.days} days)"
            )
        glitch = self._glitch_within(first_before.ts, last_after.ts)
        if glitch is not None:
            raise NoClosing(glitch.describe())
        segments = []
        for k, s in enumerate(self.stretches):
            lo, hi = max(start, s.points[0].ts), min(end, s.points[-1].ts)
            if lo >= hi:
                continue
            segments.append(Segment(s.reason, lo, self._at(k, lo), hi, self._at(k, hi), s.meter))
        if not segments:
            raise NoClosing("the register was reset and no reading lies inside the period")
        assert first_after is not None and last_before is not None
        estimated = self._estimated(first_before, first_after) or self._estimated(
            last_before, last_after
        )
        return Closing(segments[0].start_kwh, segments[-1].end_kwh, tuple(segments), estimated)


def close(
    start: datetime,
    end: datetime,
    readings: Iterable[Point],
    resets: Iterable[Reset] = (),
) -> Closing:
    """Close one meter's register at ``start`` and ``end`` from its readings (at least the
    nearest on each side of each) and resets; raises :class:`NoClosing`."""
    return Register.from_readings(readings, resets).between(start, end)
