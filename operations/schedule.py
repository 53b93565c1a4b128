"""When a job is due: a daily time in the local zone, or every N seconds. Pure, no clock.

Each schedule answers two questions with the same rule: the latest fire time at or before an
instant (``latest``: the run a job owes, which the scheduler records and catches up once after
a restart), and the APScheduler trigger that wakes the process at the next one (``trigger``;
``tests/test_operations_scheduler.py`` holds the two equal).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

# Interval schedules count from this instant, so every process agrees on the fire times.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def parse_hhmm(text: str) -> time:
    """``"02:00"`` → ``time(2, 0)``; anything else raises ValueError (a setting's parser)."""
    match = _HHMM.match(text.strip())
    if not match:
        raise ValueError(f"expected HH:MM (00:00-23:59), not {text!r}")
    return time(int(match[1]), int(match[2]))


@dataclass(frozen=True)
class Daily:
    """Once a day at ``at`` local time in ``zone``."""

    at: time
    zone: ZoneInfo

    def __str__(self) -> str:
        return f"daily at {self.at:%H:%M} {self.zone.key}"

    def latest(self, now: datetime) -> datetime:
        local = now.astimezone(self.zone)
        today = datetime.combine(local.date(), self.at, self.zone)
        return (
            today
            if today <= local
            else datetime.combine(local.date() - timedelta(days=1), self.at, self.zone)
        )

    def trigger(self) -> BaseTrigger:
        return CronTrigger(hour=self.at.hour, minute=self.at.minute, timezone=self.zone)


@dataclass(frozen=True)
class Every:
    """Every ``seconds``, counted from :data:`EPOCH` (fire times labelled in ``zone``)."""

    seconds: int
    zone: ZoneInfo

    def __str__(self) -> str:
        return f"every {self.seconds} s"

    def latest(self, now: datetime) -> datetime:
        elapsed = int((now - EPOCH).total_seconds())
        fired = EPOCH + timedelta(seconds=elapsed - elapsed % self.seconds)
        return fired.astimezone(self.zone)

    def trigger(self) -> BaseTrigger:
        return IntervalTrigger(seconds=self.seconds, start_date=EPOCH, timezone=self.zone)


Schedule = Daily | Every
