"""The ``native`` payload (contract §4): a JSON object, or an array of them (catch-up).

``ts`` is ISO 8601 with an offset, or Unix epoch seconds as a JSON number; only ``ts`` and
``energy_import_kwh`` are required. Unknown keys are ignored (forward compatible); a field given
as ``null`` counts as not reported. The message is the unit of rejection: one bad element of an
array rejects the whole message, so nothing is half-stored and the reason names the element.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from protocols.errors import PayloadError
from protocols.payloads._json import (
    check_not_future,
    describe,
    epoch_time,
    load_json,
    non_negative,
    number,
    parse_time,
)
from protocols.reading import OPTIONAL_FIELDS, Reading

NON_NEGATIVE = frozenset({"energy_export_kwh", "voltage_v", "frequency_hz"})


def _timestamp(value: Any, where: str) -> datetime:
    if isinstance(value, str):
        return parse_time(value, where, local=None)
    if value is None:
        raise PayloadError(f"{where} is missing")
    return epoch_time(number(value, where), where)


def _reading(obj: Any, serial: str, where: str, now: datetime, max_future: timedelta) -> Reading:
    if not isinstance(obj, dict):
        kind = "an array" if isinstance(obj, list) else describe(obj)
        raise PayloadError(f"{where}expected a JSON object, got {kind}")
    if "ts" not in obj:
        raise PayloadError(f"{where}ts is missing")
    ts = _timestamp(obj["ts"], f"{where}ts")
    check_not_future(ts, f"{where}ts", now, max_future)
    if obj.get("energy_import_kwh") is None:
        raise PayloadError(f"{where}energy_import_kwh is missing")
    energy = non_negative(obj["energy_import_kwh"], f"{where}energy_import_kwh")
    optional: dict[str, float | None] = {}
    for name in OPTIONAL_FIELDS:
        value = obj.get(name)
        if value is None:
            optional[name] = None
        elif name in NON_NEGATIVE:
            optional[name] = non_negative(value, f"{where}{name}")
        else:
            optional[name] = number(value, f"{where}{name}")
    return Reading(serial, ts, energy, **optional)


def parse_native(
    serial: str, payload: bytes, *, now: datetime, max_future: timedelta
) -> list[Reading]:
    data = load_json(payload)
    if isinstance(data, list):
        if not data:
            raise PayloadError("the payload is an empty array")
        return [
            _reading(item, serial, f"element {i + 1} of {len(data)}: ", now, max_future)
            for i, item in enumerate(data)
        ]
    return [_reading(data, serial, "", now, max_future)]


def _object(reading: Reading, tz: ZoneInfo | None) -> dict[str, Any]:
    obj: dict[str, Any] = {"ts": reading.ts.astimezone(tz or UTC).isoformat()}
    for name, value in reading.values().items():
        if value is not None:
            obj[name] = value
    return obj


def encode_native(readings: Reading | Sequence[Reading], tz: ZoneInfo | None = None) -> bytes:
    """One reading → a JSON object; a sequence → a JSON array (a backlog). Times carry their
    offset in ``tz`` (UTC when None); floats are written exactly (shortest round-trip form)."""
    if isinstance(readings, Reading):
        data: Any = _object(readings, tz)
    else:
        data = [_object(r, tz) for r in readings]
    return json.dumps(data, separators=(",", ":"), allow_nan=False).encode()
