"""Intake bounds: which readings are physically possible, and how many rejections are kept.

Pure (no I/O, no clock of its own: times come from the unit being checked). The writer applies
:func:`impossible` to every reading of every unit, MQTT and Modbus alike, once the serial is
resolved to a meter, so a unit with one impossible reading is rejected whole with the reason
(contract §4: a message is never half-stored). The parsers already refuse what no meter can send
(non-numbers, NaN, negative registers, times more than 10 minutes ahead); these bounds need the
meter (its model's rating, its installation time) or the site's configuration.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from protocols.reading import MEASURED_FIELDS, Reading

# Highest active power each built-in model can measure on one phase, in W: its maximum current
# at 300 V (above the highest voltage a 230 V meter tolerates). SDM120: 45 A; SDM630: 100 A per
# phase (the stored power is phase 1, contract §5); DDSU666: 80 A.
MODEL_MAX_POWER_W: Mapping[str, float] = {
    "sdm120": 45 * 300.0,
    "sdm630": 100 * 300.0,
    "ddsu666": 80 * 300.0,
}


@dataclass(frozen=True)
class IntakeLimits:
    """The configurable bounds (README "Intake bounds" names the settings)."""

    max_register_kwh: float = 1e9  # DOXA_MAX_REGISTER_KWH
    max_power_w: float = 1e6  # DOXA_MAX_POWER_W: meters whose model has no rating (MQTT, generic)
    horizon_days: int = 400  # DOXA_READING_HORIZON_DAYS: oldest reading accepted, before receipt
    model_max_power_w: Mapping[str, float] = field(default_factory=lambda: MODEL_MAX_POWER_W)
    # Rejections stored per window: per topic prefix (first topic level) and in all. Beyond them
    # a rejection is still counted (metrics, the log) but its row is not written.
    rejections_per_prefix: int = 60
    rejections_total: int = 300
    rejection_window: float = 60.0  # seconds

    @property
    def horizon(self) -> timedelta:
        return timedelta(days=self.horizon_days)

    def power_limit(self, model: str | None) -> float:
        return self.model_max_power_w.get(model or "", self.max_power_w)


@dataclass(frozen=True)
class MeterFacts:
    """What the bounds need of a meter: its model (None for MQTT) and installation time
    (``meters.installed_at``: a replacement meter's swap time; None when unknown)."""

    model: str | None = None
    installed_at: datetime | None = None


def impossible(
    reading: Reading,
    meter: MeterFacts,
    limits: IntakeLimits,
    *,
    received_at: datetime,
    backfill: bool = False,
) -> str | None:
    """Why ``reading`` cannot be a real measurement of ``meter``, or None if it can.

    ``received_at`` anchors the horizon (the spool replays with the original receipt time).
    ``backfill`` (the explicit back-fill path, ``doxa backfill``) lifts the horizon, not the
    installation time: no meter measures before it is installed."""
    for name in MEASURED_FIELDS:
        value = getattr(reading, name)
        if value is not None and not math.isfinite(value):
            return f"{name} is not a finite number"
    if reading.energy_import_kwh > limits.max_register_kwh:
        return (
            f"energy_import_kwh {reading.energy_import_kwh:.12g} is above the largest register "
            f"accepted ({limits.max_register_kwh:.12g} kWh)"
        )
    export = reading.energy_export_kwh
    if export is not None and export > limits.max_register_kwh:
        return (
            f"energy_export_kwh {export:.12g} is above the largest register accepted "
            f"({limits.max_register_kwh:.12g} kWh)"
        )
    power = reading.power_w
    if power is not None:
        rating = limits.power_limit(meter.model)
        if abs(power) > rating:
            what = (
                f"the {meter.model} rating"
                if meter.model in limits.model_max_power_w
                else ("the largest power accepted")
            )
            return f"power_w {power:.12g} is beyond {what} ({rating:.12g} W)"
    if meter.installed_at is not None and reading.ts < meter.installed_at:
        return (
            f"ts {reading.ts.isoformat()} is before the meter was installed "
            f"({meter.installed_at.isoformat()})"
        )
    if not backfill:
        try:
            oldest = received_at - limits.horizon
        except OverflowError:
            oldest = datetime.min.replace(tzinfo=received_at.tzinfo)
        if reading.ts < oldest:
            return (
                f"ts {reading.ts.isoformat()} is more than {limits.horizon_days} days old "
                "(older history goes through `doxa backfill`)"
            )
    return None


def topic_prefix(topic: str | None, source: str) -> str:
    """The rejection-rate key of a message: its first topic level (cut), or its source."""
    if not topic:
        return source
    return topic.split("/", 1)[0][:64]


class RejectionBound:
    """Rate bound of stored rejections (per topic prefix and in all, per window).

    Not thread-safe (the writer's thread). Windows start at the first rejection after the
    previous window ended, measured in the rejections' own receipt times."""

    def __init__(self, limits: IntakeLimits) -> None:
        self.limits = limits
        self._window_start: datetime | None = None
        self._per_prefix: dict[str, int] = {}
        self._total = 0
        self.suppressed: dict[str, int] = {}  # per prefix, in the current window
        self._announced: list[str] = []  # prefixes newly suppressed, not yet logged

    def admit(self, prefix: str, at: datetime) -> bool:
        """True if this rejection's row is stored; False if it is only counted."""
        start = self._window_start
        if start is None or (at - start).total_seconds() >= self.limits.rejection_window:
            self._window_start = at
            self._per_prefix = {}
            self._total = 0
            self.suppressed = {}
        seen = self._per_prefix.get(prefix, 0)
        if seen >= self.limits.rejections_per_prefix or self._total >= self.limits.rejections_total:
            if prefix not in self.suppressed and len(self.suppressed) < 10_000:
                self.suppressed[prefix] = 0
                self._announced.append(prefix)
            if prefix in self.suppressed:
                self.suppressed[prefix] += 1
            return False
        if len(self._per_prefix) < 10_000 or prefix in self._per_prefix:
            self._per_prefix[prefix] = seen + 1
        self._total += 1
        return True

    def newly_suppressed(self) -> list[str]:
        """Prefixes whose rejections started to be suppressed since the last call (for one log
        line per prefix and window)."""
        taken, self._announced = self._announced, []
        return taken
