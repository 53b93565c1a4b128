"""When a notice that failed is tried again. Pure.

Exponential back-off with a cap: 30 s after the first failed try, then 1, 2, 4… minutes, at most
:data:`CAP`; a notice is dead after ``max_attempts`` tries. A fixed schedule (no jitter) keeps
tests exact; workers do not synchronise on it because each notice failed at its own time.
"""

from __future__ import annotations

from datetime import timedelta

BASE = timedelta(seconds=30)
CAP = timedelta(hours=1)
DEFAULT_MAX_ATTEMPTS = 8  # 30 s + 1 + 2 + 4 + 8 + 16 + 32 min: about an hour of tries


def delay(attempts: int, base: timedelta = BASE, cap: timedelta = CAP) -> timedelta:
    """The wait after the ``attempts``-th failed try (1 → base, 2 → 2 × base, …, ≤ cap)."""
    if attempts < 1:
        return timedelta(0)
    grown: timedelta = base * 2 ** min(attempts - 1, 32)
    return min(grown, cap)


def is_dead(attempts: int, max_attempts: int) -> bool:
    return attempts >= max_attempts
