"""The ``native`` payload (contract §4): a JSON object, or an array of them (catch-up).

``ts`` is ISO 8601 with an offset, or Unix epoch seconds as a JSON number; only ``ts`` and
``energy_import_kwh`` are required. Unknown keys are ignored (forward compatible); a field given
as ``null`` counts as not reported. The message is the unit of rejection: one bad element of an
array rejects the whole message, so nothing is half-stored and the reason names the element.
"""

from __future__ import annotations

import json
import sys
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
from protocols.reading import MEASURED_FIELDS, OPTIONAL_FIELDS, Reading

NON_NEGATIVE = frozenset({"energy_export_kwh", "voltage_v", "frequency_hz"})
REQUIRED = "energy_import_kwh"


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


# Each measured field in Reading order: (name, lowest value allowed, required).
_MAX = sys.float_info.max
_FIELDS = tuple(
    (name, 0.0 if name in NON_NEGATIVE or name == REQUIRED else -_MAX, name == REQUIRED)
    for name in MEASURED_FIELDS
)
_fromisoformat = datetime.fromisoformat


def _plain_reading(obj: Any, serial: str, limit: datetime | None) -> Reading | None:
    """The common case at a fraction of the cost: an object whose ``ts`` is ISO 8601 text with an
    offset, at most ``limit``, and whose numbers are finite and in range. None for anything else:
    :func:`_reading` then reads or rejects it in full (on what this accepts, it agrees)."""
    if limit is None or type(obj) is not dict:
        return None
    text = obj.get("ts")
    if type(text) is not str:
        return None
    try:
        parsed = _fromisoformat(text)
        if parsed.utcoffset() is None:
            return None
        ts = parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        return None
    if ts > limit:
        return None
    values: list[Any] = []
    for name, low, required in _FIELDS:
        value = obj.get(name)
        if value is None:
            if required:
                return None
            values.append(None)
            continue
        kind = type(value)
        if kind is int:
            try:
                value = float(value)
            except OverflowError:
                return None
        elif kind is not float:  # (a bool, a string, an object...)
            return None
        if not low <= value <= _MAX:  # (false for NaN too)
            return None
        values.append(value)
    return Reading(serial, ts, *values)


def parse_native(
    serial: str, payload: bytes, *, now: datetime, max_future: timedelta
) -> list[Reading]:
    data = load_json(payload)
    try:
        limit: datetime | None = now + max_future
    except OverflowError:  # (then _reading raises it, as it always has)
        limit = None
    if isinstance(data, list):
        if not data:
            raise PayloadError("the payload is an empty array")
        return [
            _plain_reading(item, serial, limit)
            or _reading(item, serial, f"element {i + 1} of {len(data)}: ", now, max_future)
            for i, item in enumerate(data)
        ]
    return [_plain_reading(data, serial, limit) or _reading(data, serial, "", now, max_future)]


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
