"""Back-off for a meter that keeps failing, so a dead meter does not eat every cycle.

Pure. After ``after`` failed polls in a row a meter is skipped for 1 cycle, after the next failure
for 2, then 4… up to ``max_cycles``. One success clears it. Only the meter's own failures count
(timeout, exception response, undecodable registers); an unreachable gateway does not.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class _State:
    failures: int = 0
    skip: int = 0


class Backoff:
    def __init__(self, after: int, max_cycles: int) -> None:
        self.after = max(1, after)
        self.max_cycles = max(1, max_cycles)
        self._states: dict[int, _State] = {}

    def should_skip(self, meter_id: int) -> bool:
        """True (and one skip used up) when this cycle should leave the meter alone."""
        state = self._states.get(meter_id)
        if state is None or state.skip == 0:
            return False
        state.skip -= 1
        return True

    def failed(self, meter_id: int) -> int:
        """Record a failure; returns the cycles the meter will now be skipped (0: none)."""
        state = self._states.setdefault(meter_id, _State())
        state.failures += 1
        if state.failures >= self.after:
            state.skip = min(2 ** (state.failures - self.after), self.max_cycles)
        return state.skip

    def succeeded(self, meter_id: int) -> None:
        self._states.pop(meter_id, None)

    def failures(self, meter_id: int) -> int:
        state = self._states.get(meter_id)
        return state.failures if state else 0

    def forget_except(self, meter_ids: set[int]) -> None:
        """Drop the state of meters no longer polled (inventory changed)."""
        for meter_id in list(self._states):
            if meter_id not in meter_ids:
                del self._states[meter_id]
