"""The load model: what a residential meter measures at any instant, as a pure function of
(meter, time).

Power follows a residential day in local time — near zero at night, a morning peak around 06:00
and an evening peak around 19:00 — scaled by a seeded peak per meter and a daily factor
(weekdays, the hot season, seeded day-to-day noise), and shifted by a seeded habit offset per
meter. Energy is the exact integral of that power (closed form: the daily shape is linear between
hourly knots), so energy and power always agree. The daily factor is a weekly and a seasonal wave
plus noise balanced over pairs of days, so its prefix sum has a closed form too: any instant, past
or future, costs O(1). Voltage sags with the neighbourhood's load, frequency is the grid's (shared
by all meters), current is P / (V × power factor). Three-phase meters split the load over phases.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import UTC, datetime

# Relative load at each local hour 00..23, linear in between (and from 23:00 back to 00:00).
SHAPE: tuple[float, ...] = (
    0.06, 0.05, 0.04, 0.04, 0.05, 0.25, 0.70, 0.60, 0.35, 0.28, 0.28, 0.40,
    0.50, 0.40, 0.33, 0.33, 0.40, 0.65, 0.95, 1.00, 0.92, 0.78, 0.50, 0.20,
)  # fmt: skip
# Integral of SHAPE from 00:00 to each hour (trapezoids), and over the whole day.
_PREFIX: tuple[float, ...] = tuple(
    sum((SHAPE[k] + SHAPE[(k + 1) % 24]) / 2 for k in range(h)) for h in range(25)
)
DAY_INTEGRAL = _PREFIX[24]
ANCHOR = datetime(2024, 1, 1, tzinfo=UTC).timestamp()
"""Day 0 of the daily factors; energy is anchored there (any time before or after works)."""
WEEKLY_AMPLITUDE = 0.08
SEASONAL_AMPLITUDE = 0.12  # air conditioning: most use around late April
SEASON_PEAK_DAY = 120
DAILY_NOISE = 0.15
_MASK = (1 << 64) - 1


def _mix(x: int) -> int:
    """splitmix64: a fast, well-spread integer hash (the per-day and per-minute randomness)."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def _unit(x: int) -> float:
    """A hash → [0, 1)."""
    return _mix(x) / 2.0**64


def _wave_sum(days: int, omega: float, phase: float) -> float:
    """Σ_{d=0}^{days-1} sin(ω·d + φ), for any integer ``days`` (negative: minus the sum over
    [days, 0)), in closed form."""
    half = omega / 2.0
    return (math.cos(phase - half) - math.cos(omega * days + phase - half)) / (2.0 * math.sin(half))


def shape_at(hours: float) -> float:
    """The daily shape at ``hours`` (any real number; periodic over 24)."""
    h = hours % 24.0
    k = int(h)
    d = h - k
    return SHAPE[k] + (SHAPE[(k + 1) % 24] - SHAPE[k]) * d


def shape_integral(hours: float) -> float:
    """∫₀^hours shape (an antiderivative of the periodic shape)."""
    days = math.floor(hours / 24.0)
    h = hours - 24.0 * days
    k = min(int(h), 23)
    d = h - k
    a, b = SHAPE[k], SHAPE[(k + 1) % 24]
    return days * DAY_INTEGRAL + _PREFIX[k] + a * d + (b - a) * d * d / 2


GRID_SEED = 0x5EED_0F_6E1D


@dataclass
class Profile:
    """One meter's seeded character; every value it serves derives from these numbers."""

    key: int
    peak_w: float
    shift_h: float
    power_factor: float
    voltage_offset: float
    energy_start_kwh: float
    export_kwh: float
    utc_offset_h: float
    phase_shares: tuple[float, ...] = (1.0,)
    phase_voltage_offsets: tuple[float, ...] = (0.0,)
    weekly_phase: float = 0.0
    seasonal_phase: float = 0.0

    @classmethod
    def seeded(
        cls, seed: int, serial: str, *, phases: int = 1, utc_offset_h: float = 7.0
    ) -> Profile:
        rng = random.Random(f"doxa:{seed}:{serial}")
        peak = rng.uniform(500.0, 2500.0) * (2.5 if phases == 3 else 1.0)
        if phases == 3:
            raw = [rng.uniform(0.8, 1.2) for _ in range(3)]
            shares = tuple(r / sum(raw) for r in raw)
            offsets = (0.0, rng.uniform(-2.0, 2.0), rng.uniform(-2.0, 2.0))
        else:
            shares, offsets = (1.0,), (0.0,)
        return cls(
            weekly_phase=rng.uniform(0.0, 2.0 * math.pi),
            seasonal_phase=math.pi / 2
            - 2.0 * math.pi * (SEASON_PEAK_DAY + rng.uniform(-10, 10)) / 365.25,
            key=rng.getrandbits(63),
            peak_w=peak,
            shift_h=rng.uniform(-0.75, 0.75),
            power_factor=rng.uniform(0.88, 0.99),
            voltage_offset=rng.uniform(-3.0, 3.0),
            energy_start_kwh=rng.uniform(800.0, 25000.0),
            export_kwh=rng.uniform(5.0, 500.0) if rng.random() < 0.15 else 0.0,
            utc_offset_h=utc_offset_h,
            phase_shares=shares,
            phase_voltage_offsets=offsets,
        )

    def local_hours(self, ts: datetime) -> float:
        """Local wall-clock hours since the anchor day's local midnight."""
        return (ts.timestamp() - ANCHOR) / 3600.0 + self.utc_offset_h

    def _noise(self, day: int) -> float:
        """Day-to-day noise, equal and opposite within each pair of days (2k, 2k+1)."""
        value = DAILY_NOISE * (2.0 * _unit(self.key ^ ((day // 2) & _MASK)) - 1.0)
        return value if day % 2 == 0 else -value

    def day_factor(self, day: int) -> float:
        """The day's scale of the load (0.65–1.35)."""
        return (
            1.0
            + WEEKLY_AMPLITUDE * math.sin(2.0 * math.pi * day / 7.0 + self.weekly_phase)
            + SEASONAL_AMPLITUDE * math.sin(2.0 * math.pi * day / 365.25 + self.seasonal_phase)
            + self._noise(day)
        )

    def _days_before(self, day: int) -> float:
        """Σ day_factor over [0, day) (negative when day < 0), in closed form."""
        return (
            day
            + WEEKLY_AMPLITUDE * _wave_sum(day, 2.0 * math.pi / 7.0, self.weekly_phase)
            + SEASONAL_AMPLITUDE * _wave_sum(day, 2.0 * math.pi / 365.25, self.seasonal_phase)
            + (self._noise(day - 1) if day % 2 else 0.0)
        )

    def power_w(self, ts: datetime) -> float:
        x = self.local_hours(ts)
        return self.peak_w * self.day_factor(math.floor(x / 24.0)) * shape_at(x - self.shift_h)

    def energy_kwh(self, ts: datetime) -> float:
        """Import energy: the exact integral of :meth:`power_w` from the anchor, plus the start
        register (never below 0, and non-decreasing)."""
        x = self.local_hours(ts)
        day = math.floor(x / 24.0)
        whole_days = self._days_before(day) * DAY_INTEGRAL
        today = self.day_factor(day) * (
            shape_integral(x - self.shift_h) - shape_integral(24.0 * day - self.shift_h)
        )
        return max(0.0, self.energy_start_kwh + self.peak_w / 1000.0 * (whole_days + today))

    def voltage_v(self, ts: datetime, phase: int = 0) -> float:
        x = self.local_hours(ts)
        minute = math.floor(x * 60.0)
        noise = _unit(self.key ^ (minute * 0x9E37 + phase)) - 0.5
        return (
            231.0
            + self.voltage_offset
            + self.phase_voltage_offsets[phase]
            - 7.0 * shape_at(x)
            + noise
        )

    def current_a(self, ts: datetime, phase: int = 0) -> float:
        return self._current(self.power_w(ts) * self.phase_shares[phase], self.voltage_v(ts, phase))

    def _current(self, power_w: float, voltage_v: float) -> float:
        return power_w / (voltage_v * self.power_factor)


def grid_frequency_hz(ts: datetime) -> float:
    """The grid's frequency, the same at every meter: 50 Hz ± 0.05, changing every 10 s."""
    step = math.floor(ts.timestamp() / 10.0)
    return 50.0 + 0.1 * (_unit(GRID_SEED ^ step) - 0.5)


@dataclass(frozen=True)
class UseChange:
    """From ``start`` to ``end`` the meter counts ``factor`` × the load (0: a stuck register,
    4: a day of four times the use); afterwards the register goes on from where it got to."""

    start: datetime
    end: datetime
    factor: float


@dataclass
class MeterLoad:
    """A meter's load with its register resets (meter replaced or cleared): after a reset at
    time r the import register reads energy(t) − energy(r) and the export register 0.

    Validation faults (issue 14) change what the register reads, never the load: ``steps``
    (at time a the register jumps by k kWh and stays there: k > 0 a spike, k < 0 a rollback),
    ``changes`` (:class:`UseChange`) and ``silences`` (no reading in [start, end): a gap, seen by
    :meth:`silent` and the history generators)."""

    profile: Profile
    resets: list[datetime] = field(default_factory=list)
    steps: list[tuple[datetime, float]] = field(default_factory=list)
    changes: list[UseChange] = field(default_factory=list)
    silences: list[tuple[datetime, datetime]] = field(default_factory=list)

    def silent(self, ts: datetime) -> bool:
        return any(start <= ts < end for start, end in self.silences)

    def register_kwh(self, ts: datetime) -> float:
        """The import register before resets: the load's energy with the faults applied."""
        p = self.profile
        energy = p.energy_kwh(ts)
        for c in self.changes:
            if ts > c.start:
                base = p.energy_kwh(min(ts, c.end)) - p.energy_kwh(c.start)
                energy += (c.factor - 1.0) * base
        return energy + sum(k for at, k in self.steps if at <= ts)

    def reset(self, at: datetime) -> None:
        if self.resets and at < self.resets[-1]:
            raise ValueError("register resets must be added in time order")
        self.resets.append(at)

    def values(self, ts: datetime) -> dict[str, float]:
        """Every quantity a meter could serve at ``ts``, by Measurement field or extra name."""
        p = self.profile
        energy = self.register_kwh(ts)
        export = p.export_kwh
        if self.resets:
            i = bisect_right(self.resets, ts)
            if i:
                energy = max(0.0, energy - self.register_kwh(self.resets[i - 1]))
                export = 0.0
        power = p.power_w(ts)
        voltage = p.voltage_v(ts)
        out = {
            "energy_import_kwh": energy,
            "energy_export_kwh": export,
            "power_w": power,
            "voltage_v": voltage,
            "current_a": p._current(power * p.phase_shares[0], voltage),
            "frequency_hz": grid_frequency_hz(ts),
        }
        if len(p.phase_shares) == 3:
            # Phase 1's power is the meter's power_w (contract §5, register 0x000C); the total is
            # served at 0x0034.
            out["power_w"] = power * p.phase_shares[0]
            out["power_total_w"] = power
            for k in (1, 2, 3):
                phase_v = voltage if k == 1 else p.voltage_v(ts, k - 1)
                phase_p = power * p.phase_shares[k - 1]
                out[f"voltage_l{k}"] = phase_v
                out[f"current_l{k}"] = p._current(phase_p, phase_v)
                out[f"power_l{k}"] = phase_p
        return out
