"""The broker address of an ``mqtt://`` or ``mqtts://`` URL (``DOXA_MQTT_URL``), shared by the
collector and the MQTT simulator. Pure: parsing only, no connection.

A URL may carry a password: every message and log line shows it through :func:`redact_url`
(``mqtt://user:***@host:1883``), never as given."""

from __future__ import annotations

import re
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


def redact_url(url: str) -> str:
    """``url`` with the credentials of its user-info part masked: ``scheme://user:***@host``, or
    ``scheme://***@host`` when only a user (often a token) is given. Works on malformed URLs too
    (everything before the last ``@`` after ``//`` is user info), so an error can quote them."""
    head, at, tail = url.rpartition("@")
    if not at:
        return url
    prefix, sep, userinfo = head.rpartition("//")
    if not sep:
        prefix, userinfo = "", head
    user, colon, _password = userinfo.partition(":")
    masked = f"{user}:***" if colon and "/" not in user else "***"
    return f"{prefix}{sep}{masked}@{tail}"


# ``scheme://user:password@`` anywhere in a text (a log line, an error from a library).
_CREDENTIALS = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^\s:/@'\"]*):[^\s@'\"]*@"
)


def redact_text(text: str) -> str:
    """Every ``scheme://user:password@`` in ``text`` with its password masked."""
    if "@" not in text:
        return text
    return _CREDENTIALS.sub(r"\g<scheme>\g<user>:***@", text)


def parse_broker_url(url: str) -> BrokerAddress:
    """``mqtt://[user:password@]host[:port]`` (default port 1883) or ``mqtts://…`` (TLS, 8883)."""
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
    except ValueError as exc:  # e.g. an unbalanced "[" in the host
        raise BrokerUrlError(f"MQTT URL {redact_url(url)!r} does not parse ({exc})") from None
    if parts.scheme not in ("mqtt", "mqtts") or not hostname:
        raise BrokerUrlError(f"MQTT URL must look like mqtt://host:port, not {redact_url(url)!r}")
    tls = parts.scheme == "mqtts"
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError:
        raise BrokerUrlError(f"bad port in MQTT URL {redact_url(url)!r}") from None
    return BrokerAddress(
        hostname,
        port,
        tls,
        unquote(parts.username) if parts.username else None,
        unquote(parts.password) if parts.password else None,
    )
