"""Green Button benchmark: one meter's month of 5-minute readings (8,640) as an ESPI feed,
beside the raw ceiling, in the same run.

* **Ceiling**: the same readings fetched with one ``SELECT ts, energy_import_kwh … ORDER BY ts``
  and each difference of consecutive registers written as an ``IntervalReading`` with string
  formatting — what reading the rows and printing the XML costs, without the metering rule.
* **Doxa**: ``exports.greenbutton.export`` — the readings, the register by
  ``schema.register_inputs`` (nearest readings, replacements and steps), every interval's use by
  ``metering.usage.use_between`` with its quality, the Atom feed by ``xml.etree``; the file is
  parsed back and its Wh total checked against the ceiling's.

``--quick`` uses 7 days. Run ``python -m bench.greenbutton [--quick]``.
"""

from __future__ import annotations

import argparse
import itertools
import time
import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

import psycopg

from bench.notify import database

ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
ESPI = "{http://naesb.org/espi}"


def load(url: str, days: int, first: date) -> int:
    """One customer, one MQTT meter, readings every 5 minutes over ``days`` local days."""
    start = datetime.combine(first, datetime.min.time(), ZONE)
    with psycopg.connect(url, autocommit=True) as conn:
        cid = conn.execute(
            "INSERT INTO customers (code, name, address, province, reading_day)"
            " VALUES ('PB01010000001', 'Bench', 'x', 'Hồ Chí Minh', 15) RETURNING id"
        ).fetchone()
        assert cid is not None
        meter = conn.execute(
            "INSERT INTO meters (serial, customer_id, protocol) VALUES ('GB-1', %s, 'mqtt')"
            " RETURNING id",
            (cid[0],),
        ).fetchone()
        assert meter is not None
        n = days * 288
        with conn.cursor().copy(
            "COPY readings (meter_id, ts, energy_import_kwh, quality, source) FROM STDIN"
        ) as copy:
            for k in range(n):
                copy.write_row((meter[0], start + timedelta(minutes=5 * k),
                                round(1000 + k * 0.0123457, 6), "actual", "mqtt"))  # fmt: skip
        conn.execute("ANALYZE readings")
    return n


def ceiling(url: str, first: date, last: date) -> tuple[float, int]:
    started = time.perf_counter()
    start = datetime.combine(first, datetime.min.time(), ZONE)
    end = datetime.combine(last + timedelta(days=1), datetime.min.time(), ZONE)
    parts = ['<feed xmlns="http://www.w3.org/2005/Atom">']
    total = 0
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT r.ts, r.energy_import_kwh FROM readings r JOIN meters m ON m.id = r.meter_id"
            " WHERE m.serial = 'GB-1' AND r.ts >= %s AND r.ts < %s ORDER BY r.ts",
            (start, end),
        ).fetchall()
    q = Decimal("0.001")
    for (t0, k0), (t1, k1) in itertools.pairwise(rows):
        wh = int(
            (
                Decimal(str(k1)).quantize(q, ROUND_HALF_UP)
                - Decimal(str(k0)).quantize(q, ROUND_HALF_UP)
            )
            * 1000
        )
        total += wh
        parts.append(
            f"<IntervalReading><timePeriod><duration>{int((t1 - t0).total_seconds())}</duration>"
            f"<start>{int(t0.timestamp())}</start></timePeriod><value>{wh}</value></IntervalReading>"
        )
    parts.append("</feed>")
    "".join(parts).encode()
    return time.perf_counter() - started, total


def doxa(url: str, first: date, last: date) -> tuple[float, int, int]:
    from exports import greenbutton

    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        body, intervals = greenbutton.export(conn, ["GB-1"], first, last, ZONE, datetime.now(UTC))
    took = time.perf_counter() - started
    total = sum(int(v.text or "0") for v in ET.fromstring(body).iter(f"{ESPI}value"))
    return took, intervals, total


def run(quick: bool = False) -> str:
    days = 7 if quick else 30
    first = date(2025, 6, 1)
    last = first + timedelta(days=days - 1)
    with database() as url:
        n = load(url, days, first)
        ceiling(url, first, last)  # warm the cache for both
        raw_s, raw_total = ceiling(url, first, last)
        doxa_s, intervals, doxa_total = doxa(url, first, last)
    assert intervals == n - 1, (intervals, n)
    assert doxa_total == raw_total, (doxa_total, raw_total)
    raw_rate, doxa_rate = (n - 1) / raw_s, intervals / doxa_s
    return "\n".join([
        "## Green Button: one meter's interval use as an ESPI feed",
        "",
        f"{n:,} readings of one meter ({days} days every 5 minutes) → {intervals:,} "
        "IntervalReadings; both paths in the same run on a warm cache, and their Wh totals equal.",
        "",
        "| path | intervals/s | ratio |",
        "|---|---|---|",
        f"| one SELECT + string formatting (ceiling) | {raw_rate:,.0f} | 1.00 |",
        f"| `exports.greenbutton.export` (metering rule, xml.etree) | {doxa_rate:,.0f} | "
        f"{doxa_rate / raw_rate:.2f} |",
        "",
        f"The Doxa file took {doxa_s:.2f} s ({raw_s:.2f} s for the ceiling).",
    ])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="7 days")
    print(run(quick=parser.parse_args().quick))


if __name__ == "__main__":
    main()
