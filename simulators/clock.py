"""Simulated time: real time, accelerated time (a day in minutes), or a frozen clock that tests
move by hand. Everything the simulators serve is a function of this clock's ``now()``."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta


class SimClock:
    """``now() = start + (elapsed wall time) × speed``; ``frozen`` stops it until moved."""

    def __init__(
        self, start: datetime | None = None, speed: float = 1.0, *, frozen: bool = False
    ) -> None:
        if start is not None and start.tzinfo is None:
            raise ValueError("the clock's start must be timezone-aware")
        if not speed > 0:
            raise ValueError(f"speed must be positive, got {speed}")
        self.speed = speed
        self.frozen = frozen
        self._start = (start or datetime.now(UTC)).astimezone(UTC)
        self._wall0 = time.monotonic()

    @classmethod
    def fixed(cls, at: datetime) -> SimClock:
        """A clock standing still at ``at`` (tests move it with :meth:`advance` or :meth:`set`)."""
        return cls(at, frozen=True)

    def now(self) -> datetime:
        if self.frozen:
            return self._start
        return self._start + timedelta(seconds=(time.monotonic() - self._wall0) * self.speed)

    def set(self, at: datetime) -> None:
        """Jump to ``at`` (simulated time then runs on from there unless frozen)."""
        if at.tzinfo is None:
            raise ValueError("the time must be timezone-aware")
        self._start = at.astimezone(UTC)
        self._wall0 = time.monotonic()

    def advance(self, delta: timedelta | float) -> datetime:
        """Move simulated time on by ``delta`` (seconds or a timedelta); returns the new now."""
        step = delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        self.set(self.now() + step)
        return self._start

    def wall_seconds(self, simulated: float) -> float:
        """How long ``simulated`` seconds take in wall time at this clock's speed."""
        return simulated / self.speed
