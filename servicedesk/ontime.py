"""Whether a request was handled on time, and the on-time share per province and month — the
figure a distributor publishes against its service standards.

A request is **on time** when it was closed (done or rejected: both are an answer) before its
deadline, **late** when closed at or after it or still open once it has passed, and **pending**
while open before it. The share of a month counts the requests whose deadline falls in that
local month and whose outcome is known: on time ÷ (on time + late). Pending ones are counted
apart and left out of the share, so a month's figure only moves while its deadlines are running.
``request_store.on_time_shares`` computes the same in SQL; a test holds the two equal.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal
from zoneinfo import ZoneInfo

Outcome = Literal["on_time", "late", "pending"]


def outcome(deadline_at: datetime, closed_at: datetime | None, now: datetime) -> Outcome:
    if closed_at is not None:
        return "on_time" if closed_at < deadline_at else "late"
    return "late" if now >= deadline_at else "pending"


@dataclass(frozen=True)
class MonthShare:
    province: str
    month: date  # first day of the local month of the deadlines
    on_time: int
    late: int
    pending: int

    @property
    def share(self) -> float | None:
        decided = self.on_time + self.late
        return self.on_time / decided if decided else None


def shares(
    requests: Iterable[tuple[str, datetime, datetime | None]], now: datetime, zone: ZoneInfo
) -> list[MonthShare]:
    """Per (province, month of deadline): requests given as (province, deadline, closed_at)."""
    counts: dict[tuple[str, date], dict[Outcome, int]] = {}
    for province, deadline_at, closed_at in requests:
        local = deadline_at.astimezone(zone)
        key = (province, date(local.year, local.month, 1))
        bucket = counts.setdefault(key, {"on_time": 0, "late": 0, "pending": 0})
        bucket[outcome(deadline_at, closed_at, now)] += 1
    return [
        MonthShare(p, m, c["on_time"], c["late"], c["pending"])
        for (p, m), c in sorted(counts.items(), key=lambda kv: (kv[0][0], kv[0][1]))
    ]
