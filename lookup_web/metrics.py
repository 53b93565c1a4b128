"""Fleet health for Prometheus: what ``/ops`` shows, as gauges (``GET /api/v1/metrics``).

The collector's own ``/metrics`` (``collector/metrics.py``) tells how one collector is doing;
these tell how the fleet is, from the database every collector writes to, with the same queries
as the engineers' page (``lookup_web.ops``), so the page and the alerts cannot disagree:

- ``doxa_meters_active``: active meters;
- ``doxa_meters_stale``: active meters without a reading for two intervals;
- ``doxa_gateway_polls_last_hour{gateway}``: Modbus polls (skipped ones not counted);
- ``doxa_gateway_success_ratio{gateway}``: share of them that answered, last hour;
- ``doxa_collector_heartbeat_age_seconds{collector}``: since the collector's last heartbeat;
- ``doxa_outbox_notices{kind,state}``: customers' notices per state (``dead``: dead letters);
- ``doxa_job_last_success_timestamp_seconds{job_name}``: end of the job's last ``ok`` run;
- ``doxa_job_last_run_failed{job_name}``: 1 when the job's latest run failed or was interrupted.

``deploy/prometheus/doxa-alerts.yml`` alerts on them; names are checked against this module by
``tests/test_operations_alerts.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import psycopg
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from care import outbox
from lookup_web import ops

NOTICE_STATES = ("pending", "sending", "sent", "dead", "expired")


class _Fleet(Collector):
    def __init__(self, conn: psycopg.Connection, thresholds: ops.Thresholds, now: datetime) -> None:
        self.conn, self.thresholds, self.now = conn, thresholds, now

    def collect(self) -> Iterator[GaugeMetricFamily]:
        conn, now = self.conn, self.now
        row = conn.execute("SELECT count(*) FROM meters WHERE active").fetchone()
        yield GaugeMetricFamily("doxa_meters_active", "Active meters", value=row[0] if row else 0)
        stale, _ = ops.stale_meters(conn, self.thresholds, 1, now)
        yield GaugeMetricFamily(
            "doxa_meters_stale", "Active meters without a reading for two intervals", value=stale
        )
        polls = GaugeMetricFamily(
            "doxa_gateway_polls_last_hour",
            "Modbus polls of a gateway, last hour",
            labels=["gateway"],
        )
        ratio = GaugeMetricFamily(
            "doxa_gateway_success_ratio",
            "Share of a gateway's polls that answered, last hour",
            labels=["gateway"],
        )
        for gw in ops.gateways(conn, now):
            polls.add_metric([gw.gateway], gw.polls_1h)
            if gw.success_rate_1h is not None:
                ratio.add_metric([gw.gateway], gw.success_rate_1h)
        yield polls
        yield ratio
        age = GaugeMetricFamily(
            "doxa_collector_heartbeat_age_seconds",
            "Seconds since the collector's last heartbeat",
            labels=["collector"],
        )
        for c in ops.collectors(conn, self.thresholds, now):
            age.add_metric([c.id], c.heartbeat_age_s)
        yield age
        notices = GaugeMetricFamily(
            "doxa_outbox_notices", "Customers' notices by kind and state", labels=["kind", "state"]
        )
        for kind in outbox.summary(conn):
            for state in NOTICE_STATES:
                notices.add_metric([kind.kind, state], getattr(kind, state))
        yield notices
        success = GaugeMetricFamily(
            "doxa_job_last_success_timestamp_seconds",
            "End of the scheduler job's last successful run (Unix time)",
            labels=["job_name"],
        )
        failed = GaugeMetricFamily(
            "doxa_job_last_run_failed",
            "1 when the scheduler job's latest run failed or was interrupted",
            labels=["job_name"],
        )
        latest, _ = ops.job_runs(conn, 0)
        ok = conn.execute(
            "SELECT job, max(ended_at) FROM job_runs WHERE outcome = 'ok' GROUP BY job"
        ).fetchall()
        for job, ended in ok:
            success.add_metric([job], ended.timestamp())
        for run in latest:
            failed.add_metric([run.job], float(run.outcome in ("failed", "interrupted")))
        yield success
        yield failed


def exposition(conn: psycopg.Connection, thresholds: ops.Thresholds, now: datetime) -> bytes:
    """The fleet's gauges in Prometheus' text format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fleet(conn, thresholds, now))
    return generate_latest(registry)
