"""Closing indices (contract §8), pure: interpolation at the boundaries, the estimated flag, a
missing side, and register resets (recorded replacement, detected drop)."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from metering.register import (
    DETECTED_DROP,
    PERIOD_START,
    REPLACEMENT,
    NoClosing,
    Point,
    Reset,
    close,
)

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
START = datetime(2025, 5, 5, tzinfo=HCM)
END = datetime(2025, 6, 5, tzinfo=HCM)
H = timedelta(hours=1)


def at(base: datetime, hours: float, kwh: float) -> Point:
    return Point(base + timedelta(hours=hours), kwh)


def test_index_is_interpolated_between_the_nearest_readings() -> None:
    # Start: 1,000.0 at 23:00 and 1,001.0 at 01:00 → 1,000.5 at midnight (2 h apart: not estimated).
    # End: 1,200.0 at 23:30 and 1,200.9 at 00:45 → 1,200.0 + 0.9 × 30/75 = 1,200.36.
    readings = [
        at(START, -1, 1000.0),
        at(START, 1, 1001.0),
        at(END, -0.5, 1200.0),
        at(END, 0.75, 1200.9),
    ]
    closing = close(START, END, readings)
    assert (closing.start_kwh, closing.end_kwh) == (Decimal("1000.500"), Decimal("1200.360"))
    assert not closing.estimated
    # 1,200.360 − 1,000.500 = 199.86 → 200 kWh.
    assert closing.consumption_kwh() == 200
    assert [s.reason for s in closing.segments] == [PERIOD_START]


def test_a_reading_at_the_boundary_is_the_index() -> None:
    closing = close(START, END, [at(START, 0, 10.0), at(END, 0, 60.25)])
    assert (closing.start_kwh, closing.end_kwh, closing.estimated) == (
        Decimal("10.000"),
        Decimal("60.250"),
        False,
    )


def test_readings_more_than_two_hours_apart_make_the_bill_estimated() -> None:
    # 500.0 at 22:00 and 503.0 at 01:00 (3 h): 500.0 + 3.0 × 2/3 = 502.0 at midnight.
    readings = [at(START, -2, 500.0), at(START, 1, 503.0), at(END, 0, 600.0)]
    closing = close(START, END, readings)
    assert closing.start_kwh == Decimal("502.000")
    assert closing.estimated


def test_the_index_is_rounded_half_up_to_a_thousandth() -> None:
    # 0.001 kWh over 2 h: at the midpoint 100.0005 → 100.001.
    closing = close(START, END, [at(START, -1, 100.0), at(START, 1, 100.001), at(END, 0, 101.0)])
    assert closing.start_kwh == Decimal("100.001")


def test_consumption_is_register_times_multiplier_rounded_half_up() -> None:
    # A CT meter, multiplier 40: (19.988 − 12.500) = 7.488 × 40 = 299.52 → 300 kWh.
    closing = close(START, END, [at(START, 0, 12.5), at(END, 0, 19.988)])
    assert closing.consumption_kwh(Decimal(40)) == 300
    # 98.500 − 0.000 = 98.5 → 99 (half-up; half-even would give 98).
    assert close(START, END, [at(START, 0, 0.0), at(END, 0, 98.5)]).consumption_kwh() == 99


@pytest.mark.parametrize(
    ("readings", "message"),
    [
        ([at(START, 1, 5.0), at(END, 1, 9.0)], "no reading at or before the period start"),
        ([at(START, -1, 5.0), at(END, -1, 9.0)], "no reading at or after the period end"),
        ([], "no reading at or before the period start"),
    ],
)
def test_no_bill_while_a_side_has_no_reading(readings: list[Point], message: str) -> None:
    with pytest.raises(NoClosing, match=message):
        close(START, END, readings)


def test_recorded_replacement_adds_both_registers() -> None:
    # Old meter: 8,000.0 at the start, removed on 2025-05-20 at 8,100.0.
    # New meter: starts at 0.0, reads 150.0 at the end. 100 + 150 = 250 kWh.
    swap = datetime(2025, 5, 20, 10, tzinfo=HCM)
    readings = [
        at(START, 0, 8000.0),
        Point(swap - H, 8099.5),
        Point(swap + H, 0.4),
        at(END, 0, 150.0),
    ]
    closing = close(
        START, END, readings, [Reset(Point(swap, 8100.0), Point(swap, 0.0), REPLACEMENT)]
    )
    assert [(s.reason, s.start_kwh, s.end_kwh) for s in closing.segments] == [
        (PERIOD_START, Decimal("8000.000"), Decimal("8100.000")),
        (REPLACEMENT, Decimal("0.000"), Decimal("150.000")),
    ]
    assert (closing.start_kwh, closing.end_kwh) == (Decimal("8000.000"), Decimal("150.000"))
    assert closing.consumption_kwh() == 250


def test_replacement_with_unknown_final_index_uses_the_last_reading() -> None:
    swap = datetime(2025, 5, 20, 10, tzinfo=HCM)
    last_old = Point(swap - 3 * H, 8090.0)
    readings = [at(START, 0, 8000.0), last_old, at(END, 0, 150.0)]
    closing = close(START, END, readings, [Reset(last_old, Point(swap, 0.0), REPLACEMENT)])
    # 90 on the old register (its use in the last 3 h is unknown) + 150 on the new one.
    assert closing.consumption_kwh() == 240


def test_detected_drop_adds_both_sides() -> None:
    # 4,000.0 → 4,060.0 on the old register, then a reading of 2.0 (a new register), 2.0 → 42.0.
    a, b = Point(START + 240 * H, 4060.0), Point(START + 240.5 * H, 2.0)
    readings = [at(START, 0, 4000.0), at(END, 0, 42.0)]
    closing = close(START, END, readings, [Reset(a, b, DETECTED_DROP)])
    assert [s.reason for s in closing.segments] == [PERIOD_START, DETECTED_DROP]
    assert closing.consumption_kwh() == 100  # 60 + 40, never 42 − 4,000


def test_drop_across_the_period_start_bills_only_the_new_register() -> None:
    # The register dropped between 23:30 (9,000.0) and 00:30 (1.0): the period starts on the new
    # register at its first reading.
    a, b = at(START, -0.5, 9000.0), at(START, 0.5, 1.0)
    closing = close(START, END, [a, b, at(END, 0, 51.0)], [Reset(a, b, DETECTED_DROP)])
    assert (closing.start_kwh, closing.end_kwh) == (Decimal("1.000"), Decimal("51.000"))
    assert closing.consumption_kwh() == 50
    assert not closing.estimated  # the readings around the start are 1 h apart


def test_replacement_just_before_the_start_uses_the_new_register_at_the_start() -> None:
    # Replaced at 22:00 the evening before (new register 0.0), next reading 1.0 at 02:00:
    # at midnight the new register read 0.5.
    swap = START - 2 * H
    readings = [at(START, -5, 7000.0), at(START, 2, 1.0), at(END, 0, 101.5)]
    closing = close(
        START, END, readings, [Reset(Point(swap, 7001.0), Point(swap, 0.0), REPLACEMENT)]
    )
    assert closing.start_kwh == Decimal("0.500")
    assert closing.consumption_kwh() == 101
    assert [s.reason for s in closing.segments] == [REPLACEMENT]
    assert closing.estimated  # 22:00 → 02:00 is 4 h


def test_noise_never_gives_negative_consumption() -> None:
    closing = close(START, END, [at(START, 0, 100.4), at(END, 0, 100.1)])
    assert closing.consumption_kwh() == 0
