"""MQTT payload codecs (contract §4): bytes → readings, readings → bytes. Pure, no I/O.

``parse_payload`` raises :class:`protocols.errors.PayloadError` (with a ``reason`` a person can
read) for anything unusable, and never any other exception. A message is the unit of rejection:
a native array with one bad element is rejected whole, so nothing is half-stored.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from protocols.errors import PayloadError
from protocols.payloads._json import MAX_PAYLOAD_BYTES
from protocols.payloads.native import encode_native, parse_native
from protocols.payloads.tasmota import encode_tasmota, parse_tasmota
from protocols.reading import Reading

FORMATS: tuple[str, ...] = ("native", "tasmota")

__all__ = ["FORMATS", "MAX_PAYLOAD_BYTES", "encode_native", "encode_tasmota", "parse_payload"]


def parse_payload(
    fmt: str,
    serial: str,
    payload: bytes,
    *,
    tz: ZoneInfo,
    now: datetime,
    max_future: timedelta = timedelta(minutes=10),
) -> list[Reading]:
    """Parse one MQTT message of format ``fmt`` from meter ``serial``.

    ``tz`` is the local zone of Tasmota times; ``now`` (aware) bounds timestamps: one more than
    ``max_future`` ahead of it is rejected. Returns the readings in message order (at least one).
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")  # a programming error, not a payload's
    if not serial:
        raise PayloadError("the topic names no meter serial")
    if fmt not in FORMATS:
        raise ValueError(f"unknown payload format {fmt!r} (one of {', '.join(FORMATS)})")
    try:
        if fmt == "native":
            return parse_native(serial, bytes(payload), now=now, max_future=max_future)
        return parse_tasmota(serial, bytes(payload), tz=tz, now=now, max_future=max_future)
    except PayloadError:
        raise
    except (RecursionError, MemoryError, ArithmeticError, ValueError, TypeError) as exc:
        # A case the codecs missed: still this message's rejection alone, with a reason.
        raise PayloadError(f"the payload could not be read ({type(exc).__name__})") from None
