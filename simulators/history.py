"""Back-fill history: a meter's readings over a time range at an interval, from the same load
model the live simulators serve, so history and live data join without a seam."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

from protocols.reading import Reading


def aligned_times(start: datetime, end: datetime, interval: float) -> Iterator[datetime]:
    """Every multiple of ``interval`` seconds since the Unix epoch in [start, end), in UTC."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware")
    if not interval > 0:
        raise ValueError(f"interval must be positive, got {interval}")
    step = math.ceil(start.timestamp() / interval)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    while True:
        ts = epoch + timedelta(seconds=step * interval)
        if ts >= end:
            return
        yield ts
        step += 1


def readings_between(
    reading_at: Callable[[datetime], Reading], start: datetime, end: datetime, interval: float
) -> Iterator[Reading]:
    """``reading_at(ts)`` at each aligned time in [start, end), lazily (60 days of a 15-minute
    meter are 5,760 readings; a fleet's history is best streamed into COPY)."""
    for ts in aligned_times(start, end, interval):
        yield reading_at(ts)
