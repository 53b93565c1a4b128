"""The collector's whole configuration as one frozen value.

``doxa collect`` builds it from the settings and its flags; nothing under ``collector/`` reads the
environment. The tuning knobs below the required fields have defaults that suit a production
fleet; tests shorten the intervals.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

from collector.intake import IntakeLimits

DEFAULT_SUBSCRIPTIONS: tuple[tuple[str, str], ...] = (
    ("doxa/meters/+/reading", "native"),
    ("tele/+/SENSOR", "tasmota"),
)


@dataclass(frozen=True)
class CollectorConfig:
    """Everything a collector needs; see ``collector/README.md`` for what each knob does."""

    collector_id: str
    database_url: str
    spool_dir: Path
    mqtt_url: str | None = "mqtt://127.0.0.1:1883"  # None: no MQTT ingestion
    subscriptions: tuple[tuple[str, str], ...] = DEFAULT_SUBSCRIPTIONS
    share_group: str = ""
    poll_interval: float = 60.0
    spool_max_bytes: int = 512 * 1024 * 1024
    spool_segment_bytes: int = 16 * 1024 * 1024  # a new segment file is started past this
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("Asia/Ho_Chi_Minh"))
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"  # DOXA_METRICS_HOST: /metrics is unauthenticated
    version: str = "unknown"
    host: str = field(default_factory=socket.gethostname)
    polling: bool = True  # False: MQTT only (benchmarks, MQTT-only sites)
    # Writer: a batch is written when batch_size messages wait or the oldest is batch_interval
    # old; a writer that is busy meanwhile takes everything waiting, up to max_batch, so batches
    # grow with the load (group commit). A small batch_size keeps the time from receipt to
    # acknowledgement short, which is what bounds MQTT throughput: the broker sends at most its
    # in-flight window (Mosquitto max_inflight_messages) of unacknowledged messages.
    batch_size: int = 250
    max_batch: int = 5000
    batch_interval: float = 0.2
    # While the database is down, how often to try it again (batches go to the spool meanwhile).
    db_retry_interval: float = 2.0
    # Modbus readings waiting in memory beyond this (database and spool both refusing) are dropped.
    max_pending_readings: int = 200_000
    # The flusher gives up (the collector exits 1) when the same failure repeats this many times in
    # a row: the writer failing with anything but an outage, or the flusher itself failing.
    fatal_after: int = 20
    # paho's reconnect back-off: from this many seconds, doubling up to 30 s.
    mqtt_reconnect_min_delay: float = 1.0
    heartbeat_interval: float = 5.0
    inventory_interval: float = 5.0
    # Modbus: per-request timeout, retries of a request that timed out, concurrent gateways.
    modbus_timeout: float = 1.0
    modbus_retries: int = 1
    max_gateways_in_flight: int = 64
    # A meter failing this many polls in a row is skipped for 1, 2, 4… cycles, at most the max.
    backoff_after: int = 3
    backoff_max_cycles: int = 16
    # Retention of the health tables the collector writes (dropped chunk by chunk, hourly).
    outcome_retention_days: int = 7
    heartbeat_retention_days: int = 30
    retention_interval: float = 3600.0
    rejected_retention_days: int = 14  # rejected_messages rows older than this are deleted
    # What no meter can send (collector/intake.py): register, power and time bounds, and how many
    # rejections are stored per topic prefix and minute.
    limits: IntakeLimits = field(default_factory=IntakeLimits)
    # Graceful stop: how long an in-flight poll may take to finish.
    stop_grace: float = 5.0

    def __post_init__(self) -> None:
        if not self.collector_id:
            raise ValueError("collector id must not be empty")
        if self.poll_interval <= 0 or self.batch_interval <= 0 or self.batch_size <= 0:
            raise ValueError("poll interval, batch size and batch interval must be positive")
