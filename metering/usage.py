"""Use per local day and per billing period, and the month's projection, from a
:class:`~metering.register.Register`: pure, no I/O, no clock.

A local day D uses ``register.between(D 00:00, D+1 00:00)`` × the multiplier (the rule of
``metering.register``, resets and quality included), so the days of a period add up to the period,
nothing between the last reading of one day and the first of the next is lost or counted twice,
and a gap of several days is spread evenly over the days it covers. The day holding the latest
reading, and the current period, run up to that reading (``partial``). A day or period the rule
gives no value for (no reading on a side yet, a glitch) is unknown (``kwh`` None). A closed
billing period uses the billed kWh: the register use × multiplier rounded half-up to whole kWh,
exactly the figure its bill shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta, tzinfo
from decimal import Decimal
from fractions import Fraction
from typing import NamedTuple

from doxa.errors import NoClosing
from metering.calendar import ONE_DAY, local_midnight
from metering.register import Closing, Point, Register
from metering.rounding import half_up_3

_US = timedelta(microseconds=1)


class Use(NamedTuple):
    """Use (kWh, multiplier applied) of a day or a billing period starting on ``start``."""

    start: date
    kwh: Decimal | None
    estimated: bool = False
    partial: bool = False
    closing: Closing | None = None  # the indices and stretches behind it
    billed: bool = False  # taken from the period's bill


def _use(start: date, closing: Closing, multiplier: Decimal, partial: bool = False) -> Use:
    kwh = half_up_3(closing.use_kwh(multiplier))
    return Use(start, kwh, closing.estimated, partial, closing)


def use_between(
    register: Register,
    day: date,
    start: datetime,
    end: datetime,
    multiplier: Decimal,
    *,
    partial: bool = False,
) -> Use:
    """Use between two instants, labelled with ``day``; unknown when the rule gives none."""
    if end == start and partial:
        return Use(day, Decimal(0), False, True)
    try:
        return _use(day, register.between(start, end), multiplier, partial)
    except NoClosing:
        return Use(day, None, False, partial)


def daily(
    register: Register,
    days: Sequence[date],
    zone: tzinfo,
    multiplier: Decimal,
    latest: Point | None,
) -> list[Use]:
    """Use of each of ``days``; the day holding the latest reading runs up to it (partial)."""
    out = []
    for day in days:
        start, end = local_midnight(day, zone), local_midnight(day + ONE_DAY, zone)
        if latest is not None and start <= latest.ts < end:
            out.append(use_between(register, day, start, latest.ts, multiplier, partial=True))
        else:
            out.append(use_between(register, day, start, end, multiplier))
    return out


def billed_period(
    register: Register, start: date, end: date, zone: tzinfo, multiplier: Decimal
) -> Use:
    """A closed billing period's use as its bill counts it: whole kWh, half-up."""
    try:
        closing = register.between(local_midnight(start, zone), local_midnight(end, zone))
    except NoClosing:
        return Use(start, None)
    kwh = Decimal(closing.consumption_kwh(multiplier))
    return Use(start, kwh, closing.estimated, False, closing)


def projected_total(
    so_far_kwh: Decimal | None, start: datetime, end: datetime, latest_ts: datetime | None
) -> Decimal | None:
    """The period's total if use goes on at the pace so far; None with less than a day seen."""
    if so_far_kwh is None or latest_ts is None:
        return None
    elapsed = latest_ts - start
    if elapsed < ONE_DAY:
        return None
    share = Fraction((end - start) // _US, elapsed // _US)
    return half_up_3(Fraction(so_far_kwh) * share)
