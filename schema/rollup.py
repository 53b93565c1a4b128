"""The daily rollup (contract §14): one ``meter_days`` row per meter and local day, and read
completeness per province and day (``province_days``), so the customer charts and ``/ops`` read a
day as one row instead of scanning its readings.

**The value is the rule's.** A day's ``use_kwh`` is :func:`metering.usage.daily` over the
meter's :class:`~metering.register.Register` as :func:`schema.register_inputs.registers` fetches
it, exactly what the customer page computed live (``tests/test_rollup.py`` holds the two equal on
meters with resets, replacements, glitches and gaps). SQL only describes the raw readings: first
and last reading, count, quality, and the expected intervals holding one (completeness).

**Incremental.** :func:`rollup_days` recomputes the given days for every meter (or some), in
blocks of :data:`BATCH` meter ids, and upserts; re-running is harmless. A day is ``final`` once a
known value after its end existed: :func:`rollup_job`, the scheduler's daily job, rolls up the
last :data:`LOOKBACK_DAYS` days and, meter by meter, every non-final day within
``SEARCH_WINDOW`` (a meter silent for a while, whose gap closes later). A reading that lands more
than :data:`LOOKBACK_DAYS` late inside a final day is seen once that day is rolled up again
(``doxa rollup --from D --to D``); the customer page computes live every day not final here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from metering.calendar import ONE_DAY, local_midnight
from metering.expected import MQTT_INTERVAL_S, POLL_INTERVAL_S
from metering.register import SEARCH_WINDOW
from metering.usage import daily
from schema.register_inputs import registers

BATCH = 1000  # meter ids per block: a few statements each
LOOKBACK_DAYS = 3  # the job re-rolls this many days before the one it runs on
MAX_DAYS = 400  # one call rolls up at most this many days (more: call again)

# A meter's expected interval between readings, in seconds: an MQTT meter's is the configured
# MQTT interval; a Modbus meter's its collector's poll interval (the shortest of the collectors
# seen in the last day when it is polled by every collector), else the configured poll interval.
# Used by the rollup's completeness and by /ops (lookup_web.ops): one definition.
INTERVAL_SQL = """
    CASE WHEN m.protocol = 'mqtt' THEN %(mqtt)s::float8
         ELSE coalesce(assigned.poll_interval, shared.poll_interval, %(poll)s::float8) END"""
INTERVAL_JOINS = """
    LEFT JOIN collectors assigned ON assigned.id = m.collector_id
    CROSS JOIN (SELECT min(poll_interval) AS poll_interval FROM collectors
                WHERE last_seen > %(now)s::timestamptz - interval '1 day') shared"""

_QUALITY = (
    "CASE WHEN bool_or(r.quality = 'edited') THEN 'edited'"
    " WHEN bool_or(r.quality = 'estimated') THEN 'estimated' ELSE 'actual' END"
)

_METERS = f"""
SELECT m.id, m.multiplier, {INTERVAL_SQL} AS interval_s
  FROM meters m {INTERVAL_JOINS}
 WHERE m.id >= %(lo)s AND m.id <= %(hi)s AND (%(only)s::int[] IS NULL OR m.id = ANY(%(only)s))
 ORDER BY m.id"""

_RAW = f"""
SELECT r.meter_id, d.day, min(r.ts), first(r.energy_import_kwh, r.ts), max(r.ts),
       last(r.energy_import_kwh, r.ts), count(*),
       count(DISTINCT floor(extract(epoch FROM r.ts - d.s) / i.interval_s)), {_QUALITY}
  FROM unnest(%(days)s::date[], %(starts)s::timestamptz[], %(ends)s::timestamptz[]) AS d(day, s, e)
  JOIN readings r ON r.ts >= d.s AND r.ts < d.e
  JOIN unnest(%(meter)s::int[], %(interval)s::float8[]) AS i(meter_id, interval_s)
    ON i.meter_id = r.meter_id
 WHERE r.meter_id >= %(lo)s AND r.meter_id <= %(hi)s AND r.ts >= %(low)s AND r.ts < %(high)s
 GROUP BY r.meter_id, d.day"""

_COLUMNS = (
    "meter_id, day, first_ts, first_kwh, last_ts, last_kwh, readings, buckets, interval_s,"
    " use_kwh, estimated, quality, final"
)

_UPSERT = f"""
INSERT INTO meter_days ({_COLUMNS})
SELECT {_COLUMNS} FROM meter_days_in
ON CONFLICT (meter_id, day) DO UPDATE SET
    first_ts = EXCLUDED.first_ts, first_kwh = EXCLUDED.first_kwh, last_ts = EXCLUDED.last_ts,
    last_kwh = EXCLUDED.last_kwh, readings = EXCLUDED.readings, buckets = EXCLUDED.buckets,
    interval_s = EXCLUDED.interval_s, use_kwh = EXCLUDED.use_kwh,
    estimated = EXCLUDED.estimated, quality = EXCLUDED.quality, final = EXCLUDED.final,
    computed_at = now()"""

_PROVINCES = """
WITH d AS (
    SELECT * FROM unnest(%(days)s::date[], %(starts)s::timestamptz[], %(ends)s::timestamptz[])
        AS d(day, s, e)
)
INSERT INTO province_days (day, province, meters, complete)
SELECT d.day, c.province, count(*),
       count(*) FILTER (WHERE md.buckets >= ceil(extract(epoch FROM d.e - d.s) / md.interval_s))
  FROM d JOIN meter_days md ON md.day = d.day
  JOIN meters m ON m.id = md.meter_id
  JOIN customers c ON c.id = m.customer_id
 -- in service that day: added before it ended, or back-filled with readings of it
 WHERE m.active AND (m.created_at < d.e OR md.readings > 0)
 GROUP BY d.day, c.province
ON CONFLICT (day, province) DO UPDATE SET
    meters = EXCLUDED.meters, complete = EXCLUDED.complete, computed_at = now()"""


@dataclass
class RollupCounts:
    """What one rollup did: days and meters covered, rows written, of which final."""

    days: int = 0
    meters: int = 0
    rows: int = 0
    final: int = 0

    def __str__(self) -> str:
        return (
            f"{self.rows} meter-days over {self.days} day(s) of {self.meters} meter(s),"
            f" {self.final} final"
        )


def _days(day_from: date, day_to: date) -> list[date]:
    count = (day_to - day_from).days + 1
    if count <= 0:
        return []
    if count > MAX_DAYS:
        raise ValueError(f"at most {MAX_DAYS} days at once, not {count}")
    return [day_from + timedelta(days=k) for k in range(count)]


def rollup_days(
    conn: psycopg.Connection[Any],
    day_from: date,
    day_to: date,
    *,
    zone: ZoneInfo,
    meters: Sequence[int] | None = None,
    batch: int = BATCH,
    mqtt_interval: float = MQTT_INTERVAL_S,
    poll_interval: float = POLL_INTERVAL_S,
) -> RollupCounts:
    """Roll up local days ``day_from``..``day_to`` (both included) of every meter (or of
    ``meters``), then their completeness per province. Each block of meter ids commits alone."""
    days = _days(day_from, day_to)
    counts = RollupCounts(days=len(days))
    if not days:
        return counts
    starts = [local_midnight(d, zone) for d in days]
    ends = [local_midnight(d + ONE_DAY, zone) for d in days]
    only = sorted(set(meters)) if meters is not None else None
    bounds = conn.execute(
        "SELECT min(id), max(id) FROM meters WHERE %(only)s::int[] IS NULL OR id = ANY(%(only)s)",
        {"only": only},
    ).fetchone()
    if bounds is None or bounds[0] is None:
        return counts
    params = {
        "mqtt": mqtt_interval,
        "poll": poll_interval,
        "now": ends[-1],
        "only": only,
        "days": days,
        "starts": starts,
        "ends": ends,
        "low": starts[0],
        "high": ends[-1],
    }
    first_block, last_block = bounds[0] // batch, bounds[1] // batch
    for block in range(first_block, last_block + 1):
        lo, hi = block * batch, block * batch + batch - 1
        with conn.transaction():
            _rollup_block(conn, {**params, "lo": lo, "hi": hi}, zone, counts)
    with conn.transaction():
        conn.execute("DELETE FROM province_days WHERE day = ANY(%s)", (days,))
        conn.execute(_PROVINCES, params)
    return counts


def _rollup_block(
    conn: psycopg.Connection[Any], params: dict[str, Any], zone: ZoneInfo, counts: RollupCounts
) -> None:
    meter_rows = conn.execute(_METERS, params).fetchall()
    if not meter_rows:
        return
    days: list[date] = params["days"]
    ends: list[datetime] = params["ends"]
    ids = [int(r[0]) for r in meter_rows]
    raw = {
        (row[0], row[1]): row[2:]
        for row in conn.execute(
            _RAW, {**params, "meter": ids, "interval": [float(r[2]) for r in meter_rows]}
        )
    }
    instants = [*params["starts"], ends[-1]]
    found = registers(conn, {m: instants for m in ids})
    out: list[tuple[Any, ...]] = []
    for meter_id, multiplier, interval_s in meter_rows:
        register = found[meter_id]
        uses = daily(register, days, zone, Decimal(multiplier), None)
        for day, end, use in zip(days, ends, uses, strict=True):
            first_ts, first_kwh, last_ts, last_kwh, n, buckets, quality = raw.get(
                (meter_id, day), (None, None, None, None, 0, 0, "actual")
            )
            final = register.support(end)[1] is not None
            out.append(
                (
                    meter_id,
                    day,
                    first_ts,
                    first_kwh,
                    last_ts,
                    last_kwh,
                    n,
                    buckets,
                    float(interval_s),
                    use.kwh,
                    use.estimated,
                    quality,
                    final,
                )
            )
            counts.final += final
    conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS meter_days_in"
        " (LIKE meter_days INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
    )
    with conn.cursor().copy(f"COPY meter_days_in ({_COLUMNS}) FROM STDIN") as copy:
        for row in out:
            copy.write_row(row)
    conn.execute(_UPSERT)
    counts.meters += len(ids)
    counts.rows += len(out)


def rollup_job(
    conn: psycopg.Connection[Any],
    scheduled_for: datetime,
    *,
    zone: ZoneInfo,
    lookback_days: int = LOOKBACK_DAYS,
    mqtt_interval: float = MQTT_INTERVAL_S,
    poll_interval: float = POLL_INTERVAL_S,
) -> RollupCounts:
    """The scheduler's daily rollup: the ``lookback_days`` local days before ``scheduled_for``
    for every meter, then each meter's days within ``SEARCH_WINDOW`` that were not final."""
    yesterday = scheduled_for.astimezone(zone).date() - ONE_DAY
    first = yesterday - timedelta(days=lookback_days - 1)
    kw: dict[str, Any] = {"zone": zone, "mqtt_interval": mqtt_interval}
    kw["poll_interval"] = poll_interval
    counts = rollup_days(conn, first, yesterday, **kw)
    pending = conn.execute(
        "SELECT meter_id, min(day) FROM meter_days WHERE NOT final AND day >= %s AND day < %s"
        " GROUP BY meter_id",
        (yesterday - timedelta(days=SEARCH_WINDOW.days), first),
    ).fetchall()
    by_start: dict[date, list[int]] = {}
    for meter_id, day in pending:
        by_start.setdefault(day, []).append(meter_id)
    for start, ids in sorted(by_start.items()):
        more = rollup_days(conn, start, first - ONE_DAY, meters=ids, **kw)
        counts.rows += more.rows
        counts.final += more.final
    return counts


@dataclass(frozen=True)
class DayUse:
    """A final rolled-up day as the customer page shows it."""

    day: date
    kwh: Decimal | None
    estimated: bool


def final_days(
    conn: psycopg.Connection[Any], meter_id: int, days: Sequence[date]
) -> dict[date, DayUse]:
    """The final rolled-up days of one meter among ``days`` (one indexed query)."""
    if not days:
        return {}
    rows = conn.execute(
        "SELECT day, use_kwh, estimated FROM meter_days"
        " WHERE meter_id = %s AND day >= %s AND day <= %s AND final",
        (meter_id, min(days), max(days)),
        prepare=True,
    ).fetchall()
    wanted = set(days)
    return {d: DayUse(d, kwh, bool(est)) for d, kwh, est in rows if d in wanted}
