"""The metering rule (``metering.register``), pure: the exact interpolation, quality, glitches,
values that are not numbers, and a register history made of stretches of two meters (a
replacement that brings a new meter, as the lifecycle commands will record it)."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from doxa.errors import NoClosing
from metering.register import (
    PERIOD_START,
    REPLACEMENT,
    Glitch,
    Point,
    Register,
    Replacement,
    Stretch,
    _value,
    breaks,
    is_drop,
    is_glitch,
)
from metering.rounding import exact, half_up_3

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
START = datetime(2025, 5, 5, tzinfo=HCM)
END = datetime(2025, 6, 5, tzinfo=HCM)
H = timedelta(hours=1)


@given(
    a=st.floats(-1e12, 1e12),
    b=st.floats(-1e12, 1e12),
    span=st.integers(1, 10**12),
    share=st.floats(0, 1),
)
def test_interpolation_is_exactly_half_up_of_the_exact_value(
    a: float, b: float, span: int, share: float
) -> None:
    """The integer fast path gives exactly half_up_3(a + (b − a) × t / span) on exact decimals."""
    t = int(span * share)
    points = [Point(START, a), Point(START + timedelta(microseconds=span), b)]
    at = START + timedelta(microseconds=t)
    expected = half_up_3(exact(a) + (exact(b) - exact(a)) * Fraction(t, span))
    assert _value(points, [p.ts for p in points], at) == expected


def test_a_boundary_on_an_edited_or_estimated_reading_is_estimated() -> None:
    """Contract §10: a bill resting on a non-actual boundary value is estimated."""
    for quality in ("estimated", "edited"):
        readings = [Point(START, 10.0), Point(END - H / 2, 59.0, quality), Point(END + H / 2, 60.0)]
        closing = Register.from_readings(readings).between(START, END)
        assert closing.estimated and closing.end_kwh == Decimal("59.500")
    inside = [Point(START, 10.0), Point(START + 100 * H, 30.0, "edited"), Point(END, 60.0)]
    assert not Register.from_readings(inside).between(START, END).estimated  # not a boundary


def test_a_glitch_gives_no_use_and_no_index_across_it() -> None:
    a, b = Point(START + 10 * H, 100.0), Point(START + 10.5 * H, 1.7e308)
    resets, glitches = breaks([], [(a, b)])
    assert resets == [] and glitches == [Glitch(a, b)]
    register = Register.from_readings(
        [Point(START, 90.0), a, b, Point(END, 1.7e308)], resets, glitches
    )
    with pytest.raises(NoClosing, match=r"implausible register jump from 100 to 1\.7e\+308 kWh"):
        register.between(START, END)
    assert register.index_at(START + 10.25 * H).kwh is None
    assert register.index_at(START + 5 * H).kwh == 95  # before the glitch: fine


def test_drop_and_glitch_thresholds() -> None:
    a = Point(START, 100.0)
    assert not is_drop(a, Point(START + H, 99.0)) and is_drop(a, Point(START + H, 98.99))
    assert not is_glitch(a, Point(START + H, 1100.0)) and is_glitch(a, Point(START + H, 1100.01))
    # Within a second the limit is that of a second (never a division by zero).
    assert is_glitch(a, Point(START, 100.3)) and not is_glitch(a, Point(START, 100.27))


def test_a_step_across_a_recorded_replacement_is_explained_by_it() -> None:
    before, after = Point(START + 5 * H, 8000.0), Point(START + 7 * H, 1.0)
    resets, glitches = breaks([Replacement(START + 6 * H, 8001.0, 0.0)], [(before, after)])
    assert [r.reason for r in resets] == [REPLACEMENT] and glitches == []


def test_values_that_are_not_numbers_are_not_known_values() -> None:
    readings = [Point(START, 10.0), Point(START + H, math.nan), Point(START + 2 * H, math.inf)]
    register = Register.from_readings([*readings, Point(END, 20.0)])
    assert register.support(START + H) == (Point(START, 10.0), Point(END, 20.0))


def test_stretches_of_two_meters_bill_both_once() -> None:
    """A replacement that brings a new meter: the old meter's register up to the swap, then the
    new meter's from its start value; the period's use adds both, each segment named."""
    swap = START + 15 * 24 * H
    old = Stretch(PERIOD_START, (Point(START - H, 5000.0), Point(swap, 5120.0)), meter="OLD-1")
    new = Stretch(REPLACEMENT, (Point(swap, 0.0), Point(END + H, 81.0)), meter="NEW-1")
    closing = Register([old, new]).between(START, END)
    assert [(s.meter, s.start_kwh, s.end_kwh) for s in closing.segments] == [
        ("OLD-1", Decimal("5000.332"), Decimal("5120.000")),  # 5,000 + 120 × 1 h / 361 h
        ("NEW-1", Decimal("0.000"), Decimal("80.790")),  # 81 × 384 h / 385 h = 80.7896…
    ]
    assert closing.consumption_kwh() == 200  # 119.668 + 80.790 = 200.458
    assert closing.segments[1].to_json("OLD-1", Decimal(1), HCM)["meter_serial"] == "NEW-1"
    # Closing at the swap is the old meter's final value; starting there, the new one's start.
    register = Register([old, new])
    assert register.index_at(swap).kwh == 5120
    assert register.between(swap, END).start_kwh == 0
