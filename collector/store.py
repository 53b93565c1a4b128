"""The collector's reads and health writes (everything but readings, which ``writer.py`` owns).

* the inventory: ``inventory_version`` (polled; bumped by every import) and the Modbus meters
  this collector polls — those naming it and those naming no collector (contract §6);
* the health tables the engineers' page reads: ``poll_outcomes``, ``meter_status`` (poll side),
  ``collectors`` (one row per collector, upserted) and ``collector_heartbeats`` (deltas);
* retention: old chunks of ``poll_outcomes`` and ``collector_heartbeats`` dropped with
  ``drop_chunks`` (the Apache build of TimescaleDB has no retention policies).

One connection, used from one thread; any ``psycopg.Error`` closes it (reopened on next use).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import psycopg
from psycopg.types.json import Jsonb

from collector.modbus import PollOutcome
from schema import audit

T = TypeVar("T")


@dataclass(frozen=True)
class ModbusMeter:
    meter_id: int
    serial: str
    model: str
    host: str
    port: int
    unit_id: int
    # Its gateway's options (contract §11b; the import keeps them equal per host:port).
    framing: str = "tcp"
    request_delay_ms: int = 0
    timeout_ms: int | None = None


@dataclass(frozen=True)
class Heartbeat:
    collector_id: str
    host: str
    version: str
    pid: int
    started_at: datetime
    poll_interval: float | None
    spool_depth: int
    counters: Mapping[str, int]
    deltas: Mapping[str, int]  # collector_heartbeats columns


_OUTCOME_COPY = (
    "COPY poll_outcomes (ts, collector_id, meter_id, gateway, outcome, exception_code,"
    " latency_ms, detail) FROM STDIN (FORMAT BINARY)"
)
_OUTCOME_TYPES = ["timestamptz", "text", "int4", "text", "text", "int2", "float4", "text"]
_STATUS = """
INSERT INTO meter_status AS ms (meter_id, last_ok_at, last_error, last_error_at,
                                consecutive_failures)
VALUES (%s, %s, %s, %s, %s)
ON CONFLICT (meter_id) DO UPDATE SET
    last_ok_at = GREATEST(ms.last_ok_at, EXCLUDED.last_ok_at),
    last_error = CASE WHEN EXCLUDED.last_error_at IS NOT NULL
                      AND (ms.last_error_at IS NULL OR EXCLUDED.last_error_at >= ms.last_error_at)
                      THEN EXCLUDED.last_error ELSE ms.last_error END,
    last_error_at = GREATEST(ms.last_error_at, EXCLUDED.last_error_at),
    consecutive_failures = EXCLUDED.consecutive_failures
"""
_COLLECTOR = """
INSERT INTO collectors (id, host, version, pid, started_at, last_seen, poll_interval, spool_depth,
                        counters)
VALUES (%s, %s, %s, %s, %s, now(), %s, %s, %s)
ON CONFLICT (id) DO UPDATE SET host = EXCLUDED.host, version = EXCLUDED.version,
    pid = EXCLUDED.pid, started_at = EXCLUDED.started_at, last_seen = EXCLUDED.last_seen,
    poll_interval = EXCLUDED.poll_interval, spool_depth = EXCLUDED.spool_depth,
    counters = EXCLUDED.counters
"""
_HEARTBEAT = """
INSERT INTO collector_heartbeats (ts, collector_id, readings_written, mqtt_received,
                                  mqtt_rejected, polls_ok, polls_failed, spool_depth)
VALUES (now(), %s, %s, %s, %s, %s, %s, %s)
"""


class Store:
    def __init__(self, conninfo: str, collector_id: str, connect_timeout: int = 5) -> None:
        self.conninfo = conninfo
        self.collector_id = collector_id
        self.connect_timeout = connect_timeout
        self._conn: psycopg.Connection | None = None

    def _run(self, fn: Callable[[psycopg.Connection], T]) -> T:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self.close()
            self._conn = psycopg.connect(
                self.conninfo,
                connect_timeout=self.connect_timeout,
                application_name=f"doxa-collector:{self.collector_id}:health",
                options="-c statement_timeout=30000",
            )
        try:
            with self._conn.transaction():
                return fn(self._conn)
        except psycopg.Error:
            self.close()
            raise

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None

    # -- inventory -----------------------------------------------------------------------------

    def inventory_version(self) -> int:
        def q(conn: psycopg.Connection) -> int:
            row = conn.execute("SELECT version FROM inventory_version").fetchone()
            return int(row[0]) if row else 0

        return self._run(q)

    def modbus_meters(self) -> list[ModbusMeter]:
        def q(conn: psycopg.Connection) -> list[ModbusMeter]:
            rows = conn.execute(
                "SELECT id, serial, model, host, port, unit_id, framing, request_delay_ms,"
                " timeout_ms FROM meters"
                " WHERE protocol = 'modbus' AND active"
                " AND (collector_id IS NULL OR collector_id = %s)"
                " ORDER BY host, port, unit_id",
                (self.collector_id,),
            ).fetchall()
            return [ModbusMeter(*row) for row in rows]

        return self._run(q)

    # -- health --------------------------------------------------------------------------------

    def write_outcomes(self, outcomes: Sequence[PollOutcome]) -> None:
        """Outcome rows, and meter_status moved to the newest outcome of each meter."""
        if not outcomes:
            return
        latest: dict[int, dict[str, Any]] = {}
        for o in outcomes:
            st = latest.setdefault(
                o.meter_id, {"ok": None, "error": None, "error_at": None, "failures": 0}
            )
            if o.outcome == "ok":
                st["ok"] = o.ts
            elif o.outcome != "backoff":
                st["error"], st["error_at"] = o.detail, o.ts
            st["failures"] = o.consecutive_failures
        cid = self.collector_id

        def q(conn: psycopg.Connection) -> None:
            with conn.cursor() as cur:
                with cur.copy(_OUTCOME_COPY) as copy:
                    copy.set_types(_OUTCOME_TYPES)
                    for o in outcomes:
                        copy.write_row(
                            (
                                o.ts,
                                cid,
                                o.meter_id,
                                o.gateway,
                                o.outcome,
                                o.exception_code,
                                o.latency_ms,
                                o.detail,
                            )
                        )
                # Meters that left the inventory meanwhile still exist (never deleted).
                cur.executemany(
                    _STATUS,
                    [
                        (mid, st["ok"], st["error"], st["error_at"], st["failures"])
                        for mid, st in sorted(latest.items())
                    ],
                )

        self._run(q)

    def heartbeat(self, beat: Heartbeat) -> None:
        def q(conn: psycopg.Connection) -> None:
            conn.execute(
                _COLLECTOR,
                (
                    beat.collector_id,
                    beat.host,
                    beat.version,
                    beat.pid,
                    beat.started_at,
                    beat.poll_interval,
                    beat.spool_depth,
                    Jsonb(dict(beat.counters)),
                ),
            )
            d = beat.deltas
            conn.execute(
                _HEARTBEAT,
                (
                    beat.collector_id,
                    d.get("readings_written", 0),
                    d.get("mqtt_received", 0),
                    d.get("mqtt_rejected", 0),
                    d.get("polls_ok", 0),
                    d.get("polls_failed", 0),
                    beat.spool_depth,
                ),
            )

        self._run(q)

    def drop_old_chunks(self, outcome_days: int, heartbeat_days: int) -> int:
        """Drop chunks wholly older than the retention; returns how many were dropped."""

        def q(conn: psycopg.Connection) -> int:
            dropped = 0
            for table, days in (
                ("poll_outcomes", outcome_days),
                ("collector_heartbeats", heartbeat_days),
            ):
                rows = conn.execute(
                    "SELECT drop_chunks(%s::regclass,"
                    " older_than => now() - make_interval(days => %s))",
                    (table, days),
                ).fetchall()
                dropped += len(rows)
            return dropped

        return self._run(q)

    def delete_old_rejections(self, days: int, now: datetime, batch: int = 10_000) -> int:
        """Delete rejected messages received more than ``days`` before ``now``, oldest first, in
        transactions of at most ``batch`` rows (several collectors may run it at once: each
        skips rows another one holds); returns how many were deleted."""

        def q(conn: psycopg.Connection) -> int:
            row = conn.execute(
                "WITH gone AS (DELETE FROM rejected_messages WHERE id IN ("
                " SELECT id FROM rejected_messages"
                " WHERE received_at < %s::timestamptz - make_interval(days => %s)"
                " ORDER BY received_at LIMIT %s FOR UPDATE SKIP LOCKED) RETURNING received_at)"
                " SELECT count(*), min(received_at), max(received_at) FROM gone",
                (now, days, batch),
            ).fetchone()
            count = int(row[0]) if row else 0
            if count:  # in the same transaction: no deletion without its trace
                audit.record(conn, f"collector:{self.collector_id}", "rejected.retention",
                             {"retention_days": days, "oldest": row[1].isoformat(),
                              "newest": row[2].isoformat()}, count)  # fmt: skip
            return count

        deleted = 0
        while True:
            count = self._run(q)
            deleted += count
            if count < batch:
                return deleted
