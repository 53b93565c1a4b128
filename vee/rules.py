"""The validation rules' names and the numbers they compare against (contract §12).

The numbers are data: ``validation_thresholds`` (and ``meter_model_limits`` for the spike rule,
``validation_rules`` for severities and on/off), seeded by migration ``0900_validation.sql``
with the defaults below, which stand in for a row that is missing. Pure: no I/O here; the store
(``vee.validate``) reads the table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

ROLLBACK = "rollback"
SPIKE = "spike"
HIGH_USE = "high_use"
LOW_USE = "low_use"
ZERO_USE = "zero_use"
GAP = "gap"
FUTURE = "future"
MULTIPLIER = "multiplier"
RULES = (ROLLBACK, SPIKE, HIGH_USE, LOW_USE, ZERO_USE, GAP, FUTURE, MULTIPLIER)

# Who closed an exception that a later validation run no longer found.
VALIDATION_ACTOR = "validation"


@dataclass(frozen=True)
class Thresholds:
    """Every threshold of the rules, with the migration's defaults (see its descriptions)."""

    expected_interval_s: float = 1800.0
    gap_missing_intervals: float = 1.0
    rollback_tolerance_kwh: float = 0.01
    spike_tolerance_pct: float = 0.0
    history_weeks: float = 8.0
    history_min_days: float = 4.0
    high_use_pct: float = 200.0
    low_use_pct: float = 70.0
    use_min_kwh_per_day: float = 1.0
    coverage_min_hours: float = 12.0
    zero_use_days: float = 3.0
    zero_use_tolerance_kwh: float = 0.001
    future_tolerance_s: float = 600.0
    multiplier_window_s: float = 300.0
    estimate_linear_max_s: float = 3600.0
    estimate_profile_weeks: float = 3.0

    @classmethod
    def from_rows(cls, rows: Mapping[str, float]) -> Thresholds:
        """The thresholds named in ``rows`` (the table), defaults for the rest; unknown names
        are ignored so a newer table works with older code."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: float(v) for k, v in rows.items() if k in known})

    @property
    def gap_s(self) -> float:
        """A spacing of readings longer than this is a gap: at least ``gap_missing_intervals``
        expected readings are missing (half an interval of slack for jitter)."""
        return (self.gap_missing_intervals + 0.5) * self.expected_interval_s
