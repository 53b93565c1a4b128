"""Billing periods (contract §8): ``YYYY-MM`` with reading day *d* runs from day *d* of the
previous month, 00:00 local time, to day *d* of month ``YYYY-MM``, 00:00 local time."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

_PERIOD = re.compile(r"^(\d{4})-(\d{2})$")


@dataclass(frozen=True, order=True)
class Period:
    year: int
    month: int

    @classmethod
    def parse(cls, text: str) -> Period:
        """``"2025-06"`` → ``Period(2025, 6)``; anything else raises ValueError with the reason."""
        match = _PERIOD.match(text.strip())
        if not match or not 1 <= int(match[2]) <= 12 or int(match[1]) < 1970:
            raise ValueError(f"period must be YYYY-MM (a month from 1970 on), not {text!r}")
        return cls(int(match[1]), int(match[2]))

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


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """00:00 of ``day`` in ``zone``, as an aware datetime."""
    return datetime.combine(day, time(0), tzinfo=zone)
