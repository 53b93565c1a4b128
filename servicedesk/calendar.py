"""Working days and deadlines of service requests.

A working day is Monday to Friday, except the public holidays (the ``public_holidays`` table).
A request filed on local day D with a standard of N working days is due by the end of the N-th
working day after D: the filing day itself never counts (a request filed at 16:55 on a Friday
gets as many whole days as one filed at 08:00), and the deadline is the local midnight that ends
that N-th day. A request still open at that instant is overdue.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

SATURDAY = 5


@dataclass(frozen=True)
class WorkingCalendar:
    """Weekends plus a set of holidays."""

    holidays: frozenset[date]

    @classmethod
    def of(cls, holidays: Iterable[date]) -> WorkingCalendar:
        return cls(frozenset(holidays))

    def is_working_day(self, day: date) -> bool:
        return day.weekday() < SATURDAY and day not in self.holidays

    def add_working_days(self, day: date, n: int) -> date:
        """The n-th working day after ``day`` (``day`` itself not counted); n ≥ 1."""
        if n < 1:
            raise ValueError("n must be at least 1")
        found = 0
        while found < n:
            day += timedelta(days=1)
            if self.is_working_day(day):
                found += 1
        return day


def deadline(
    filed_at: datetime, working_days: int, calendar: WorkingCalendar, zone: ZoneInfo
) -> datetime:
    """The instant a request filed at ``filed_at`` is due: local midnight after its last day."""
    if filed_at.tzinfo is None:
        raise ValueError("filed_at must carry its time zone")
    last = calendar.add_working_days(filed_at.astimezone(zone).date(), working_days)
    return datetime.combine(last + timedelta(days=1), time(0), zone)


def is_overdue(deadline_at: datetime, closed_at: datetime | None, now: datetime) -> bool:
    """Still open at or after its deadline."""
    return closed_at is None and now >= deadline_at
