"""Customer lookup benchmark: the customer's meter page over HTTP beside its raw queries.

Loads a fleet (default 10,000 meters × 90 days of 30-minute readings ≈ 43 M rows) into a
private TimescaleDB cluster with ``INSERT … SELECT`` over ``generate_series`` (the rows are made
by the server, a week at a time, so nothing crosses the wire), then:

* **raw** — the queries the meter page runs (the customer with their meters, latest reading,
  the indices at the day and billing-period boundaries, tariff), prepared, from psycopg
  directly, timing only the database round trips;
* **HTTP** — ``doxa web`` (gunicorn, its default 2 processes × 4 threads) serving
  ``GET /meters/<serial>`` over loopback to signed-in clients, each request for a random one of
  2,000 customers;

both with 1 client and with as many clients as the server takes at once, in the same run. Clients
are signed in by minting the site's session cookie with the same secret key (the lookup form's
rate limit would otherwise stop a benchmark after 20 sign-ins a minute from one address).

Run ``python -m bench.lookup [--quick] [--meters N] [--days D] [--seconds S]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

DOXA = Path(sys.executable).parent / "doxa"
ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
SECRET = "bench-secret-key"
SAMPLE = 2000  # customers the clients pick from
WORKERS, THREADS = 2, 4  # doxa web's defaults (DOXA_WEB_WORKERS, DOXA_WEB_THREADS)
CLIENTS = WORKERS * THREADS  # the concurrent clients: as many as the server takes at once
SLICES = 10  # raw and page timings alternate in this many slices
CONTENT_LENGTH = re.compile(rb"(?im)^content-length:[ \t]*(\d+)")


@dataclass
class Latencies:
    name: str
    samples: list[float]  # seconds
    wall: float  # seconds the run took
    cpu: float = 0.0  # CPU seconds the server spent on them (user + system)

    def pct(self, p: float) -> float:
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000

    @property
    def rate(self) -> float:
        return len(self.samples) / self.wall


# -- the data set --------------------------------------------------------------------------------


@contextmanager
def cluster() -> Iterator[Any]:
    """A private TimescaleDB cluster with memory for a data set of this size, removed after."""
    from doxa.services.postgres import EmbeddedPostgres

    root = Path(tempfile.mkdtemp(prefix="doxa-bench-lookup-"))
    root.chmod(0o755)
    pg = EmbeddedPostgres(root / "pg", durable=False, database="doxa")
    try:
        pg.start()
        with psycopg.connect(pg.url("postgres"), autocommit=True) as conn:
            for setting, value in (
                ("shared_buffers", "2GB"),
                ("max_wal_size", "8GB"),
                ("effective_cache_size", "12GB"),
            ):
                conn.execute(f"ALTER SYSTEM SET {setting} = '{value}'")
        pg.stop()
        pg.start()
        yield pg
    finally:
        pg.destroy()
        shutil.rmtree(root, ignore_errors=True)


def load_fleet(url: str, meters: int, days: int, end: datetime) -> float:
    """Customers PB0101xxxxxxx with one meter BENCH-xxxxxx each and 30-minute readings over
    ``days`` days before ``end``; returns the rows/s of the readings load."""
    from schema.migrate import migrate

    migrate(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO customers (code, name, address, province, reading_day)"
            " SELECT 'PB0101' || lpad(n::text, 7, '0'), 'Khách hàng ' || n, n || ' Lê Lợi',"
            " 'Hồ Chí Minh', 1 + n %% 28 FROM generate_series(1, %s) AS n",
            (meters,),
        )
        conn.execute(
            "INSERT INTO meters (serial, customer_id, protocol)"
            " SELECT 'BENCH-' || lpad(substr(code, 7)::int::text, 6, '0'), id, 'mqtt'"
            " FROM customers"
        )
    start = end - timedelta(days=days)
    weeks = []
    t = start
    while t < end:
        weeks.append((t, min(end, t + timedelta(days=7))))
        t += timedelta(days=7)
    began = time.perf_counter()
    # Two loaders (the machine's cores), a week at a time so each fills one chunk.
    threads = [
        threading.Thread(target=_load_weeks, args=(url, weeks[k::2], start)) for k in range(2)
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    elapsed = time.perf_counter() - began
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ANALYZE")
        row = conn.execute("SELECT count(*) FROM readings").fetchone()
    assert row is not None
    return row[0] / elapsed


def _load_weeks(url: str, weeks: list[tuple[datetime, datetime]], origin: datetime) -> None:
    # A register growing at a meter's own rate (0.1–0.59 kWh/h) with a daily swing of ±30 %
    # (never negative, so the register only rises); power, voltage and current to match.
    sql = """
        INSERT INTO readings (meter_id, ts, energy_import_kwh, energy_export_kwh, power_w,
                              voltage_v, current_a, quality, source)
        SELECT m.id, t,
               1000 + m.id %% 997 + r.rate * h
                 + 0.3 * r.rate * 24 / (2 * pi()) * (1 - cos(2 * pi() * h / 24)),
               0, r.rate * 1000 * (1 + 0.3 * sin(2 * pi() * h / 24)),
               228 + (m.id %% 5), r.rate * 1000 / 230, 'actual', 'backfill'
        FROM meters m
        CROSS JOIN LATERAL (SELECT 0.1 + (m.id %% 50) / 100.0 AS rate) r
        CROSS JOIN generate_series(%(lo)s::timestamptz, %(hi)s::timestamptz - interval '1 second',
                                   interval '30 minutes') AS t
        CROSS JOIN LATERAL (SELECT extract(epoch FROM t - %(origin)s) / 3600 AS h) x
    """
    with psycopg.connect(url, autocommit=True) as conn:
        for lo, hi in weeks:
            conn.execute(sql, {"lo": lo, "hi": hi, "origin": origin})


def sample_customers(url: str, n: int, seed: int = 7) -> list[tuple[int, str]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT c.id, m.serial FROM customers c JOIN meters m ON m.customer_id = c.id"
        ).fetchall()
    return random.Random(seed).sample(rows, min(n, len(rows)))


# -- raw queries ---------------------------------------------------------------------------------


class TimedConnection:
    """Times every query a page function runs (the round trip, rows included)."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn
        self.spent = 0.0

    def execute(self, sql: str, params: Any = None, prepare: bool | None = None) -> Any:
        began = time.perf_counter()
        cursor = self.conn.execute(sql, params, prepare=prepare)
        self.spent += time.perf_counter() - began
        return cursor


def page_queries(conn: TimedConnection, customer_id: int, serial: str, now: datetime) -> None:
    """Exactly the queries of ``GET /meters/<serial>`` (see lookup_web.customers.meter)."""
    from lookup_web import customer_queries as q
    from lookup_web.customer_dashboard import build

    customer, meters = q.customer_and_meters(conn, customer_id)  # type: ignore[arg-type]
    meter = next(m for m in meters if m.serial == serial)
    assert customer is not None
    build(conn, customer, meter, now=now, zone=ZONE, days=30)  # type: ignore[arg-type]


def raw_run(url: str, sample: list[tuple[int, str]], clients: int, seconds: float) -> Latencies:
    """Each client its own prepared connection, pages of random customers, for ``seconds``."""
    samples: list[float] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client(seed: int) -> None:
        rnd = random.Random(seed)
        mine = []
        with psycopg.connect(url, autocommit=True, prepare_threshold=0) as conn:
            timed = TimedConnection(conn)
            for _ in range(5):  # prepare the statements first
                page_queries(timed, *rnd.choice(sample), datetime.now(UTC))
            while time.monotonic() < deadline:
                timed.spent = 0.0
                page_queries(timed, *rnd.choice(sample), datetime.now(UTC))
                mine.append(timed.spent)
        with lock:
            samples.extend(mine)

    began = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return Latencies(f"raw queries, {clients} client(s)", samples, time.perf_counter() - began)


# -- HTTP ----------------------------------------------------------------------------------------


def session_cookies(sample: list[tuple[int, str]]) -> list[tuple[str, str]]:
    """(serial, signed session cookie) as the lookup form would have set them: the customer,
    the meter, the time and the CSRF secret of the sign-out form (so, as for a browser, a page
    does not have to send a new cookie)."""
    from flask import Flask

    app = Flask("bench")
    app.secret_key = SECRET
    serializer = app.session_interface.get_signing_serializer(app)  # type: ignore[attr-defined]
    assert serializer is not None
    now = int(time.time())
    return [
        (
            serial,
            serializer.dumps(
                {
                    "customer_id": cid,
                    "meter_serial": serial,
                    "customer_at": now,
                    "csrf_token": secrets.token_hex(20),  # the sign-out form's secret
                }
            ),
        )
        for cid, serial in sample
    ]


@contextmanager
def doxa_web(url: str, port: int) -> Iterator[subprocess.Popen[bytes]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOXA_")}
    env.update(
        DOXA_DATABASE_URL=url,
        DOXA_SECRET_KEY=SECRET,
        DOXA_WEB_WORKERS=str(WORKERS),
        DOXA_WEB_THREADS=str(THREADS),
        DOXA_HOME=tempfile.mkdtemp(prefix="doxa-bench-home-"),
    )
    proc = subprocess.Popen(
        [str(DOXA), "web", "--port", str(port)], env=env, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5):
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("doxa web did not start") from None
                time.sleep(0.2)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        shutil.rmtree(env["DOXA_HOME"], ignore_errors=True)


def http_run(port: int, cookies: list[tuple[str, str]], clients: int, seconds: float) -> Latencies:
    """Each client one keep-alive connection, requests for random customers, for ``seconds``.

    The clients speak HTTP/1.1 over a bare socket (the request bytes made before the clock
    starts, the response read up to its Content-Length): a load generator, like wrk, that
    spends next to no CPU of the two the server shares with it. (``http.client`` parses every
    response's headers with the email package, which took CPU from the server under test.)
    """
    samples: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    requests = [
        (
            serial,
            f"GET /meters/{serial} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Cookie: session={cookie}\r\n\r\n".encode(),
        )
        for serial, cookie in cookies
    ]

    def client(seed: int) -> None:
        rnd = random.Random(1000 + seed)
        mine = []
        with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while time.monotonic() < deadline:
                serial, request = rnd.choice(requests)
                began = time.perf_counter()
                sock.sendall(request)
                status, body = _response(sock)
                mine.append(time.perf_counter() - began)
                if status != 200 or serial.encode() not in body:
                    with lock:
                        errors.append(f"{status} for {serial}")
        with lock:
            samples.extend(mine)

    began = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if errors:
        raise RuntimeError(f"{len(errors)} failed requests, e.g. {errors[0]}")
    return Latencies(
        f"HTTP GET /meters/…, {clients} client(s)", samples, time.perf_counter() - began
    )


def _response(sock: socket.socket) -> tuple[int, bytes]:
    """One HTTP/1.1 response with a Content-Length: (status, body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("the server closed the connection")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = CONTENT_LENGTH.search(head)
    if length is None:
        raise RuntimeError(f"no Content-Length in {head[:200]!r}")
    while len(body) < int(length[1]):
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("the server closed the connection")
        body += chunk
    return int(head[9:12]), body


# -- the report ----------------------------------------------------------------------------------


def run(
    quick: bool = False,
    meters: int | None = None,
    days: int | None = None,
    seconds: float = 20,
    url: str | None = None,
) -> str:
    """Load the fleet into a new cluster (or use ``url``, a database this module loaded
    before), then time the raw queries and the page, in the same run."""
    meters = meters or (300 if quick else 10_000)
    days = days or (14 if quick else 90)
    seconds = 4 if quick else seconds
    if url is not None:
        return _measure(url, meters, days, None, seconds, quick)
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    with cluster() as pg:
        print(f"loading {meters} meters × {days} days…", file=sys.stderr)
        load_rate = load_fleet(pg.url(), meters, days, end)
        return _measure(pg.url(), meters, days, load_rate, seconds, quick)


def _measure(
    url: str, meters: int, days: int, load_rate: float | None, seconds: float, quick: bool
) -> str:
    from doxa.services._proc import free_port

    with psycopg.connect(url) as conn:
        facts = conn.execute(
            "SELECT (SELECT count(*) FROM readings),"
            " (SELECT count(*) FROM show_chunks('readings')),"
            " pg_size_pretty(hypertable_size('readings'))"
        ).fetchone()
    assert facts is not None
    sample = sample_customers(url, SAMPLE)
    cookies = session_cookies(sample)
    results = []
    port = free_port()
    with doxa_web(url, port) as server:
        print("warming up…", file=sys.stderr)
        http_run(port, cookies, CLIENTS, 3 if quick else 10)  # caches, pool, prepared plans
        raw_run(url, sample, 1, 3 if quick else 5)
        for clients in (1, CLIENTS):
            print(f"timing with {clients} client(s)…", file=sys.stderr)
            # Alternate short slices of each, so both see the same machine (other work on a
            # shared machine comes and goes).
            raw = Latencies(f"raw, {clients}", [], 0.0)
            web = Latencies(f"page, {clients}", [], 0.0)
            for _ in range(SLICES):
                part = raw_run(url, sample, clients, seconds / SLICES)
                raw.samples += part.samples
                raw.wall += part.wall
                cpu_before = _cpu_seconds(server.pid)
                part = http_run(port, cookies, clients, seconds / SLICES)
                web.cpu += _cpu_seconds(server.pid) - cpu_before
                web.samples += part.samples
                web.wall += part.wall
            results.append((clients, raw, web))
    return report(meters, days, facts, load_rate, results)


def report(
    meters: int,
    days: int,
    facts: tuple[int, int, str],
    load_rate: float | None,
    results: list[tuple[int, Latencies, Latencies]],
) -> str:
    machine = f"{platform.node()}: {os.cpu_count()} vCPU, " + _memory() + f", {_cpu_model()}"
    lines = [
        "## Customer lookup (`bench/lookup.py`)",
        "",
        f"Run {date.today().isoformat()} on {machine}. Data set: {meters:,} meters × {days} days"
        f" of 30-minute readings = {facts[0]:,} rows in {facts[1]} chunks ({facts[2]})"
        + (
            f", loaded at {load_rate:,.0f} rows/s (server-side `generate_series`, two sessions)."
            if load_rate
            else "."
        ),
        "PostgreSQL 15 + TimescaleDB, shared_buffers 2 GB; `doxa web` with"
        f" {WORKERS} gunicorn processes × {THREADS} threads; pages of 2,000 random customers.",
        "",
        "The page is `GET /meters/<serial>`: latest index, today, the billing month with its"
        " projection and tier, the 30-day and 12-month charts. *Raw* is the same queries run by"
        " psycopg, prepared, timing only the database round trips. Raw and page runs alternate"
        f" in {SLICES} slices each, so both see the same machine. The HTTP clients are bare"
        " keep-alive sockets (requests made in advance, responses read up to their"
        " Content-Length), so the load generator takes little of the CPU the server shares"
        " with it; *CPU per page* is the user + system time of the `doxa web` processes.",
        "",
        "| clients | raw p50 | raw p95 | page p50 | page p95 | p50 ratio (≤ 2×) | p95 ratio (≤ 3×)"
        " | pages/s | `doxa web` CPU per page |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for clients, raw, web in results:
        r50, r95, w50, w95 = raw.pct(50), raw.pct(95), web.pct(50), web.pct(95)
        lines.append(
            f"| {clients} | {r50:.2f} ms | {r95:.2f} ms | {w50:.2f} ms | {w95:.2f} ms |"
            f" {w50 / r50:.2f}× | {w95 / r95:.2f}× | {web.rate:,.0f} |"
            f" {web.cpu / len(web.samples) * 1000:.2f} ms |"
        )
    lines += [
        "",
        "Raw query rate with "
        + ", ".join(f"{c} client(s): {raw.rate:,.0f} pages/s" for c, raw, _ in results)
        + f"; mean raw page {statistics.fmean(results[0][1].samples) * 1000:.2f} ms.",
        "",
    ]
    return "\n".join(lines)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of a process and its children (gunicorn's workers), from
    Linux's ``/proc``."""
    total = 0.0
    for proc in [pid, *_children(pid)]:
        try:
            fields = Path(f"/proc/{proc}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        found += [int(child) for child in task.read_text().split()]
    return found


def _memory() -> str:
    try:
        with open("/proc/meminfo") as fh:
            kb = int(fh.readline().split()[1])
        return f"{kb / 1024 / 1024:.0f} GB RAM"
    except (OSError, ValueError, IndexError):
        return "unknown RAM"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="300 meters × 14 days, short runs")
    parser.add_argument("--meters", type=int)
    parser.add_argument("--days", type=int)
    parser.add_argument("--seconds", type=float, default=20, help="length of each timed run")
    parser.add_argument("--url", help="a database already holding the fleet (load_fleet)")
    args = parser.parse_args()
    print(run(args.quick, args.meters, args.days, args.seconds, args.url))


if __name__ == "__main__":
    main()
