"""Local days: every day, billing-period boundary and daily bar starts at 00:00 local time
(``DOXA_TIMEZONE``), made here and nowhere else."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, tzinfo

ONE_DAY = timedelta(days=1)


def local_midnight(day: date, zone: tzinfo) -> datetime:
    """00:00 of ``day`` in ``zone``, as an aware datetime."""
    return datetime.combine(day, time(0), tzinfo=zone)
