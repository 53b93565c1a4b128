"""Billing periods (contract §8): ``YYYY-MM`` with reading day *d* runs from day *d* of the
previous month, 00:00 local time, to day *d* of month ``YYYY-MM``, 00:00 local time. A period is
named after the month in which it ends. Bills, the closing-index export and the customer's
monthly chart all take their periods from here."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from doxa.errors import PeriodError

# ``YYYY-MM``: the one pattern for a period, in the CLI, the exports and the staff forms.
PERIOD = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
# The years a period may have (and so the days the exports, the API and the customers' pages
# accept): beyond, date arithmetic on a period's neighbours overflows.
FIRST_YEAR, LAST_YEAR = 1970, 2200


@dataclass(frozen=True, order=True)
class Period:
    year: int
    month: int

    @classmethod
    def parse(cls, text: str) -> Period:
        """``"2025-06"`` → ``Period(2025, 6)``; anything else raises :class:`PeriodError`."""
        match = PERIOD.match(text.strip())
        if not match or not FIRST_YEAR <= int(match[1]) <= LAST_YEAR:
            raise PeriodError(
                f"period must be YYYY-MM (a month from {FIRST_YEAR} to {LAST_YEAR}), not {text!r}"
            )
        return cls(int(match[1]), int(match[2]))

    @classmethod
    def ending_after(cls, start: date) -> Period:
        """The period that begins on ``start`` (a reading day): it ends a month later."""
        end = add_months(start, 1)
        return cls(end.year, end.month)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    def previous(self) -> Period:
        return Period(self.year - 1, 12) if self.month == 1 else Period(self.year, self.month - 1)

    def dates(self, reading_day: int) -> tuple[date, date]:
        """The first day of the period and its closing day (the end, exclusive at 00:00)."""
        if not 1 <= reading_day <= 28:
            raise ValueError(f"reading day must be 1–28, not {reading_day}")
        before = self.previous()
        return date(before.year, before.month, reading_day), date(
            self.year, self.month, reading_day
        )


def add_months(day: date, months: int) -> date:
    """The same day of another month; reading days are 1–28 so the day always exists."""
    total = day.year * 12 + day.month - 1 + months
    return day.replace(year=total // 12, month=total % 12 + 1)


def period_start(today: date, reading_day: int) -> date:
    """The first day of the billing period holding ``today``: the last reading day on or before
    it."""
    if today.day >= reading_day:
        return today.replace(day=reading_day)
    return add_months(today.replace(day=reading_day), -1)
