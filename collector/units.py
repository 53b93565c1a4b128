"""The unit of ingestion: one MQTT message or one Modbus poll of one meter.

A unit is accepted or rejected whole (contract §4: a message is never half-stored). It carries
its readings, or the reason it was rejected, plus what a rejection row records (topic, serial,
raw payload). Units travel from the intake to the writer, and through the spool when the
database is away, so they have a compact, lossless JSON form here.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from protocols.reading import Reading

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


@dataclass(slots=True)
class Unit:
    """Readings of one message or poll (``reason`` None), or a rejection (``reason`` set)."""

    source: str  # 'mqtt' or 'modbus'
    readings: Sequence[Reading] = ()
    topic: str | None = None
    serial: str | None = None
    payload: bytes | None = None
    reason: str | None = None
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))


class SpoolFormatError(ValueError):
    """A spool record that does not decode (it passed its checksum, so it is a bug or tampering)."""


def _micros(ts: datetime) -> int:
    return (ts - _EPOCH) // _US


def _from_micros(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


def encode_units(units: Sequence[Unit]) -> bytes:
    """Units → compact JSON (timestamps as integer microseconds: exact round trip)."""
    out = []
    for u in units:
        out.append(
            [
                u.source,
                u.topic,
                u.serial,
                None if u.payload is None else base64.b64encode(u.payload).decode("ascii"),
                u.reason,
                _micros(u.received_at),
                [
                    [
                        r.serial,
                        _micros(r.ts),
                        r.energy_import_kwh,
                        r.energy_export_kwh,
                        r.power_w,
                        r.voltage_v,
                        r.current_a,
                        r.frequency_hz,
                    ]
                    for r in u.readings
                ],
            ]
        )
    return json.dumps(out, separators=(",", ":")).encode("utf-8")


def decode_units(data: bytes) -> list[Unit]:
    """The inverse of :func:`encode_units`."""
    try:
        rows = json.loads(data)
        units = []
        for source, topic, serial, payload, reason, received, readings in rows:
            units.append(
                Unit(
                    source=source,
                    topic=topic,
                    serial=serial,
                    payload=None if payload is None else base64.b64decode(payload),
                    reason=reason,
                    received_at=_from_micros(received),
                    readings=tuple(
                        Reading(s, _from_micros(ts), e, x, p, v, i, f)
                        for s, ts, e, x, p, v, i, f in readings
                    ),
                )
            )
    except (ValueError, TypeError) as exc:
        raise SpoolFormatError(f"spool record does not decode: {exc}") from exc
    return units


def count_readings(units: Sequence[Unit]) -> int:
    return sum(len(u.readings) for u in units)
