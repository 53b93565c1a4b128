"""Export benchmark: one month of the 10,000-meter data set as CSV over HTTP, beside psycopg's
``COPY … TO STDOUT`` of the same rows, in the same run.

* **Ceiling**: psycopg's ``COPY (…) TO STDOUT`` of the same rows — the export's own query
  (joins, local ISO times, ordering) — every row read by the client, in a process of its own.
* **HTTP**: the staff export page served as ``doxa web`` serves the site (gunicorn; one worker
  process of 4 threads), downloaded by a plain ``http.client`` from this process; rows counted by
  their line ends, time to the first byte noted.
* **For context**: a bare ``COPY (SELECT * FROM readings WHERE ts in the month) TO STDOUT`` (no
  joins, no formatting: what the table alone costs), and a Python row loop over the export's
  query (named cursor + ``csv.writer``, first 3 days only: it is slow).
* **Memory**: the peak resident size of each process (``VmHWM``); for the web worker, the peak
  of a 1-day, a 7-day and the whole download, the mark reset before each
  (``/proc/PID/clear_refs``), so flat memory shows as the same figure for more rows.

Data: 10,000 meters (21 provinces) with a reading every 30 minutes for 30 days (14.4 M rows),
written in time order as collectors write them. ``--quick`` uses 1,000 meters and 7 days.
Run ``python -m bench.export [--quick]``.
"""

from __future__ import annotations

import argparse
import csv
import http.client
import io
import json
import os
import platform
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import psycopg
from psycopg import sql

TZ = "Asia/Ho_Chi_Minh"
FIRST_DAY = date(2026, 1, 1)
PROVINCES = 21
PASSWORD = "bench-password-123"
CSRF = re.compile(r'name="(?:[a-z]+-)?csrf_token"[^>]*?value="([^"]+)"')


@dataclass
class Measure:
    rows: int
    seconds: float
    peak_rss_kib: int
    first_byte_s: float | None = None

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


def _machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        mem_kib = 0
    return (
        f"{os.cpu_count()} vCPU ({model}), {mem_kib / 1024 / 1024:.0f} GiB RAM, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    )


def _vm_hwm(pid: int | str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def _reset_hwm(pid: int) -> bool:
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _month_bounds(days: int) -> tuple[datetime, datetime]:
    zone = ZoneInfo(TZ)
    start = datetime.combine(FIRST_DAY, datetime.min.time(), zone)
    return start, start + timedelta(days=days)


# -- data --------------------------------------------------------------------------------------


def load(url: str, meters: int, days: int) -> int:
    """Customers, meters and readings every 30 minutes, inserted in time order."""
    start, end = _month_bounds(days)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO customers (code, name, province, reading_day)"
            " SELECT 'PB' || lpad((g %% %s + 1)::text, 2, '0') || '01' || lpad(g::text, 7, '0'),"
            " 'Khách hàng ' || g, 'Tỉnh ' || (g %% %s + 1), 1 + g %% 28"
            " FROM generate_series(1, %s) g",
            (PROVINCES, PROVINCES, meters),
        )
        conn.execute(
            "INSERT INTO meters (serial, customer_id, protocol)"
            " SELECT 'SN' || lpad(id::text, 8, '0'), id, 'mqtt' FROM customers ORDER BY id"
        )
        conn.execute(
            """
            INSERT INTO readings (meter_id, ts, energy_import_kwh, energy_export_kwh, power_w,
                                  voltage_v, current_a, source)
            SELECT m.id, t,
                   round((m.id %% 97 * 100 + extract(epoch FROM t - %(start)s) / 3600 * 0.42)
                         ::numeric, 3)::float8,
                   0, round((300 + random() * 900)::numeric, 1)::float8,
                   round((225 + random() * 10)::numeric, 1)::float8,
                   round((1 + random() * 4)::numeric, 2)::float8, 'mqtt'
            FROM generate_series(%(start)s::timestamptz, %(end)s::timestamptz - interval '30 min',
                                 interval '30 minutes') t
            CROSS JOIN LATERAL (SELECT id FROM meters) m""",
            {"start": start, "end": end},
        )
        conn.execute("VACUUM ANALYZE")
        row = conn.execute("SELECT count(*) FROM readings").fetchone()
        from schema import users

        users.add_user(conn, "bench", PASSWORD, ["billing"])
    return int(row[0]) if row else 0


# -- the measured processes ----------------------------------------------------------------------


def _copy_role(url: str, days: int, kind: str) -> None:
    """Child process: read the rows one way and print a JSON measure (rows, seconds, peak)."""
    import exports

    start, end = _month_bounds(days)
    spec = exports.readings(FIRST_DAY, FIRST_DAY + timedelta(days=days - 1), TZ)
    rows = 0
    with psycopg.connect(url, autocommit=True) as conn:
        t0 = time.perf_counter()
        if kind == "table":  # the bare table: no joins, no formatting
            statement = "COPY (SELECT * FROM readings WHERE ts >= %s AND ts < %s) TO STDOUT"
            with conn.cursor() as cur, cur.copy(statement + " (FORMAT csv)", (start, end)) as cp:
                for _data in cp:
                    rows += 1
        elif kind == "query":  # the same rows as the export: its own query
            statement = sql.SQL("COPY ({}) TO STDOUT (FORMAT csv, HEADER)").format(spec.query)
            with conn.transaction():
                conn.execute("SELECT set_config('TimeZone', %s, true)", (TZ,))
                with conn.cursor() as cur, cur.copy(statement, spec.params) as cp:
                    for _data in cp:
                        rows += 1
            rows -= 1  # the header
        else:  # a Python row loop over the same query: named cursor + csv.writer
            out = io.StringIO()
            writer = csv.writer(out)
            with conn.transaction():
                conn.execute("SELECT set_config('TimeZone', %s, true)", (TZ,))
                with conn.cursor(name="loop") as cur:
                    cur.itersize = 5000
                    cur.execute(spec.query, spec.params)
                    for row in cur:
                        writer.writerow(row)
                        rows += 1
                        if out.tell() > 1 << 20:
                            out.seek(0)
                            out.truncate()
        seconds = time.perf_counter() - t0
    print(json.dumps({"rows": rows, "seconds": seconds, "peak": _vm_hwm()}))


def _serve_role(url: str, port: int) -> None:
    """Child process: the site as ``doxa web`` serves it (gunicorn), with one worker process of
    4 threads, so the download's memory is that one worker's."""
    from doxa.commands.web import serve

    config = {
        "DATABASE_URL": url,
        "SECRET_KEY": secrets.token_hex(16),
        "TIMEZONE": TZ,
        "RATELIMIT_STORAGE_URI": url,
        "DB_POOL_MIN": 1,
        "DB_POOL_MAX": 4,
    }
    serve(config, "127.0.0.1", port, workers=1, threads=4)


def _child(*args: str) -> list[str]:
    return [sys.executable, "-m", "bench.export", *args]


def measure_copy(url: str, days: int, kind: str) -> Measure:
    out = subprocess.run(
        _child("--role", f"copy-{kind}", "--url", url, "--days", str(days)),
        check=True,
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    ).stdout
    data = json.loads(out.strip().splitlines()[-1])
    return Measure(data["rows"], data["seconds"], data["peak"])


class Client:
    """A staff user's browser, reduced to cookies and CSRF tokens."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.cookies: dict[str, str] = {}

    def request(
        self, method: str, path: str, form: dict[str, str] | None = None
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        headers = {"User-Agent": "doxa-bench"}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        for header in response.headers.get_all("Set-Cookie") or []:
            name, _, rest = header.partition("=")
            self.cookies[name.strip()] = rest.split(";", 1)[0]
        return conn, response

    def page(self, path: str) -> str:
        conn, response = self.request("GET", path)
        text = response.read().decode()
        conn.close()
        return text

    def sign_in(self) -> None:
        token = CSRF.search(self.page("/staff/login"))
        assert token, "no CSRF token on the sign-in page"
        conn, response = self.request(
            "POST",
            "/staff/login",
            {"csrf_token": token[1], "username": "bench", "password": PASSWORD},
        )
        response.read()
        conn.close()
        if response.status != 302:
            raise RuntimeError(f"sign-in failed with HTTP {response.status}")

    def export(self, first: date, last: date) -> tuple[int, float, float]:
        """(rows, seconds, seconds to the first byte) of one CSV download."""
        token = CSRF.search(self.page("/staff/exports"))
        assert token, "no CSRF token on the exports page"
        form = {
            "csrf_token": token[1],
            "readings-date_from": first.isoformat(),
            "readings-date_to": last.isoformat(),
            "readings-fmt": "csv",
            "readings-province": "",
        }
        t0 = time.perf_counter()
        conn, response = self.request("POST", "/staff/exports/readings", form)
        if response.status != 200:
            raise RuntimeError(f"export failed with HTTP {response.status}")
        first_chunk = response.read1(1 << 16)
        first_byte = time.perf_counter() - t0
        lines = first_chunk.count(b"\n")
        while chunk := response.read1(1 << 20):
            lines += chunk.count(b"\n")
        seconds = time.perf_counter() - t0
        conn.close()
        return lines - 1, seconds, first_byte


def _worker_of(pid: int) -> int:
    """The one worker process of the gunicorn arbiter ``pid``."""
    children = [
        int(child)
        for task in Path(f"/proc/{pid}/task").glob("*/children")
        for child in task.read_text().split()
    ]
    if len(children) != 1:
        raise RuntimeError(f"expected one gunicorn worker, found {children}")
    return children[0]


def measure_http(url: str, days: int) -> tuple[list[Measure], int]:
    """Downloads of 1 day, 7 days and the whole range over HTTP, and the server's RSS (KiB)
    after sign-in."""
    from doxa.services._proc import free_port, wait_for_tcp

    port = free_port()
    server = subprocess.Popen(
        _child("--role", "serve", "--url", url, "--port", str(port)),
        cwd=Path(__file__).resolve().parents[1],
    )
    try:
        wait_for_tcp("127.0.0.1", port, timeout=60, proc=server)  # type: ignore[arg-type]
        client = Client(port)
        client.sign_in()
        client.page("/staff/exports")
        worker = _worker_of(server.pid)  # gunicorn's one worker serves every request
        _reset_hwm(worker)
        idle = _vm_hwm(worker)
        results = []
        for span in sorted({1, min(7, days), days}):
            _reset_hwm(worker)
            rows, seconds, first_byte = client.export(FIRST_DAY, FIRST_DAY + timedelta(span - 1))
            results.append(Measure(rows, seconds, _vm_hwm(worker), first_byte))
        return results, idle
    finally:
        server.terminate()
        server.wait(timeout=30)


# -- the run ------------------------------------------------------------------------------------


def run(quick: bool = False, meters: int | None = None, days: int | None = None) -> str:
    from doxa.services.postgres import EmbeddedPostgres
    from schema.migrate import migrate

    meters = meters or (1_000 if quick else 10_000)
    days = days or (7 if quick else 30)
    loop_days = min(3, days)
    root = Path(tempfile.mkdtemp(prefix="doxa-bench-export-"))
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
        query = measure_copy(url, days, "query")
        table = measure_copy(url, days, "table")
        loop = measure_copy(url, loop_days, "loop")
        downloads, idle = measure_http(url, days)
    finally:
        pg.destroy()
        shutil.rmtree(root, ignore_errors=True)

    month = downloads[-1]
    mib = 1024

    def row(name: str, m: Measure, note: str = "", server: bool = False) -> str:
        where = " (web worker)" if server else ""
        return (
            f"| {name} | {m.rows:,} | {m.rate:,.0f} | {m.peak_rss_kib / mib:.0f} MiB{where} | "
            f"{m.rate / query.rate:.0%} | {note} |"
        )

    memory = ", ".join(f"{m.peak_rss_kib / mib:.0f} MiB for {m.rows:,} rows" for m in downloads)
    return "\n".join(
        [
            "## Export (staff CSV over HTTP)",
            "",
            f"{datetime.now(ZoneInfo(TZ)):%Y-%m-%d}, {_machine()}. "
            f"`python -m bench.export{' --quick' if quick else ''}`: {meters:,} meters, a "
            f"reading every 30 minutes for {days} days ({total:,} rows, loaded in {load_s:.0f} s, "
            "not measured); each path in a process of its own.",
            "",
            "| path | rows | rows/s | peak memory | vs ceiling | |",
            "|---|---|---|---|---|---|",
            row(
                "**ceiling**: psycopg `COPY (export query) TO STDOUT`, the same rows",
                query,
                "every row read by the client",
            ),
            row(
                f"**staff export page over HTTP** (`doxa web`), {days} days",
                month,
                f"**target ≥ 50%**; first byte after {month.first_byte_s or 0:.2f} s",
                server=True,
            ),
            row(
                "for context: bare `COPY (SELECT * FROM readings …) TO STDOUT`",
                table,
                "the table alone: no joins, no local ISO times, no order",
            ),
            row(
                f"for context: Python row loop (named cursor + `csv.writer`), {loop_days} days",
                loop,
                "what streaming COPY output avoids",
            ),
            "",
            f"Web worker peak memory per download (mark reset before each; {idle / mib:.0f} MiB "
            f"after sign-in): {memory}. It does not grow with the rows: the export holds one "
            "256 KiB chunk at a time, and gunicorn writes each to the socket before reading "
            "the next (a slow client slows the download, it does not fill memory).",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.export", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--meters", type=int)
    parser.add_argument("--days", type=int)
    parser.add_argument("--role", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "serve":
        _serve_role(args.url, args.port)
    elif args.role and args.role.startswith("copy-"):
        _copy_role(args.url, args.days, args.role.removeprefix("copy-"))
    else:
        print(run(quick=args.quick, meters=args.meters, days=args.days))


if __name__ == "__main__":
    main()
