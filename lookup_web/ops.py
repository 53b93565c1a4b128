"""The engineers' page ``/ops``: collector health, read from what the collectors write.

- **Collectors**: status from the age of the last heartbeat (``collectors.last_seen``): ``ok`` up
  to ``OPS_LATE_AFTER`` seconds, ``late`` up to ``OPS_DOWN_AFTER``, ``down`` beyond; over the last
  hour (sums of ``collector_heartbeats`` deltas) readings written and the poll success rate; the
  95th percentile of poll latency (``poll_outcomes`` with a latency); spool depth.
- **Gateways**: per ``host:port`` over the last hour, polls, success rate (``backoff`` rows are
  skipped polls and do not count), p95 latency, the last error.
- **Stale meters**: active meters without a reading for more than two intervals. A Modbus meter's
  interval is its collector's poll interval (the shortest of the collectors seen in the last day
  when it is polled by every collector, else ``OPS_POLL_INTERVAL``); an MQTT meter's is
  ``OPS_MQTT_INTERVAL``. A meter never read counts from when it was added.
- **Rejected messages**: the newest rejected MQTT/Modbus messages with their reasons.
- **Customers' notices**: the outbox per kind of notice (``care.outbox.summary``): waiting,
  being sent, sent, dead (with the latest error), expired; the oldest still waiting.
- **Scheduled jobs** (``doxa scheduler``, ``operations``): each job's latest run and the newest
  runs (``job_runs``): the instant it ran for, start, end, outcome, counts, error.
- **Read completeness** per province for yesterday (local day): meters with at least one reading
  in every interval of the day ÷ all active meters. Read from the daily rollup
  (``province_days``, written by ``schema.rollup``) once that day is rolled up; until then it
  scans a day of readings, so it is kept for ``OPS_COMPLETENESS_TTL`` seconds per process (a
  ``cachetools`` TTL cache: concurrent requests that miss it wait for the one computing it).
- The stale-meter count and list are index range scans over the stale meters only, per cadence
  (migration 1310), the list stopping at ``OPS_LIST_LIMIT``: the page's cost is flat in the
  fleet's size (``bench/scale.py --ops-only`` measures it up to 1,000,000 meters).

"Now" is the site's clock (``lookup_web.clock``: the app's ``CLOCK`` when set), passed to every
query, never the database's ``now()``; so tests move time instead of waiting for it.

The page reloads itself every ``OPS_REFRESH`` seconds; ``/api/v1`` serves the same data as JSON.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import cachetools
import psycopg
from flask import Blueprint, Flask, current_app, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_login import current_user

from care import outbox
from lookup_web import auth, clock, db
from metering.expected import MQTT_INTERVAL_S, POLL_INTERVAL_S
from schema import audit
from schema.rollup import INTERVAL_JOINS, INTERVAL_SQL
from vee import store as vee_store

bp = Blueprint("ops", __name__, url_prefix="/ops")

DEFAULTS: dict[str, Any] = {
    "OPS_LATE_AFTER": 15.0,  # seconds without a heartbeat (collectors beat every 5 s)
    "OPS_DOWN_AFTER": 60.0,
    "OPS_REFRESH": 30,
    "OPS_POLL_INTERVAL": POLL_INTERVAL_S,  # doxa web passes DOXA_POLL_INTERVAL
    "OPS_MQTT_INTERVAL": MQTT_INTERVAL_S,  # doxa web passes DOXA_MQTT_INTERVAL
    "OPS_COMPLETENESS_TTL": 600.0,
    "OPS_LIST_LIMIT": 100,
}


def setting(key: str) -> Any:
    return current_app.config.get(key, DEFAULTS[key])


@dataclass(frozen=True)
class Thresholds:
    late_after: float
    down_after: float
    poll_interval: float
    mqtt_interval: float

    @classmethod
    def from_config(cls) -> Thresholds:
        return cls(
            float(setting("OPS_LATE_AFTER")),
            float(setting("OPS_DOWN_AFTER")),
            float(setting("OPS_POLL_INTERVAL")),
            float(setting("OPS_MQTT_INTERVAL")),
        )

    def status(self, age_s: float) -> str:
        if age_s <= self.late_after:
            return "ok"
        return "late" if age_s <= self.down_after else "down"


@dataclass(frozen=True)
class CollectorHealth:
    id: str
    host: str
    version: str
    pid: int | None
    started_at: datetime
    last_seen: datetime
    heartbeat_age_s: float
    status: str
    poll_interval_s: float | None
    spool_depth: int
    readings_written_1h: int
    mqtt_received_1h: int
    mqtt_rejected_1h: int
    polls_ok_1h: int
    polls_failed_1h: int
    poll_success_rate_1h: float | None
    poll_latency_p95_ms_1h: float | None


@dataclass(frozen=True)
class GatewayHealth:
    gateway: str
    polls_1h: int
    polls_ok_1h: int
    skipped_1h: int
    success_rate_1h: float | None
    latency_p95_ms_1h: float | None
    last_poll_at: datetime | None
    last_error: str | None


@dataclass(frozen=True)
class StaleMeter:
    serial: str
    customer_code: str
    province: str
    protocol: str
    gateway: str | None
    collector_id: str | None
    interval_s: float
    last_reading_ts: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    consecutive_failures: int


@dataclass(frozen=True)
class RejectedMessage:
    received_at: datetime
    collector_id: str | None
    source: str
    topic: str | None
    meter_serial: str | None
    reason: str
    payload_preview: str


@dataclass(frozen=True)
class Completeness:
    province: str
    meters: int
    complete: int

    @property
    def ratio(self) -> float | None:
        return self.complete / self.meters if self.meters else None


def as_json(item: Any) -> dict[str, Any]:
    """A health record as JSON-ready values (times ISO 8601)."""
    out = asdict(item)
    for key, value in out.items():
        if isinstance(value, datetime | date):
            out[key] = value.isoformat()
    if isinstance(item, Completeness):
        out["ratio"] = item.ratio
    return out


# -- queries -----------------------------------------------------------------------------------


def _rate(ok: int, total: int) -> float | None:
    return ok / total if total else None


def collectors(
    conn: psycopg.Connection, thresholds: Thresholds, now: datetime
) -> list[CollectorHealth]:
    rows = conn.execute(
        """
        WITH beats AS (
            SELECT collector_id, sum(readings_written) AS written, sum(mqtt_received) AS received,
                   sum(mqtt_rejected) AS rejected, sum(polls_ok) AS ok,
                   sum(polls_failed) AS failed
            FROM collector_heartbeats
            WHERE ts > %(now)s::timestamptz - interval '1 hour'
            GROUP BY collector_id
        ), latency AS (
            SELECT collector_id,
                   percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) AS p95
            FROM poll_outcomes
            WHERE ts > %(now)s::timestamptz - interval '1 hour' AND latency_ms IS NOT NULL
            GROUP BY collector_id
        )
        SELECT c.id, c.host, c.version, c.pid, c.started_at, c.last_seen,
               greatest(extract(epoch FROM %(now)s::timestamptz - c.last_seen), 0)::float8,
               c.poll_interval,
               c.spool_depth, coalesce(b.written, 0), coalesce(b.received, 0),
               coalesce(b.rejected, 0), coalesce(b.ok, 0), coalesce(b.failed, 0), l.p95
        FROM collectors c
        LEFT JOIN beats b ON b.collector_id = c.id
        LEFT JOIN latency l ON l.collector_id = c.id
        ORDER BY c.id""",
        {"now": now},
    ).fetchall()
    out = []
    for r in rows:
        ok, failed = int(r[12]), int(r[13])
        out.append(
            CollectorHealth(
                id=r[0],
                host=r[1],
                version=r[2],
                pid=r[3],
                started_at=r[4],
                last_seen=r[5],
                heartbeat_age_s=round(r[6], 1),
                status=thresholds.status(r[6]),
                poll_interval_s=r[7],
                spool_depth=int(r[8]),
                readings_written_1h=int(r[9]),
                mqtt_received_1h=int(r[10]),
                mqtt_rejected_1h=int(r[11]),
                polls_ok_1h=ok,
                polls_failed_1h=failed,
                poll_success_rate_1h=_rate(ok, ok + failed),
                poll_latency_p95_ms_1h=r[14],
            )
        )
    return out


def gateways(conn: psycopg.Connection, now: datetime) -> list[GatewayHealth]:
    rows = conn.execute(
        """
        SELECT gateway,
               count(*) FILTER (WHERE outcome <> 'backoff'),
               count(*) FILTER (WHERE outcome = 'ok'),
               count(*) FILTER (WHERE outcome = 'backoff'),
               percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms)
                   FILTER (WHERE latency_ms IS NOT NULL),
               max(ts),
               (array_agg(outcome || coalesce(': ' || detail, '') ORDER BY ts DESC)
                   FILTER (WHERE outcome NOT IN ('ok', 'backoff')))[1]
        FROM poll_outcomes
        WHERE ts > %(now)s::timestamptz - interval '1 hour'
        GROUP BY gateway
        ORDER BY gateway""",
        {"now": now},
    ).fetchall()
    return [
        GatewayHealth(r[0], int(r[1]), int(r[2]), int(r[3]), _rate(r[2], r[1]), r[4], r[5], r[6])
        for r in rows
    ]


# A meter's expected interval between readings, in seconds: one definition, schema.rollup's.
_INTERVAL_SQL = INTERVAL_SQL
_INTERVAL_JOINS = INTERVAL_JOINS

_STALE_COLUMNS = """m.serial, c.code, c.province, m.protocol,
       CASE WHEN m.protocol = 'modbus' THEN m.host || ':' || m.port END,
       m.collector_id, {interval}, s.last_reading_ts, s.last_error, s.last_error_at,
       coalesce(s.consecutive_failures, 0)"""

STALE_AFTER_INTERVALS = 2  # a meter is stale after this many of its intervals without a reading

# The cadences present among active meters (migration 1310: the key that decides a meter's
# interval), each found by one descent of its index (a loose index scan), then per cadence its
# cut-off instant from the current settings, by schema.rollup's interval rule applied to a meter
# of that cadence, and the stale meters counted as two index ranges: read ones heard before the
# cut-off, never-read ones added before it.
_STALE_COUNT = f"""
WITH RECURSIVE read_keys(k) AS (
    SELECT min(cadence) FROM meter_status WHERE active AND last_reading_ts IS NOT NULL
  UNION ALL
    SELECT (SELECT min(cadence) FROM meter_status
             WHERE active AND last_reading_ts IS NOT NULL AND cadence > r.k)
      FROM read_keys r WHERE r.k IS NOT NULL
), unread_keys(k) AS (
    SELECT min(meter_cadence(protocol, collector_id)) FROM meters WHERE active AND NOT ever_read
  UNION ALL
    SELECT (SELECT min(meter_cadence(protocol, collector_id)) FROM meters
             WHERE active AND NOT ever_read AND meter_cadence(protocol, collector_id) > u.k)
      FROM unread_keys u WHERE u.k IS NOT NULL
), keys(k) AS (
    SELECT k FROM read_keys WHERE k IS NOT NULL UNION SELECT k FROM unread_keys WHERE k IS NOT NULL
), cut AS (
    SELECT key.k, %(now)s::timestamptz
                  - %(factor)s * ({INTERVAL_SQL}) * interval '1 second' AS before
      FROM keys key
     CROSS JOIN LATERAL (SELECT split_part(key.k, ':', 1) AS protocol,
                                nullif(substr(key.k, length(split_part(key.k, ':', 1)) + 2), '')
                                    AS collector_id) m
     {INTERVAL_JOINS}
)
SELECT cut.k, cut.before,
       (SELECT count(*) FROM meters m
         WHERE m.active AND NOT m.ever_read AND meter_cadence(m.protocol, m.collector_id) = cut.k
           AND m.created_at < cut.before),
       (SELECT count(*) FROM meter_status s
         WHERE s.active AND s.last_reading_ts IS NOT NULL AND s.cadence = cut.k
           AND s.last_reading_ts < cut.before)
  FROM cut"""

# The ``limit`` stalest of each kind: per cadence the first ``limit`` of its index range, merged.
_STALE_NEVER = """
SELECT u.id FROM unnest(%(keys)s::text[], %(befores)s::timestamptz[]) AS cut(k, before)
 CROSS JOIN LATERAL (
       SELECT m.id, m.created_at FROM meters m
        WHERE m.active AND NOT m.ever_read AND meter_cadence(m.protocol, m.collector_id) = cut.k
          AND m.created_at < cut.before
        ORDER BY m.created_at, m.id LIMIT %(limit)s) u
 ORDER BY u.created_at, u.id LIMIT %(limit)s"""
_STALE_READ = """
SELECT r.meter_id FROM unnest(%(keys)s::text[], %(befores)s::timestamptz[]) AS cut(k, before)
 CROSS JOIN LATERAL (
       SELECT s.meter_id, s.last_reading_ts FROM meter_status s
        WHERE s.active AND s.last_reading_ts IS NOT NULL AND s.cadence = cut.k
          AND s.last_reading_ts < cut.before
        ORDER BY s.last_reading_ts, s.meter_id LIMIT %(limit)s) r
 ORDER BY r.last_reading_ts, r.meter_id LIMIT %(limit)s"""


def stale_meters(
    conn: psycopg.Connection, thresholds: Thresholds, limit: int, now: datetime
) -> tuple[int, list[StaleMeter]]:
    """How many active meters are stale, and the ``limit`` stalest: the never-read ones first
    (oldest added first), then the read ones by last reading, oldest first.

    Flat in the fleet's size: the cut-offs come from the settings and ``collectors`` at each
    request (a settings change applies at once), and each count and list is an index range per
    cadence over the stale meters only (migration 1310), never a pass over every meter."""
    params: dict[str, Any] = {
        "mqtt": thresholds.mqtt_interval,
        "poll": thresholds.poll_interval,
        "factor": STALE_AFTER_INTERVALS,
        "limit": limit,
        "now": now,
    }
    with conn.transaction():
        # The planner cannot know the ranges are short (a few stale meters per cadence): its
        # estimate passes jit_above_cost at 1,000,000 meters, and compiling took ~0.9 s of a
        # query that runs in milliseconds (measured: bench/scale.py --ops-only).
        conn.execute("SET LOCAL jit = off")
        cuts = conn.execute(_STALE_COUNT, params).fetchall()
    total = sum(int(never) + int(read) for _, _, never, read in cuts)
    if not total or limit <= 0:
        return total, []
    params["keys"] = [k for k, *_ in cuts]
    params["befores"] = [before for _, before, *_ in cuts]
    ids = [r[0] for r in conn.execute(_STALE_NEVER, params).fetchall()]
    if len(ids) < limit:
        read = conn.execute(_STALE_READ, {**params, "limit": limit - len(ids)}).fetchall()
        ids += [r[0] for r in read]
    columns = _STALE_COLUMNS.format(interval=_INTERVAL_SQL)
    rows = conn.execute(
        f"""
        SELECT m.id, {columns}
        FROM meters m JOIN customers c ON c.id = m.customer_id
        LEFT JOIN meter_status s ON s.meter_id = m.id
        {_INTERVAL_JOINS}
        WHERE m.id = ANY(%(ids)s)""",
        {**params, "ids": ids},
    ).fetchall()
    by_id = {r[0]: StaleMeter(*r[1:]) for r in rows}
    return total, [by_id[i] for i in ids if i in by_id]


def rejected_messages(conn: psycopg.Connection, limit: int) -> list[RejectedMessage]:
    """The newest ``limit`` rejections, their text cut (topic 120, reason 300 and payload 160
    characters) so the page stays small whatever was sent (issue 20)."""
    rows = conn.execute(
        """
        SELECT received_at, collector_id, source, left(topic, 120), left(meter_serial, 64),
               left(reason, 300), coalesce(encode(substring(payload FROM 1 FOR 160), 'escape'), '')
        FROM rejected_messages
        ORDER BY received_at DESC, id DESC
        LIMIT %s""",
        (limit,),
    ).fetchall()
    return [RejectedMessage(*r) for r in rows]


def count_rejected(conn: psycopg.Connection, now: datetime, since: str = "1 hour") -> int:
    row = conn.execute(
        "SELECT count(*) FROM rejected_messages WHERE received_at > %s::timestamptz - %s::interval",
        (now, since),
    ).fetchone()
    return int(row[0]) if row else 0


def completeness(
    conn: psycopg.Connection, day: date, tz: str, thresholds: Thresholds
) -> list[Completeness]:
    """Per province: the active meters in service on local ``day`` (added before it ended, or
    with readings of it, as a meter whose history was back-filled on import), and those with a
    reading in every interval of it."""
    start = datetime.combine(day, datetime.min.time(), ZoneInfo(tz))
    end = datetime.combine(day + timedelta(days=1), datetime.min.time(), ZoneInfo(tz))
    params = {
        "start": start,
        "end": end,
        "mqtt": thresholds.mqtt_interval,
        "poll": thresholds.poll_interval,
        "now": end,  # the collectors seen in the day before it ended
    }
    rows = conn.execute(
        f"""
        WITH expected AS (
            SELECT m.id, c.province, {_INTERVAL_SQL} AS interval_s
            FROM meters m
            JOIN customers c ON c.id = m.customer_id
            {_INTERVAL_JOINS}
            -- in service that day: added before it ended, or back-filled with readings of it
            WHERE m.active AND (m.created_at < %(end)s OR EXISTS (
                SELECT 1 FROM readings r
                WHERE r.meter_id = m.id AND r.ts >= %(start)s AND r.ts < %(end)s))
        ), filled AS (
            SELECT e.province, e.interval_s,
                   (SELECT count(DISTINCT floor(extract(epoch FROM r.ts - %(start)s::timestamptz)
                                                / e.interval_s))
                    FROM readings r
                    WHERE r.meter_id = e.id AND r.ts >= %(start)s AND r.ts < %(end)s) AS buckets
            FROM expected e
        )
        SELECT province, count(*),
               count(*) FILTER (WHERE buckets >= ceil(
                   extract(epoch FROM %(end)s::timestamptz - %(start)s::timestamptz) / interval_s))
        FROM filled
        GROUP BY province
        ORDER BY province""",
        params,
    ).fetchall()
    return [Completeness(r[0], int(r[1]), int(r[2])) for r in rows]


_setup_lock = threading.Lock()


def _completeness_cache(app: Flask) -> Callable[..., list[Completeness]]:
    """The app's cached :func:`completeness`: one entry per (day, zone, thresholds), kept
    ``OPS_COMPLETENESS_TTL`` seconds of the site's clock; a miss is computed once while the
    other requests for it wait (cachetools' ``condition``)."""
    with _setup_lock:
        cached: Callable[..., list[Completeness]] | None = app.extensions.get(
            "doxa_ops_completeness"
        )
        if cached is None:
            cache: cachetools.TTLCache[Any, list[Completeness]] = cachetools.TTLCache(
                maxsize=4,
                ttl=float(app.config.get("OPS_COMPLETENESS_TTL", DEFAULTS["OPS_COMPLETENESS_TTL"])),
                timer=lambda: _timer(app),
            )
            cached = cachetools.cached(
                cache,
                key=lambda conn, day, tz, thresholds: (day, tz, thresholds),
                condition=threading.Condition(),
            )(completeness)
            app.extensions["doxa_ops_completeness"] = cached
        return cached


def _timer(app: Flask) -> float:
    with app.app_context():
        return clock.now().timestamp()


def cached_completeness(
    conn: psycopg.Connection, tz: str, now: datetime | None = None
) -> tuple[date, list[Completeness]]:
    """Yesterday's completeness: the daily rollup's (``province_days``, one row per province)
    once it has rolled that day up, else computed here at most every ``OPS_COMPLETENESS_TTL``
    seconds."""
    now = now if now is not None else clock.now()
    yesterday = now.astimezone(ZoneInfo(tz)).date() - timedelta(days=1)
    rolled = conn.execute(
        "SELECT province, meters, complete FROM province_days WHERE day = %s ORDER BY province",
        (yesterday,),
    ).fetchall()
    if rolled:
        return yesterday, [Completeness(r[0], int(r[1]), int(r[2])) for r in rolled]
    compute = _completeness_cache(current_app._get_current_object())  # type: ignore[attr-defined]
    return yesterday, compute(conn, yesterday, tz, Thresholds.from_config())


@dataclass(frozen=True)
class JobRun:
    job: str
    scheduled_for: datetime
    started_at: datetime
    ended_at: datetime | None
    outcome: str
    counts: dict[str, int]
    error: str | None
    host: str | None


def job_runs(conn: psycopg.Connection, limit: int) -> tuple[list[JobRun], list[JobRun]]:
    """Each job's latest run, and the ``limit`` newest runs of all jobs."""
    columns = "job, scheduled_for, started_at, ended_at, outcome, counts, error, host"
    latest = conn.execute(
        f"SELECT DISTINCT ON (job) {columns} FROM job_runs ORDER BY job, started_at DESC, id DESC"
    ).fetchall()
    newest = conn.execute(
        f"SELECT {columns} FROM job_runs ORDER BY started_at DESC, id DESC LIMIT %s", (limit,)
    ).fetchall()
    return [JobRun(*r) for r in latest], [JobRun(*r) for r in newest]


# -- the page ----------------------------------------------------------------------------------


@bp.get("")
@auth.requires("view_ops")
def dashboard() -> Any:
    thresholds = Thresholds.from_config()
    limit = int(setting("OPS_LIST_LIMIT"))
    tz = str(current_app.config["TIMEZONE"])
    now = clock.now()
    with db.connection() as conn:
        collector_list = collectors(conn, thresholds, now)
        gateway_list = gateways(conn, now)
        stale_count, stale = stale_meters(conn, thresholds, limit, now)
        rejected = rejected_messages(conn, min(limit, 50))
        rejected_1h = count_rejected(conn, now)
        day, complete = cached_completeness(conn, tz, now)
        notices = outbox.summary(conn)  # customers' notices per kind (care/outbox.py)
        exceptions = vee_store.open_counts_by_province(conn)  # validation (vee/store.py)
        jobs_latest, jobs_newest = job_runs(conn, min(limit, 30))
    return render_template(
        "ops/dashboard.html",
        collectors=collector_list,
        gateways=gateway_list,
        stale=stale,
        stale_count=stale_count,
        rejected=rejected,
        rejected_1h=rejected_1h,
        completeness=complete,
        completeness_day=day,
        notices=notices,
        exceptions=exceptions,
        jobs_latest=jobs_latest,
        jobs_newest=jobs_newest,
        thresholds=thresholds,
        refresh=int(setting("OPS_REFRESH")),
        now=now,
    )


@bp.post("/collectors/<collector_id>/forget")
@auth.requires("ops_admin")
def forget_collector(collector_id: str) -> Any:
    """Remove a decommissioned collector from the page (its history stays); it comes back by
    itself with its next heartbeat if it is in fact still running."""
    with db.connection() as conn, conn.transaction():
        cur = conn.execute("DELETE FROM collectors WHERE id = %s", (collector_id,))
        if cur.rowcount:
            audit.record(conn, current_user.username, "collector.forget", {"id": collector_id})
    if not cur.rowcount:
        return render_template("error.html", code=404, message=_("No such collector.")), 404
    return redirect(url_for("ops.dashboard"))
