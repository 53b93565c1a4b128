"""The one value both ingestion paths produce: a meter's reading at an instant.

Units are fixed by the field names (kWh, W, V, A, Hz), so a model map or payload codec converts
to them once, at the edge. ``ts`` is timezone-aware; the parsers and decoders return it in UTC.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime

MEASURED_FIELDS: tuple[str, ...] = (
    "energy_import_kwh",
    "energy_export_kwh",
    "power_w",
    "voltage_v",
    "current_a",
    "frequency_hz",
)
"""The Reading fields a meter measures (everything but ``serial`` and ``ts``), in column order."""

OPTIONAL_FIELDS: tuple[str, ...] = MEASURED_FIELDS[1:]


@dataclass(frozen=True, slots=True)
class Reading:
    serial: str
    ts: datetime  # timezone-aware; parsers return it in UTC
    energy_import_kwh: float
    energy_export_kwh: float | None = None
    power_w: float | None = None
    voltage_v: float | None = None
    current_a: float | None = None
    frequency_hz: float | None = None

    def values(self) -> dict[str, float | None]:
        """The measured fields by name (``MEASURED_FIELDS`` order)."""
        return {name: getattr(self, name) for name in MEASURED_FIELDS}


assert tuple(f.name for f in fields(Reading))[2:] == MEASURED_FIELDS
