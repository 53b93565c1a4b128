"""Half-up rounding of exact numbers: every rounding in a bill (contract §8) goes through here.

Bills are computed with :class:`fractions.Fraction` so that a customer redoing the arithmetic by
hand gets the same result; a float would turn 0.5 into 0.49999… and round it the wrong way.
"""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

Exact = Fraction | Decimal | int

_HALF = Fraction(1, 2)


def exact(value: Exact | float) -> Fraction:
    """The value as a fraction; a float is taken as the decimal it prints as (0.1 → 1/10)."""
    if isinstance(value, float):
        return Fraction(Decimal(repr(value)))
    return Fraction(value)


def half_up(value: Exact) -> int:
    """Round to a whole number, halves away from zero (2.5 → 3, -2.5 → -3)."""
    x = Fraction(value)
    if x < 0:
        return -math.floor(-x + _HALF)
    return math.floor(x + _HALF)


def half_up_3(value: Exact) -> Decimal:
    """Round to three decimals (a meter index in kWh), halves away from zero."""
    return Decimal(half_up(Fraction(value) * 1000)).scaleb(-3)
