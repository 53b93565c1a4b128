"""Scale benchmark (contract §14, issue 19): the cost per meter of each path at several fleet
sizes, and how it grows.

For each size N (10,000 and 100,000, plus any ``--scale N``, e.g. 1,000,000) a fresh
private TimescaleDB cluster gets: the inventory imported through ``doxa meters import``'s code
(``schema.inventory``), then ``--days`` days of readings loaded server-side with
``generate_series`` — one daily index for 95 % of the meters, 30-minute readings for 5 % (the
large customers) — and ``meter_status`` as the writer keeps it. Then, timed in-process (the
functions the commands and pages call, without process start-up):

* ``bills run`` of one whole period (every reading day), beside its **ceiling**: one bare
  set-based statement fetching the same boundary readings (the nearest reading on each side of
  both boundaries of every meter) in the same run — the ratio is the done-when "≤ 3×";
* ``bills run`` of one reading day (1/28 of the customers);
* the closing-index and bills exports (CSV into memory);
* the daily rollup of one day (``schema.rollup.rollup_days``);
* ``/ops``: the queries of its first load (collectors, gateways, stale meters, rejected, the
  completeness from the rollup, the notices' outbox) and of a load once cached;
* the customer page's queries (``customer_dashboard.build`` and the meter/customer look-up) over
  random customers, p50/p95, with the last 30 days rolled up (and, for comparison, without);
* the database size per meter-year: readings, and the daily rollup.

Each figure is printed as cost per meter (µs) at each size and the growth ratio largest ÷
smallest (the goal: ≤ 1.5×; flat paths such as ``/ops`` and the page are per request, so their
growth is the ratio of the request times). ``--quick``: sizes 1,000 and 10,000, 35 days.
Run ``python -m bench.scale [--quick] [--scale N ...] [--days D]`` (``make bench
BENCH_ARGS="--only scale --scale 1000000"``); it uses one connection at a time.
"""

from __future__ import annotations

import argparse
import io
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
FIRST_DAY = date(2026, 1, 1)
PERIOD = "2026-02"  # from reading day d of January to d of February: inside the data
PROVINCES = 21
PROFILE_SHARE = 20  # one meter in 20 (5 %) reads every 30 minutes


@dataclass
class SizeResult:
    meters: int
    days: int
    seconds: dict[str, float] = field(default_factory=dict)  # path → seconds for the fleet
    counted: dict[str, int] = field(default_factory=dict)  # path → meters it covered
    per_request_ms: dict[str, float] = field(default_factory=dict)  # flat paths
    bytes_per_meter_year: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@contextmanager
def cluster() -> Iterator[Any]:
    from doxa.services.postgres import EmbeddedPostgres

    root = Path(tempfile.mkdtemp(prefix="doxa-bench-scale-"))
    root.chmod(0o755)
    pg = EmbeddedPostgres(root / "pg", durable=False, database="doxa")
    try:
        pg.start()
        with psycopg.connect(pg.url("postgres"), autocommit=True) as conn:
            for setting, value in (
                ("shared_buffers", "1GB"),
                ("max_wal_size", "8GB"),
                ("work_mem", "64MB"),
                ("effective_cache_size", "8GB"),
            ):
                conn.execute(f"ALTER SYSTEM SET {setting} = '{value}'")
        pg.stop()
        pg.start()
        yield pg
    finally:
        pg.destroy()
        shutil.rmtree(root, ignore_errors=True)


def _timed(fn: Callable[[], Any], repeat: int = 1) -> tuple[float, Any]:
    """The best of ``repeat`` runs (the machine is shared: the minimum is the least disturbed)."""
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def inventory_csv(meters: int) -> str:
    lines = [
        "customer_code,customer_name,address,province,tariff_group,reading_day,meter_serial,"
        "protocol,model,host,port,unit_id,multiplier"
    ]
    for k in range(1, meters + 1):
        lines.append(
            f"PB0101{k:07d},Khách hàng {k},{k} Lê Lợi,Tỉnh {k % PROVINCES:02d},residential,"
            f"{1 + k % 28},SC-{k:07d},mqtt,,,,,1"
        )
    return "\n".join(lines) + "\n"


def load_readings(url: str, days: int) -> float:
    """Readings for every meter over ``days`` days from FIRST_DAY, in time order; returns s."""
    start = datetime.combine(FIRST_DAY, datetime.min.time(), tzinfo=TZ)
    t0 = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        for d in range(days):
            day0 = start + timedelta(days=d)
            # Households: one index a day, at a meter-dependent minute after 00:00.
            conn.execute(
                "INSERT INTO readings (meter_id, ts, energy_import_kwh, quality, source)"
                " SELECT m.id, %(t)s::timestamptz + (m.id %% 120) * interval '1 minute',"
                " 1000 + (m.id %% 500) + %(d)s * (3 + (m.id %% 9) * 0.5), 'actual', 'mqtt'"
                " FROM meters m WHERE m.id %% %(share)s <> 0",
                {"t": day0, "d": d, "share": PROFILE_SHARE},
            )
            # Large customers: every 30 minutes.
            conn.execute(
                "INSERT INTO readings (meter_id, ts, energy_import_kwh, quality, source)"
                " SELECT m.id, %(t)s::timestamptz + h * interval '30 minutes',"
                " 5000 + (m.id %% 500) + (%(d)s * 48 + h) * 2.5, 'actual', 'mqtt'"
                " FROM generate_series(0, 47) h, meters m WHERE m.id %% %(share)s = 0",
                {"t": day0, "d": d, "share": PROFILE_SHARE},
            )
        last = start + timedelta(days=days)
        conn.execute(
            "INSERT INTO meter_status (meter_id, last_reading_ts, last_ok_at)"
            " SELECT m.id, %s::timestamptz - (m.id %% 120) * interval '1 minute', NULL"
            " FROM meters m",
            (last,),
        )
        conn.execute(
            "INSERT INTO collectors (id, host, version, pid, started_at, last_seen, poll_interval)"
            " VALUES ('bench', 'bench', 'bench', 1, %s, %s, 10)",
            (last - timedelta(days=1), last),
        )
        conn.execute("ANALYZE")
    return time.perf_counter() - t0


def boundary_pairs(conn: psycopg.Connection, period: Any) -> list[tuple[int, datetime]]:
    from billing.run import meters_to_bill, period_bounds

    pairs = []
    for m in meters_to_bill(conn):
        start, end = period_bounds(period, m.reading_day, TZ)
        pairs += [(m.meter_id, start), (m.meter_id, end)]
    return pairs


# The ceiling: the nearest reading on each side of every boundary, one statement, nothing else.
_CEILING = """
SELECT b.meter_id, lo.ts, lo.energy_import_kwh, hi.ts, hi.energy_import_kwh
  FROM unnest(%(meter)s::int[], %(at)s::timestamptz[]) AS b(meter_id, at)
  LEFT JOIN LATERAL (SELECT ts, energy_import_kwh FROM readings
     WHERE meter_id = b.meter_id AND ts <= b.at AND ts > b.at - interval '1 day'
       AND ts >= %(low)s AND ts <= %(high)s ORDER BY ts DESC LIMIT 1) lo ON true
  LEFT JOIN LATERAL (SELECT ts, energy_import_kwh FROM readings
     WHERE meter_id = b.meter_id AND ts >= b.at AND ts < b.at + interval '1 day'
       AND ts >= %(low)s AND ts <= %(high)s ORDER BY ts LIMIT 1) hi ON true"""


def ceiling(url: str, pairs: list[tuple[int, datetime]]) -> float:
    instants = [at for _, at in pairs]
    with psycopg.connect(url) as conn:
        t0 = time.perf_counter()
        conn.execute(
            _CEILING,
            {
                "meter": [m for m, _ in pairs],
                "at": instants,
                "low": min(instants) - timedelta(days=1),
                "high": max(instants) + timedelta(days=1),
            },
        ).fetchall()
        return time.perf_counter() - t0


def ops_load(url: str, now: datetime, first: bool) -> dict[str, float]:
    """The queries of one /ops load (what ``ops.dashboard`` runs, auth aside), in the app's
    context: seconds per query and in all (``"total"``). ``first``: a new app and connection;
    else the same load once before, so plans, pages and the completeness cache are warm."""
    from care import outbox
    from lookup_web import create_app
    from lookup_web import ops as ops_page
    from vee import store as vee_store

    app = create_app({"DATABASE_URL": url, "CLOCK": lambda: now, "TESTING": True})
    try:
        with app.app_context(), psycopg.connect(url, autocommit=True) as conn:
            thresholds = ops_page.Thresholds.from_config()
            parts: list[tuple[str, Callable[[], Any]]] = [
                ("collectors", lambda: ops_page.collectors(conn, thresholds, now)),
                ("gateways", lambda: ops_page.gateways(conn, now)),
                ("stale meters", lambda: ops_page.stale_meters(conn, thresholds, 100, now)),
                ("rejected", lambda: ops_page.rejected_messages(conn, 50)),
                ("rejected 1 h", lambda: ops_page.count_rejected(conn, now)),
                ("completeness", lambda: ops_page.cached_completeness(conn, TZ.key, now)),
                ("notices", lambda: outbox.summary(conn)),
                ("exceptions", lambda: vee_store.open_counts_by_province(conn)),
                ("jobs", lambda: ops_page.job_runs(conn, 30)),
            ]

            def load() -> dict[str, float]:
                out = {}
                for name, fn in parts:
                    t0 = time.perf_counter()
                    fn()
                    out[name] = time.perf_counter() - t0
                out["total"] = sum(out.values())
                return out

            if not first:
                load()  # warm: plans cached, pages in memory
            return load()
    finally:
        from lookup_web import close

        close(app)


def best_ops_load(url: str, now: datetime, first: bool, repeat: int = 3) -> dict[str, float]:
    """The least disturbed of ``repeat`` loads (by total)."""
    return min((ops_load(url, now, first) for _ in range(repeat)), key=lambda d: d["total"])


def page_latencies(url: str, meters: int, now: datetime, samples: int) -> list[float]:
    from lookup_web import customer_queries as q
    from lookup_web.customer_dashboard import build

    rng = random.Random(7)
    out = []
    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(samples):
            k = rng.randint(1, meters)
            t0 = time.perf_counter()
            cid = q.find_customer_id(conn, f"PB0101{k:07d}", f"SC-{k:07d}")
            assert cid is not None
            customer, ms = q.customer_and_meters(conn, cid)
            assert customer is not None
            build(conn, customer, ms[0], now=now, zone=TZ, days=30)
            q.bills(conn, cid)
            out.append(time.perf_counter() - t0)
    return out


def _pct(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000


def measure(meters: int, days: int, samples: int) -> SizeResult:
    import exports
    from billing.periods import Period
    from billing.run import run_bills
    from schema.inventory import import_inventory, parse_inventory
    from schema.migrate import migrate
    from schema.rollup import rollup_days

    result = SizeResult(meters, days)
    period = Period.parse(PERIOD)
    now = datetime.combine(FIRST_DAY + timedelta(days=days - 1), datetime.min.time(), TZ)
    now += timedelta(hours=12)
    with cluster() as pg:
        url = pg.url()
        migrate(url)
        text = inventory_csv(meters)
        with psycopg.connect(url) as conn:
            rows = parse_inventory(text, tariff_groups={"residential"}, models=())
            result.seconds["meters import"], _ = _timed(
                lambda: import_inventory(conn, rows), repeat=2
            )  # the second is an update of every row, as a re-import is
        load_s = load_readings(url, days)
        with psycopg.connect(url, autocommit=True) as conn:
            n = conn.execute("SELECT count(*) FROM readings").fetchone()
            result.notes.append(f"{n[0] if n else 0:,} readings loaded in {load_s:.0f} s")
            pairs = boundary_pairs(conn, period)
        with psycopg.connect(url) as conn:
            result.seconds["bills run (period)"], report = _timed(
                lambda: run_bills(conn, period, TZ), repeat=2
            )
            result.notes.append(
                f"bills {PERIOD}: {report.written:,} computed, {len(report.skipped):,} skipped"
            )
            result.seconds["bills run (one reading day)"], day_report = _timed(
                lambda: run_bills(conn, period, TZ, reading_day=5), repeat=3
            )
            result.counted["bills run (one reading day)"] = day_report.written + len(
                day_report.skipped
            )
        result.seconds["ceiling: boundary readings, one statement"] = min(
            ceiling(url, pairs) for _ in range(3)
        )
        with psycopg.connect(url, autocommit=True) as conn:
            for kind, spec in (
                (
                    "closing-index export",
                    exports.closing_indices(PERIOD, TZ.key, exports.Selection()),
                ),
                ("bills export", exports.bills(PERIOD, exports.Selection())),
            ):
                sink = io.BytesIO()
                result.seconds[kind], _ = _timed(
                    lambda spec=spec, sink=sink: exports.write_export(conn, spec, "csv", sink),
                    repeat=2,
                )
            # The page before the rollup: every chart day computed live.
            live = page_latencies(url, meters, now, samples)
            last_day = now.date() - timedelta(days=1)
            result.seconds["rollup (one day)"], _ = _timed(
                lambda: rollup_days(conn, last_day, last_day, zone=TZ)
            )
            rollup_days(conn, last_day - timedelta(days=30), last_day - timedelta(days=1), zone=TZ)
            # A table filled at once has no statistics until autovacuum gets to it; a fleet's
            # rollup grows by a day at a time and keeps them.
            conn.execute("ANALYZE meter_days")
            size = conn.execute(
                "SELECT (SELECT total_bytes FROM hypertable_detailed_size('readings')),"
                " (SELECT total_bytes FROM hypertable_detailed_size('meter_days')),"
                " (SELECT count(*) FROM meter_days)"
            ).fetchone()
            assert size is not None
        rolled = page_latencies(url, meters, now, samples)
        result.per_request_ms["customer page p50 (30 days rolled up)"] = _pct(rolled, 50)
        result.per_request_ms["customer page p95 (30 days rolled up)"] = _pct(rolled, 95)
        result.per_request_ms["customer page p50 (no rollup)"] = _pct(live, 50)
        result.per_request_ms["/ops first load"] = best_ops_load(url, now, True)["total"] * 1000
        result.per_request_ms["/ops cached"] = best_ops_load(url, now, False)["total"] * 1000
        readings_bytes, rollup_bytes, rollup_rows = size
        meter_years = meters * days / 365
        result.bytes_per_meter_year["readings (95 % daily, 5 % 30-minute)"] = (
            readings_bytes / meter_years
        )
        result.bytes_per_meter_year["daily rollup"] = rollup_bytes / (int(rollup_rows) / 365)
    return result


# --ops-only: a fleet of meters and their status, without a year of readings.
OPS_STALE_EVERY = 1000  # one meter in 1,000 has not been heard from for a day
OPS_NEVER_EVERY = 2000  # one in 2,000 (offset) was never read


def load_ops_fleet(url: str, meters: int, now: datetime) -> float:
    """Customers, meters (95 % MQTT; 5 % Modbus: a third each on no collector, ``edge-1`` polling
    every 60 s, ``edge-2`` every 300 s) and ``meter_status`` as the writer leaves it (cadence and
    active flag included), generated server-side; plus an hour of heartbeats, some poll outcomes
    and rejections, and yesterday's completeness rolled up. Returns seconds."""
    t0 = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO customers (code, name, province, reading_day)"
            " SELECT 'PB0101' || lpad(k::text, 7, '0'), 'Khách hàng ' || k,"
            " 'Tỉnh ' || lpad((k %% %(provinces)s)::text, 2, '0'), 1 + k %% 28"
            " FROM generate_series(1, %(n)s) k",
            {"n": meters, "provinces": PROVINCES},
        )
        conn.execute(
            "INSERT INTO meters (serial, customer_id, protocol, model, host, port, unit_id,"
            " collector_id, created_at, ever_read)"
            " SELECT 'SC-' || lpad(k::text, 7, '0'), k,"
            " CASE WHEN k %% %(share)s = 0 THEN 'modbus' ELSE 'mqtt' END,"
            " CASE WHEN k %% %(share)s = 0 THEN 'sdm120' END,"
            " CASE WHEN k %% %(share)s = 0 THEN '10.' || (k / 65536) || '.' || (k / 256 %% 256)"
            "      || '.' || (k %% 256) END,"
            " CASE WHEN k %% %(share)s = 0 THEN 502 END, CASE WHEN k %% %(share)s = 0 THEN 1 END,"
            " CASE WHEN k %% %(share)s = 0 AND k %% 3 > 0 THEN 'edge-' || (k %% 3) END,"
            " %(now)s::timestamptz - interval '30 days', k %% %(never)s <> 7"
            " FROM generate_series(1, %(n)s) k",
            {"n": meters, "share": PROFILE_SHARE, "never": OPS_NEVER_EVERY, "now": now},
        )
        conn.execute(
            "INSERT INTO meter_status (meter_id, last_reading_ts, last_ok_at, cadence, active)"
            " SELECT m.id, t, t, meter_cadence(m.protocol, m.collector_id), m.active"
            " FROM meters m CROSS JOIN LATERAL (SELECT %(now)s::timestamptz - CASE"
            "   WHEN m.id %% %(stale)s = 3 THEN interval '1 day' + (m.id %% 3600) * interval '1 s'"
            "   ELSE (m.id %% 100) * interval '1 s' END AS t) x"
            " WHERE m.ever_read",
            {"now": now, "stale": OPS_STALE_EVERY},
        )
        for cid, poll in (("edge-1", 60), ("edge-2", 300)):
            conn.execute(
                "INSERT INTO collectors (id, host, version, pid, started_at, last_seen,"
                " poll_interval) VALUES (%s, %s, 'bench', 1, %s, %s, %s)",
                (cid, cid, now - timedelta(days=1), now - timedelta(seconds=2), poll),
            )
            conn.execute(
                "INSERT INTO collector_heartbeats (ts, collector_id, readings_written, polls_ok,"
                " polls_failed) SELECT %s::timestamptz - g * interval '5 s', %s, 100, 10, 1"
                " FROM generate_series(0, 719) g",
                (now, cid),
            )
            conn.execute(
                "INSERT INTO poll_outcomes (ts, collector_id, meter_id, gateway, outcome,"
                " latency_ms) SELECT %s::timestamptz - g * interval '1 s', %s, %s,"
                " '10.0.0.' || (g %% 50) || ':502', CASE WHEN g %% 97 = 0 THEN 'timeout'"
                " ELSE 'ok' END, 5 + g %% 40 FROM generate_series(0, 3599) g",
                (now, cid, PROFILE_SHARE),
            )
        conn.execute(
            "INSERT INTO rejected_messages (received_at, collector_id, source, topic, reason,"
            " payload) SELECT %s::timestamptz - g * interval '1 min', 'edge-1', 'mqtt',"
            " 'doxa/meters/X/reading', 'unknown meter X', '{}' FROM generate_series(1, 100) g",
            (now,),
        )
        yesterday = now.astimezone(TZ).date() - timedelta(days=1)
        conn.execute(
            "INSERT INTO province_days (day, province, meters, complete)"
            " SELECT %s, province, count(*), count(*) FROM customers GROUP BY province",
            (yesterday,),
        )
        conn.execute("VACUUM ANALYZE")
    return time.perf_counter() - t0


def measure_ops(meters: int) -> tuple[float, dict[str, float], dict[str, float], int]:
    """``/ops`` alone on a generated fleet: load seconds, first and cached loads, stale count."""
    from lookup_web import ops as ops_page
    from schema.migrate import migrate

    now = datetime(2026, 6, 15, 10, 0, tzinfo=TZ)
    with cluster() as pg:
        url = pg.url()
        migrate(url)
        load_s = load_ops_fleet(url, meters, now)
        first = best_ops_load(url, now, True)
        cached = best_ops_load(url, now, False)
        with psycopg.connect(url) as conn:
            defaults = ops_page.DEFAULTS
            thresholds = ops_page.Thresholds(
                15, 60, defaults["OPS_POLL_INTERVAL"], defaults["OPS_MQTT_INTERVAL"]
            )
            stale, _ = ops_page.stale_meters(conn, thresholds, 100, now)
    return load_s, first, cached, stale


def run_ops(sizes: list[int]) -> str:
    """The ``--ops-only`` table: each query of a first and a cached load at each size, and the
    growth largest ÷ smallest (the done-when: ``/ops`` first load at 1,000,000 within 2× of
    10,000)."""
    measured = []
    for n in sizes:
        print(f"bench.scale --ops-only: {n:,} meters", file=sys.stderr)
        measured.append((n, *measure_ops(n)))
    small, large = measured[0], measured[-1]
    head = " | ".join(f"{n:,} meters" for n, *_ in measured)
    lines = [
        f"/ops alone, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: ms per load (best of 3)",
        "",
        f"| query | {head} | growth {large[0]:,} ÷ {small[0]:,} |",
        "|---" * (len(measured) + 2) + "|",
    ]
    for which, index in (("first load", 2), ("cached", 3)):
        for part in small[index]:
            cells = [f"{m[index][part] * 1000:,.2f}" for m in measured]
            growth = large[index][part] / max(small[index][part], 1e-9)
            label = f"**{which}**" if part == "total" else f"{which}: {part}"
            lines.append(f"| {label} | {' | '.join(cells)} | {growth:.2f}× |")
    lines.append("")
    for n, load_s, _, _, stale in measured:
        lines.append(f"- {n:,} meters: generated in {load_s:.0f} s; {stale:,} stale meters.")
    return "\n".join(lines)


def render(results: list[SizeResult]) -> str:
    small, large = results[0], results[-1]
    sizes = " | ".join(f"{r.meters:,} meters" for r in results)
    head = f"| path | {sizes} | growth {large.meters:,} ÷ {small.meters:,} |"
    sep = "|---" * (len(results) + 2) + "|"
    lines = [
        "## Scale (cost per meter, 10,000 → 100,000 meters and beyond)",
        "",
        f"{datetime.now(TZ):%Y-%m-%d}; `python -m bench.scale`; {small.days} days of readings "
        "(95 % daily index, 5 % every 30 minutes), loaded with `generate_series`. Times are "
        "in-process calls of the functions the commands and pages run. µs per meter for the "
        "fleet-wide paths; ms per request for the pages.",
        "",
        head,
        sep,
    ]

    def per(r: SizeResult, path: str) -> float:
        return r.seconds[path] / max(1, r.counted.get(path, r.meters)) * 1e6

    for path in small.seconds:
        cells = [f"{per(r, path):,.1f} µs ({r.seconds[path]:,.2f} s)" for r in results]
        growth = per(large, path) / per(small, path)
        lines.append(f"| {path} | {' | '.join(cells)} | {growth:.2f}× |")
    for path in small.per_request_ms:
        cells = [f"{r.per_request_ms[path]:,.1f} ms" for r in results]
        growth = large.per_request_ms[path] / small.per_request_ms[path]
        lines.append(f"| {path} | {' | '.join(cells)} | {growth:.2f}× (per request) |")
    for path in small.bytes_per_meter_year:
        cells = [f"{r.bytes_per_meter_year[path] / 1024:,.1f} KiB" for r in results]
        growth = large.bytes_per_meter_year[path] / small.bytes_per_meter_year[path]
        lines.append(f"| disk per meter-year: {path} | {' | '.join(cells)} | {growth:.2f}× |")
    lines.append("")
    for r in results:
        ratio = (
            r.seconds["bills run (period)"] / r.seconds["ceiling: boundary readings, one statement"]
        )
        lines.append(
            f"- {r.meters:,} meters: `bills run` of the whole period is **{ratio:.1f}×** the bare"
            f" boundary-readings statement; {'; '.join(r.notes)}."
        )
    return "\n".join(lines)


def run(quick: bool = False, scales: list[int] | None = None, days: int | None = None) -> str:
    base = [1_000, 10_000] if quick else [10_000, 100_000]
    sizes = sorted(set(base + list(scales or ())))
    days = days or 60  # the period's boundaries (reading days 1–28) lie inside the data
    results = []
    for n in sorted(sizes):
        print(f"bench.scale: {n:,} meters, {days} days", file=sys.stderr)
        results.append(measure(n, days, samples=50 if quick else 200))
    return render(results)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--scale", type=int, action="append", help="a fleet size (repeatable)")
    parser.add_argument("--days", type=int, default=None)
    parser.add_argument(
        "--ops-only",
        action="store_true",
        help="only /ops, on a generated fleet without readings (sizes 10k, 100k, 1M)",
    )
    args = parser.parse_args(argv)
    if args.ops_only:
        print(run_ops(sorted(set(args.scale or [10_000, 100_000, 1_000_000]))))
        return 0
    print(run(args.quick, args.scale, args.days))
    return 0


if __name__ == "__main__":
    sys.exit(main())
