"""The ``tasmota`` payload (Tasmota energy-monitor firmware's ``tele/<topic>/SENSOR``).

``{"Time": "2026-11-26T10:15:00", "ENERGY": {"Total": 1234.56, "Power": 850, "Voltage": 230,
"Current": 3.9}}``. ``Time`` has no offset: it is local time in the configured zone (a time that
does carry an offset is honoured). ``ENERGY.Total`` (kWh) is required; ``Power``, ``Voltage``,
``Current``, ``Frequency`` and ``ExportActive`` (kWh) are optional. Three-phase firmware sends
per-phase arrays: ``Power`` is then summed (total active power) and ``Voltage``/``Current``
arrays are not stored (the Reading has one value of each). Other keys (Today, Yesterday,
TotalStartTime, Factor, other sensors…) are ignored.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from protocols.errors import PayloadError
from protocols.payloads._json import (
    check_not_future,
    describe,
    load_json,
    non_negative,
    number,
    parse_time,
)
from protocols.reading import Reading


def _optional(energy: dict[str, Any], key: str, *, non_neg: bool = False) -> float | None:
    value = energy.get(key)
    if value is None:
        return None
    where = f"ENERGY.{key}"
    return non_negative(value, where) if non_neg else number(value, where)


def _power(energy: dict[str, Any]) -> float | None:
    value = energy.get("Power")
    if isinstance(value, list):
        if not value:
            return None
        total = sum(number(v, f"ENERGY.Power[{i}]") for i, v in enumerate(value))
        if not math.isfinite(total):  # finite phases can still overflow a float when summed
            raise PayloadError("the sum of ENERGY.Power is not a finite number")
        return total
    return _optional(energy, "Power")


def _scalar_or_none(energy: dict[str, Any], key: str) -> float | None:
    if isinstance(energy.get(key), list):
        return None  # per-phase values of a three-phase device: not stored
    return _optional(energy, key, non_neg=key == "Voltage")


def parse_tasmota(
    serial: str, payload: bytes, *, tz: ZoneInfo, now: datetime, max_future: timedelta
) -> list[Reading]:
    data = load_json(payload)
    if not isinstance(data, dict):
        raise PayloadError(f"expected a JSON object with Time and ENERGY, got {describe(data)}")
    if "Time" not in data:
        raise PayloadError("Time is missing")
    if not isinstance(data["Time"], str):
        raise PayloadError(
            f"Time must be text like 2026-11-26T10:15:00, not {describe(data['Time'])}"
        )
    ts = parse_time(data["Time"], "Time", local=tz)
    check_not_future(ts, "Time", now, max_future)
    energy = data.get("ENERGY")
    if energy is None:
        raise PayloadError("ENERGY is missing (not an energy-monitor message)")
    if not isinstance(energy, dict):
        raise PayloadError(f"ENERGY must be an object, not {describe(energy)}")
    if energy.get("Total") is None:
        raise PayloadError("ENERGY.Total is missing")
    return [
        Reading(
            serial,
            ts,
            non_negative(energy["Total"], "ENERGY.Total"),
            energy_export_kwh=_optional(energy, "ExportActive", non_neg=True),
            power_w=_power(energy),
            voltage_v=_scalar_or_none(energy, "Voltage"),
            current_a=_scalar_or_none(energy, "Current"),
            frequency_hz=_optional(energy, "Frequency", non_neg=True),
        )
    ]


def encode_tasmota(reading: Reading, tz: ZoneInfo) -> bytes:
    """A reading → a Tasmota SENSOR message with ``Time`` in local time of ``tz``, no offset
    (fractions of a second are written only when present, so the round trip is exact)."""
    local = reading.ts.astimezone(tz).replace(tzinfo=None)
    time_text = local.isoformat(timespec="seconds" if local.microsecond == 0 else "microseconds")
    energy: dict[str, Any] = {"Total": reading.energy_import_kwh}
    for key, value in (
        ("ExportActive", reading.energy_export_kwh),
        ("Power", reading.power_w),
        ("Voltage", reading.voltage_v),
        ("Current", reading.current_a),
        ("Frequency", reading.frequency_hz),
    ):
        if value is not None:
            energy[key] = value
    return json.dumps(
        {"Time": time_text, "ENERGY": energy}, separators=(",", ":"), allow_nan=False
    ).encode()
