"""Issue benchmark: ``doxa bills issue`` over 100,000 draft bills beside a bare ``UPDATE`` of the
same rows, in the same run, on the same database.

* **Data**: 100,000 customers with one meter each; last period's bills issued (100 kWh each)
  and this period's drafts (100–128 kWh, every 100th on an estimated index, every 250th 40 %
  up), each with a bill breakdown of the size ``doxa bills run`` writes (~1 KB of JSON); a few
  open validation exceptions. The ``bills_issued_are_final`` trigger is in place for both paths.
* **Ceiling**: one ``UPDATE bills SET status = 'issued', issued_at, issued_by WHERE period = …
  AND status = 'draft'`` — what flipping the rows costs, nothing decided — then rolled back and
  the table vacuumed, so both paths start from the same rows.
* **Doxa**: ``billing.issue.issue_period`` — the holds of every draft (the rise over the
  customer's previous issued bill, estimated boundaries, open exceptions) and the issue of the
  rest with the account name frozen, in one statement, the bill-issued notices queued and the
  audit entry, in one transaction. Target: within 5× of the ceiling.

``--quick`` uses 10,000 bills. Run ``python -m bench.issue [--quick] [--bills N]``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg

ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
PERIOD = "2026-01"
_LINES = [(1, 50, 1984), (2, 50, 2050), (3, 100, 2380), (4, 100, 2998), (5, 100, 3350),
          (6, None, 3460)]  # fmt: skip


@contextmanager
def database() -> Iterator[str]:
    from doxa.services.postgres import EmbeddedPostgres
    from schema.migrate import migrate

    root = Path(tempfile.mkdtemp(prefix="doxa-bench-issue-"))
    root.chmod(0o755)
    pg = EmbeddedPostgres(root / "pg", durable=False, database="doxa")
    try:
        pg.start()
        migrate(pg.url())
        yield pg.url()
    finally:
        pg.destroy()
        shutil.rmtree(root, ignore_errors=True)


def _breakdown(kwh: int) -> str:
    left, lines = kwh, []
    for tier, width, price in _LINES:
        take = left if width is None else min(left, width)
        lines.append({"tier": tier, "width_kwh": width, "kwh": take, "price_vnd": price,
                      "amount_vnd": take * price})  # fmt: skip
        left -= take
    amount = sum(line["amount_vnd"] for line in lines)  # type: ignore[misc]
    part = {"start": "2025-12-15", "end": "2026-01-15", "days": 31, "consumption_kwh": kwh,
            "tariff_effective_from": "2025-05-10", "vat_rate": "0.08", "lines": lines,
            "amount_vnd": amount, "vat_vnd": round(amount * 0.08),
            "total_vnd": amount + round(amount * 0.08)}  # fmt: skip
    segment = {"meter_serial": "M", "start_index_kwh": 1000.0, "end_index_kwh": 1000.0 + kwh,
               "consumption_kwh": float(kwh), "reason": "period_start",
               "start": "2025-12-15T00:00:00+07:00",
               "end": "2026-01-15T00:00:00+07:00"}  # fmt: skip
    return json.dumps({"parts": [part], "segments": [segment], "estimated": False,
                       "multiplier": "1", "households": 1})  # fmt: skip


def load(url: str, n: int) -> None:
    """N customers and meters, last period's bills issued and this period's drafts."""
    issued_at = datetime(2025, 12, 16, tzinfo=UTC)
    with psycopg.connect(url, autocommit=True) as conn:
        with conn.cursor().copy(
            "COPY customers (code, name, province, reading_day) FROM STDIN"
        ) as cp:
            for k in range(n):
                cp.write_row((f"PB0101{k:07d}", f"Khách hàng {k}", f"Tỉnh {k % 63}", 15))
        conn.execute(
            "INSERT INTO meters (serial, customer_id, protocol) SELECT 'M' || id, id, 'mqtt'"
            " FROM customers"
        )
        pairs = conn.execute("SELECT customer_id, id FROM meters ORDER BY id").fetchall()
        columns = ("customer_id, meter_id, period, period_start, period_end, days,"
                   " start_index_kwh, end_index_kwh, consumption_kwh, amount_vnd, vat_vnd,"
                   " total_vnd, estimated, status, breakdown, issued_at, issued_by")  # fmt: skip
        with conn.cursor().copy(f"COPY bills ({columns}) FROM STDIN") as cp:
            for k, (customer, meter) in enumerate(pairs):
                for period, start, end, kwh, status in (
                    ("2025-12", date(2025, 11, 15), date(2025, 12, 15), 100, "issued"),
                    (PERIOD, date(2025, 12, 15), date(2026, 1, 15),
                     140 if k % 250 == 0 else 100 + k % 29, "draft"),
                ):  # fmt: skip
                    amount = 200_000 + kwh * 2_000
                    cp.write_row((customer, meter, period, start, end, (end - start).days, 1000,
                                  1000 + kwh, kwh, amount, amount // 12, amount + amount // 12,
                                  status == "draft" and k % 100 == 1, status, _breakdown(kwh),
                                  issued_at if status == "issued" else None,
                                  "bench" if status == "issued" else None))  # fmt: skip
        conn.execute(
            "INSERT INTO reading_exceptions (meter_id, rule, ts_from, ts_to, reason)"
            " SELECT id, 'gap', '2026-01-01', '2026-01-02', 'bench' FROM meters"
            " WHERE id % 1000 = 7"
        )
        conn.execute("VACUUM ANALYZE")


def bare_update(url: str) -> tuple[float, int]:
    """Seconds for one UPDATE flipping every draft of the period, and the rows (rolled back)."""
    with psycopg.connect(url) as conn:
        started = time.perf_counter()
        cur = conn.execute(
            "UPDATE bills SET status = 'issued', issued_at = %s, issued_by = 'bench'"
            " WHERE period = %s AND status = 'draft'",
            (datetime.now(UTC), PERIOD),
        )
        took = time.perf_counter() - started
        rows = cur.rowcount
        conn.rollback()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE bills")
    return took, rows


def doxa_issue(url: str) -> tuple[float, int, int]:
    """Seconds for ``issue_period`` over the period, and how many were issued and held."""
    from billing.issue import issue_period
    from billing.periods import Period

    with psycopg.connect(url) as conn:
        started = time.perf_counter()
        result = issue_period(conn, Period.parse(PERIOD), None, "bench", datetime.now(UTC), ZONE)
        took = time.perf_counter() - started
        conn.commit()
    return took, len(result.issued), len(result.held)


def run(quick: bool = False, n: int | None = None) -> str:
    n = n or (10_000 if quick else 100_000)
    with database() as url:
        load(url, n)
        bare_s, bare_rows = bare_update(url)
        doxa_s, issued, held = doxa_issue(url)
    assert bare_rows == n and issued + held == n, (bare_rows, issued, held)
    ratio = doxa_s / bare_s
    return "\n".join([
        "## Issuing bills: `doxa bills issue` beside a bare UPDATE",
        "",
        f"{n:,} draft bills of one period (one per customer, each beside last period's issued "
        "bill, breakdowns as `doxa bills run` writes them); both paths in the same run on the "
        "same rows, the immutability trigger in place for both.",
        "",
        "| path | bills/s | time ÷ ceiling |",
        "|---|---|---|",
        f"| bare `UPDATE … SET status = 'issued'` (ceiling) | {n / bare_s:,.0f} | 1.00 |",
        f"| `billing.issue.issue_period`: holds + issue + notices + audit | "
        f"{n / doxa_s:,.0f} | {ratio:.2f} |",
        "",
        f"Issued {issued:,}, held {held:,} (estimated boundaries, 40 % rises, open exceptions). "
        "Target: within 5× of the bare UPDATE.",
    ])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10,000 bills")
    parser.add_argument("--bills", type=int)
    args = parser.parse_args()
    print(run(args.quick, args.bills))


if __name__ == "__main__":
    main()
