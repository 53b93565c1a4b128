"""Every Doxa setting, declared once as data and read in one place.

Each setting is an environment variable. An optional TOML file named by ``DOXA_CONFIG`` may set
the same keys, written either as the variable name (``DOXA_MQTT_URL = "..."``) or as its short
lower-case form (``mqtt_url = "..."``); the environment wins over the file. Components never read
the environment themselves: the CLI builds one :class:`Settings` and passes values down.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from doxa.errors import SettingsError
from metering.expected import MQTT_INTERVAL_S, POLL_INTERVAL_S


@dataclass(frozen=True)
class Setting:
    """One configurable value: its variable name, default (as text) and what it means."""

    env: str
    default: str | None
    help: str
    parse: Callable[[str], Any] = str

    @property
    def key(self) -> str:
        """The short TOML key: ``DOXA_MQTT_URL`` → ``mqtt_url``."""
        return self.env.removeprefix("DOXA_").lower()


def _zone(text: str) -> ZoneInfo:
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {text!r}") from exc


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError(f"must be a positive whole number, not {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(f"must be a whole number, 0 or more, not {text!r}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError(f"must be a positive number, not {text!r}")
    return value


def _hhmm(text: str) -> Any:
    from operations.schedule import parse_hhmm

    return parse_hhmm(text)


def _subscriptions(text: str) -> tuple[tuple[str, str], ...]:
    """``filter=format,filter=format`` → pairs; each filter needs exactly one ``+`` (the serial)."""
    pairs = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        topic, sep, fmt = item.rpartition("=")
        if not sep or not topic:
            raise ValueError(f"expected topic=format, got {item!r}")
        if topic.split("/").count("+") != 1:
            raise ValueError(f"topic filter {topic!r} needs exactly one '+' level (the serial)")
        if fmt not in ("native", "tasmota"):
            raise ValueError(f"unknown payload format {fmt!r} (native or tasmota)")
        pairs.append((topic, fmt))
    if not pairs:
        raise ValueError("no subscriptions given")
    return tuple(pairs)


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "DOXA_DATABASE_URL",
        None,
        "libpq URL of a TimescaleDB database; unset means the embedded local cluster that doxa "
        "manages under DOXA_HOME",
    ),
    Setting(
        "DOXA_DATABASE_READ_URL",
        None,
        "optional libpq URL of a streaming replica of DOXA_DATABASE_URL: the website's pages and"
        " the exports read from it (writes still go to DOXA_DATABASE_URL); unset: read the primary",
    ),
    Setting(
        "DOXA_RETENTION_MONTHS",
        "0",
        "raw readings older than this many months (from the first of the month) are dropped a"
        " chunk at a time by doxa retention / the scheduler; the daily rollup and bills stay;"
        " 0 keeps everything",
        _non_negative_int,
    ),
    Setting(
        "DOXA_MQTT_URL",
        "mqtt://127.0.0.1:1883",
        "broker as mqtt://host:port (mqtts:// for TLS; user:password@ in the URL)",
    ),
    Setting("DOXA_HOME", "./var", "where local state lives: embedded DB, spool, logs", Path),
    Setting(
        "DOXA_TIMEZONE",
        "Asia/Ho_Chi_Minh",
        "local time zone for billing days, Tasmota times and exports",
        _zone,
    ),
    Setting("DOXA_SECRET_KEY", None, "Flask secret key; required outside the demo"),
    Setting(
        "DOXA_MQTT_SUBSCRIPTIONS",
        "doxa/meters/+/reading=native,tele/+/SENSOR=tasmota",
        "topic filters the collector subscribes to, each bound to a payload format; the '+' "
        "level is the meter serial",
        _subscriptions,
    ),
    Setting(
        "DOXA_MQTT_SHARE_GROUP",
        "",
        "when set, subscribe as $share/GROUP/... so several collectors split one stream",
    ),
    Setting(
        "DOXA_POLL_INTERVAL",
        f"{POLL_INTERVAL_S:g}",
        "seconds between Modbus polls of a gateway (doxa collect --interval overrides)",
        _positive_float,
    ),
    Setting(
        "DOXA_MODBUS_TIMEOUT",
        "1",
        "seconds the collector waits for one Modbus answer before its one retry",
        _positive_float,
    ),
    Setting(
        "DOXA_MQTT_INTERVAL",
        f"{MQTT_INTERVAL_S:g}",
        "seconds between readings of an MQTT meter, as the engineers' page expects them (a meter "
        "is stale after two intervals; Tasmota's default TelePeriod is 300)",
        _positive_float,
    ),
    Setting(
        "DOXA_SPOOL_MAX_MB",
        "512",
        "bound of the collector's local spool used while the database is unreachable",
        _positive_int,
    ),
    Setting(
        "DOXA_METRICS_HOST",
        "127.0.0.1",
        "address the collector's /metrics listens on (doxa collect --metrics-port); it has no "
        "authentication, so only 127.0.0.1 by default",
    ),
    Setting(
        "DOXA_MAX_REGISTER_KWH",
        "1e9",
        "largest energy register (kWh) the collector accepts; a reading above it is rejected",
        _positive_float,
    ),
    Setting(
        "DOXA_MAX_POWER_W",
        "1e6",
        "largest |power| (W) accepted from a meter whose model has no built-in rating (MQTT, "
        "generic); sdm120, sdm630 and ddsu666 are bounded by their own rating",
        _positive_float,
    ),
    Setting(
        "DOXA_READING_HORIZON_DAYS",
        "400",
        "readings older than this many days when received are rejected (and any before the "
        "meter's installed_at); older history goes through doxa backfill",
        _positive_int,
    ),
    Setting(
        "DOXA_REJECTED_RETENTION_DAYS",
        "14",
        "rejected MQTT/Modbus messages are deleted by the collector after this many days",
        _positive_int,
    ),
    Setting(
        "DOXA_WEB_WORKERS",
        "2",
        "processes of the production web server (doxa web); about one per CPU core",
        _positive_int,
    ),
    Setting(
        "DOXA_WEB_THREADS",
        "4",
        "threads of each doxa web process (each holds one pooled database connection)",
        _positive_int,
    ),
    Setting(
        "DOXA_WEB_PROXIES",
        "0",
        "how many reverse proxies in front of doxa web add X-Forwarded-For/-Proto (0: trust none)",
        _non_negative_int,
    ),
    Setting(
        "DOXA_RATELIMIT_STORAGE",
        "database",
        "where the site's rate-limit counters live: database (the rate_limits table, shared by"
        " every web process), memory:// (one process only) or a Flask-Limiter URI (redis://…)",
    ),
    Setting(
        "DOXA_SMTP_URL",
        None,
        "SMTP server for email notices and codes: smtp://, smtp+starttls:// or smtps://"
        " user:pass@host:port (?cafile=, ?from=, ?timeout=); unset: no email",
    ),
    Setting(
        "DOXA_SMS_URL",
        None,
        "HTTP gateway for SMS: POST JSON {to, text}; 2xx sent, 4xx refused, else retried;"
        " unset: no SMS",
    ),
    Setting(
        "DOXA_MAIL_FROM",
        "Doxa <no-reply@doxa.invalid>",
        "sender of email notices and codes (its domain also names the Message-IDs)",
    ),
    Setting(
        "DOXA_NOTIFY_MAX_ATTEMPTS",
        "8",
        "tries of a notice before it is dead (back-off 30 s, 1, 2, 4… minutes, at most 1 h)",
        _positive_int,
    ),
    Setting(
        "DOXA_SCHEDULER_DAILY_AT",
        "02:00",
        "local time (HH:MM) the scheduler's daily jobs start; bills run 30 minutes later",
        _hhmm,
    ),
    Setting(
        "DOXA_SCHEDULER_NOTICES_EVERY",
        "60",
        "seconds between the scheduler's deliveries of due notices",
        _positive_int,
    ),
    Setting(
        "DOXA_SCHEDULER_SKIP",
        "",
        "scheduler jobs to leave out, comma-separated (doxa scheduler --list names them)",
        lambda text: tuple(sorted({n.strip() for n in text.split(",") if n.strip()})),
    ),
    Setting(
        "DOXA_MODBUS_MODELS",
        None,
        "TOML file of extra Modbus meter models, e.g. the [generic] register map",
        Path,
    ),
)

_BY_KEY = {s.key: s for s in SETTINGS}


@dataclass(frozen=True)
class Settings:
    """The parsed settings; ``values`` is keyed by the short key (``mqtt_url``)."""

    values: Mapping[str, Any] = field(default_factory=dict)

    def __getattr__(self, key: str) -> Any:
        try:
            return self.values[key]
        except KeyError:
            raise AttributeError(key) from None

    def replace(self, **changes: Any) -> Settings:
        """A copy with some values replaced (the CLI's flags and the demo use this)."""
        unknown = set(changes) - set(_BY_KEY)
        if unknown:
            raise SettingsError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        return Settings({**self.values, **changes})


def _read_config_file(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise SettingsError(f"DOXA_CONFIG: cannot read {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"DOXA_CONFIG: {path} is not valid TOML: {exc}") from exc
    out: dict[str, Any] = {}
    for raw_key, value in data.items():
        key = raw_key.removeprefix("DOXA_").lower() if raw_key.isupper() else raw_key
        if key not in _BY_KEY:
            raise SettingsError(f"DOXA_CONFIG: {path}: unknown setting {raw_key!r}")
        out[key] = (
            ",".join(f"{k}={v}" for k, v in value.items()) if isinstance(value, dict) else value
        )
    return out


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read every setting from ``environ`` (default ``os.environ``) and the optional TOML file."""
    env = os.environ if environ is None else environ
    from_file = _read_config_file(env["DOXA_CONFIG"]) if env.get("DOXA_CONFIG") else {}
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        raw = env.get(setting.env)
        if raw is None or raw == "":
            raw = from_file.get(setting.key, setting.default)
        if raw is None:
            values[setting.key] = None
            continue
        try:
            values[setting.key] = setting.parse(str(raw))
        except ValueError as exc:
            raise SettingsError(f"{setting.env}: {exc}") from exc
    return Settings(values)
