"""What the collector counts: Prometheus metrics on ``--metrics-port`` and the plain counters its
heartbeat writes to the database (``collectors.counters`` and ``collector_heartbeats`` deltas).

Each collector has its own registry, so several collectors (or tests) in one process do not mix.
"""

from __future__ import annotations

import threading
from collections import Counter
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Gauge, Histogram, start_http_server
from prometheus_client import Counter as PromCounter

POLL_OUTCOMES = ("ok", "timeout", "exception", "decode_error", "transport_error", "backoff")
# The heartbeat's delta columns (collector_heartbeats) in the order of that table.
HEARTBEAT_FIELDS = (
    "readings_written",
    "mqtt_received",
    "mqtt_rejected",
    "polls_ok",
    "polls_failed",
)


class Stats:
    """Counters shared by the intake, the writer and the pollers (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.polls = PromCounter(
            "doxa_collector_polls", "Modbus polls of one meter, by outcome", ["outcome"], registry=r
        )
        self.poll_latency = Histogram(
            "doxa_collector_poll_latency_seconds",
            "Time to read one meter (all its requests), successful polls",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=r,
        )
        self.mqtt_messages = PromCounter(
            "doxa_collector_mqtt_messages",
            "MQTT messages by outcome (accepted, rejected)",
            ["outcome"],
            registry=r,
        )
        self.batch_write = Histogram(
            "doxa_collector_batch_write_seconds",
            "Time to write one batch to the database",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.readings_written = PromCounter(
            "doxa_collector_readings_written",
            "Readings inserted into the database (duplicates not counted)",
            registry=r,
        )
        self.duplicates = PromCounter(
            "doxa_collector_duplicate_readings",
            "Readings already stored (redelivery, replay)",
            registry=r,
        )
        self.dropped = PromCounter(
            "doxa_collector_readings_dropped",
            "Modbus readings dropped because neither the database nor the spool took them",
            registry=r,
        )
        self.spool_depth = Gauge(
            "doxa_collector_spool_depth", "Messages and polls waiting in the spool", registry=r
        )
        self.spool_bytes = Gauge("doxa_collector_spool_bytes", "Size of the spool", registry=r)
        self.spool_max_bytes = Gauge(
            "doxa_collector_spool_max_bytes",
            "Bound of the spool (DOXA_SPOOL_MAX_MB), for the 'spool filling' alert",
            registry=r,
        )
        self.spool_full = Gauge(
            "doxa_collector_spool_full", "1 while the spool is full (MQTT is not acked)", registry=r
        )
        self.mqtt_subscribed = Gauge(
            "doxa_collector_mqtt_subscribed",
            "1 while the MQTT subscriptions are in place (the broker queues for this collector)",
            registry=r,
        )
        # 0 until the start-up check (or a write) has reached the database: never a 1 by default.
        self.database_up = Gauge(
            "doxa_collector_database_up",
            "1 while the database answered the collector's last attempt (start-up check, write)",
            registry=r,
        )
        self.batches_requeued = PromCounter(
            "doxa_collector_batches_requeued",
            "Batches whose write failed other than by an outage and went back in line "
            "(the spool, or the head of the inbox)",
            registry=r,
        )
        self.spool_write_errors = PromCounter(
            "doxa_collector_spool_write_errors",
            "Spool writes the disk refused (no space, I/O error): handled as a full spool",
            registry=r,
        )
        for outcome in POLL_OUTCOMES:
            self.polls.labels(outcome)
        for outcome in ("accepted", "rejected"):
            self.mqtt_messages.labels(outcome)

    def add(self, **counts: int) -> None:
        with self._lock:
            self._counts.update(counts)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def serve(self, port: int, host: str) -> WSGIServer:
        """Start ``/metrics`` on host:port in a daemon thread; returns the server (``.server_port``,
        ``.shutdown()``)."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return server
