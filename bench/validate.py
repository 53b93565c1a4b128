"""Validation benchmark: ``doxa readings validate`` over a fleet's month of 30-minute readings,
beside a bare SQL scan of the same rows, in the same run.

* **Ceiling**: ``SELECT count(*), sum(energy_import_kwh) FROM readings`` over the validated
  range (and the day before it, which validation reads for each first reading's predecessor):
  every row read once, nothing computed.
* **Validation**: :func:`vee.validate.validate_range` over the same days: the one windowed scan,
  the day rows stored, the findings, the exceptions reconciled; run twice (the first opens the
  exceptions, the second is the idempotent re-run the scheduler repeats).

Data: meters with a reading every 30 minutes (half SDM120, half MQTT meters without a model),
one meter in 500 with a rollback and one in 700 with a 6-hour gap, so the findings are real.
Default 2,000 meters × 30 days (2.9 M rows, a couple of minutes); ``--quick`` 500 × 7;
``--meters 100000 --days 30`` is the issue's size (144 M rows: hours to load, ~30 GB of disk).
Run ``python -m bench.validate [--quick] [--meters N] [--days D]``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg

TZ = "Asia/Ho_Chi_Minh"
FIRST_DAY = date(2026, 1, 1)


def _bounds(days: int) -> tuple[datetime, datetime]:
    zone = ZoneInfo(TZ)
    start = datetime.combine(FIRST_DAY, datetime.min.time(), zone)
    return start, start + timedelta(days=days)


def load(url: str, meters: int, days: int) -> int:
    """Customers, meters and their readings, inserted a day at a time in time order."""
    start, end = _bounds(days)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO customers (code, name, province, reading_day)"
            " SELECT 'PB' || lpad((g %% 21 + 1)::text, 2, '0') || '01' || lpad(g::text, 7, '0'),"
            " 'Khách hàng ' || g, 'Tỉnh ' || (g %% 21 + 1), 1 + g %% 28"
            " FROM generate_series(1, %s) g",
            (meters,),
        )
        conn.execute(
            "INSERT INTO meters (serial, customer_id, protocol, model, host, port, unit_id)"
            " SELECT 'SN' || lpad(id::text, 8, '0'), id,"
            "        CASE WHEN id % 2 = 0 THEN 'modbus' ELSE 'mqtt' END,"
            "        CASE WHEN id % 2 = 0 THEN 'sdm120' END,"
            "        CASE WHEN id % 2 = 0 THEN '10.' || (id / 60000) || '.' || (id / 240 % 250)"
            "             || '.' || (id % 240 / 2 + 1) END,"
            "        CASE WHEN id % 2 = 0 THEN 502 END, CASE WHEN id % 2 = 0 THEN 1 END"
            " FROM customers ORDER BY id"
        )
        day = start
        while day < end:
            conn.execute(
                """
                INSERT INTO readings (meter_id, ts, energy_import_kwh, source, received_at)
                SELECT m.id, t,
                       round((m.id %% 97 * 100
                              + extract(epoch FROM t - %(start)s) / 3600 * (0.2 + m.id %% 7 * 0.05)
                              - CASE WHEN m.id %% 500 = 0 AND t >= %(mid)s THEN 5 ELSE 0 END)
                             ::numeric, 3)::float8,
                       'backfill', t
                  FROM generate_series(%(day)s::timestamptz,
                                       %(day)s::timestamptz + interval '1 day' - interval '30 min',
                                       interval '30 minutes') t
                 CROSS JOIN LATERAL (SELECT id FROM meters) m
                 WHERE NOT (m.id %% 700 = 0 AND t > %(mid)s
                            AND t < %(mid)s + interval '6 hours')""",
                {"start": start, "mid": start + timedelta(days=days / 2), "day": day},
            )
            day += timedelta(days=1)
        conn.execute("VACUUM ANALYZE")
        row = conn.execute("SELECT count(*) FROM readings").fetchone()
    return int(row[0]) if row else 0


def bare_scan(url: str, days: int) -> float:
    start, end = _bounds(days)
    with psycopg.connect(url, autocommit=True) as conn:
        t0 = time.perf_counter()
        conn.execute(
            "SELECT count(*), sum(energy_import_kwh) FROM readings WHERE ts >= %s AND ts <= %s",
            (start - timedelta(days=1), end),
        ).fetchone()
        return time.perf_counter() - t0


def validate(url: str, days: int) -> tuple[float, str]:
    from vee.validate import validate_range

    with psycopg.connect(url, autocommit=True) as conn:
        t0 = time.perf_counter()
        counts = validate_range(
            conn,
            FIRST_DAY,
            FIRST_DAY + timedelta(days=days - 1),
            datetime(2026, 12, 1, tzinfo=UTC),
            ZoneInfo(TZ),
        )
        return time.perf_counter() - t0, counts.summary()


def run(quick: bool = False, meters: int | None = None, days: int | None = None) -> str:
    from doxa.services.postgres import EmbeddedPostgres
    from schema.migrate import migrate

    meters = meters or (500 if quick else 2_000)
    days = days or (7 if quick else 30)
    root = Path(tempfile.mkdtemp(prefix="doxa-bench-validate-"))
    root.chmod(0o755)
    pg = EmbeddedPostgres(root / "pg", durable=False, database="bench")
    try:
        pg.start()
        url = pg.url("bench")
        migrate(url)
        t0 = time.perf_counter()
        total = load(url, meters, days)
        load_s = time.perf_counter() - t0
        print(f"loaded {total:,} readings in {load_s:.0f} s", file=sys.stderr)
        bare_scan(url, days)  # warm the cache for both paths
        bare = min(bare_scan(url, days), bare_scan(url, days))
        first, summary = validate(url, days)
        second, again = validate(url, days)
        bare = min(bare, bare_scan(url, days))
    finally:
        pg.destroy()
        shutil.rmtree(root, ignore_errors=True)
    rate = total / bare
    return "\n".join(
        [
            "## Validation (`doxa readings validate`)",
            "",
            f"{datetime.now(ZoneInfo(TZ)):%Y-%m-%d}, `python -m bench.validate"
            f"{' --quick' if quick else ''} --meters {meters} --days {days}`: {meters:,} meters,"
            f" a reading every 30 minutes for {days} days ({total:,} rows, loaded in"
            f" {load_s:.0f} s, not measured).",
            "",
            "| path | seconds | rows/s | ratio to the scan |",
            "|---|---|---|---|",
            f"| **ceiling**: bare `SELECT count(*), sum(kwh)` of the same rows | {bare:.2f} |"
            f" {rate:,.0f} | 1.00 |",
            f"| validation, first run | {first:.2f} | {total / first:,.0f} | {first / bare:.2f} |",
            f"| validation, re-run (idempotent) | {second:.2f} | {total / second:,.0f} |"
            f" {second / bare:.2f} |",
            "",
            f"First run: {summary}. Re-run: {again}. Target: validation ≤ 3× the scan.",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="500 meters, 7 days")
    parser.add_argument("--meters", type=int)
    parser.add_argument("--days", type=int)
    args = parser.parse_args()
    print(run(args.quick, args.meters, args.days))


if __name__ == "__main__":
    main()
