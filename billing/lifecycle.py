"""Which stretch of a period a meter is billed for, given its life (contract §11). Pure.

- A meter that **replaced** another at instant *S* is billed for the periods ending after *S*;
  a period that starts before *S* is billed whole on the new meter, the old meter's use up to
  the swap included (``schema.register_inputs`` joins the two registers for the one rule).
- A **replaced** meter is billed for the periods ending at or before its swap, never after.
- A **decommissioned** meter (at instant *D*) is billed for the periods starting before *D*;
  the period holding *D* is its final bill, ending at *D*: its closing day is *D*'s local date
  (the next one when *D* is not a midnight, the day begun counts), and its tier widths are
  prorated to those days as any short period's are (contract §8).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from billing.periods import Period
from metering.calendar import local_midnight

REPLACED = "replaced"
DECOMMISSIONED = "decommissioned"


@dataclass(frozen=True)
class Window:
    """What a meter's bill of a period covers: local days ``[first_day, closing_day)`` and the
    instants its register is closed at."""

    first_day: date
    closing_day: date
    start: datetime
    end: datetime
    final: bool = False  # a decommissioned meter's last bill, ending early

    @property
    def days(self) -> int:
        return (self.closing_day - self.first_day).days


def window(
    period: Period,
    reading_day: int,
    zone: ZoneInfo,
    *,
    installed_at: datetime | None = None,
    retired_at: datetime | None = None,
    retired_reason: str | None = None,
) -> Window | None:
    """The meter's bill of ``period``, or None when the meter is not billed for it."""
    first_day, closing_day = period.dates(reading_day)
    start, end = local_midnight(first_day, zone), local_midnight(closing_day, zone)
    if installed_at is not None and end <= installed_at:
        return None  # not in service yet: its predecessor bills this period
    if retired_at is None:
        return Window(first_day, closing_day, start, end)
    if retired_reason == REPLACED:
        return Window(first_day, closing_day, start, end) if end <= retired_at else None
    if start >= retired_at:
        return None
    if end <= retired_at:
        return Window(first_day, closing_day, start, end)
    local = retired_at.astimezone(zone)
    last_day = local.date()
    if local_midnight(last_day, zone) < retired_at:
        last_day += timedelta(days=1)
    return Window(first_day, last_day, start, retired_at, final=True)
