"""The broker address of an ``mqtt://`` or ``mqtts://`` URL (``DOXA_MQTT_URL``), shared by the
collector and the MQTT simulator. Pure: parsing only, no connection."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit


class BrokerUrlError(ValueError):
    """The URL does not name an MQTT broker; the message says why."""


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None


def parse_broker_url(url: str) -> BrokerAddress:
    """``mqtt://[user:password@]host[:port]`` (default port 1883) or ``mqtts://…`` (TLS, 8883)."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise BrokerUrlError(f"MQTT URL must look like mqtt://host:port, not {url!r}")
    tls = parts.scheme == "mqtts"
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError as exc:
        raise BrokerUrlError(f"bad port in MQTT URL {url!r}") from exc
    return BrokerAddress(
        parts.hostname,
        port,
        tls,
        unquote(parts.username) if parts.username else None,
        unquote(parts.password) if parts.password else None,
    )
