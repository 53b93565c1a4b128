"""Large exports stream: the first bytes leave while PostgreSQL is still producing rows, memory
stays flat whatever the size (CSV and XLSX), and a download cut short is audited as incomplete."""

from __future__ import annotations

import http.client
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterable, Iterator
from importlib.metadata import version
from urllib.parse import urlencode, urlsplit

import psycopg
import pytest
from conftest import TEMPLATE_DB
from flask import Flask
from test_staff_helpers import add_staff, csrf_token, signed_in_client

import lookup_web
from doxa.services.postgres import EmbeddedPostgres
from lookup_web import create_app

pytestmark = [pytest.mark.db, pytest.mark.slow]
METERS = 100
WEEK_ROWS = METERS * 7 * 288  # 5-minute readings


@pytest.fixture(scope="module")
def week_url(pg_cluster: EmbeddedPostgres) -> Iterator[str]:
    """A database of this module's own: 100 meters with a reading every 5 minutes from 2025-05-01
    to 2025-05-07 (201,600 rows, an 18 MB CSV), built once for both tests."""
    name = f"t_week_{uuid.uuid4().hex[:12]}"
    pg_cluster.ensure_database(name, template=TEMPLATE_DB)
    url = pg_cluster.url(name)
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(
            "INSERT INTO customers (code, name, province, reading_day)"
            " SELECT 'PB0101' || lpad(g::text, 7, '0'), 'Khách ' || g, 'Đồng Nai', 15"
            " FROM generate_series(1, %s) g",
            (METERS,),
        )
        db.execute(
            "INSERT INTO meters (serial, customer_id, protocol)"
            " SELECT 'BIG-' || lpad(id::text, 4, '0'), id, 'mqtt' FROM customers"
        )
        db.execute(
            "INSERT INTO readings (meter_id, ts, energy_import_kwh, energy_export_kwh, power_w,"
            " voltage_v, current_a, source)"
            " SELECT m.id, t, m.id * 1000 + extract(epoch FROM t - '2025-05-01+07') / 3600.0 * 0.8,"
            " 0, 812.5, 229.7, 3.54, 'mqtt'"
            " FROM generate_series('2025-05-01 00:00+07'::timestamptz,"
            " '2025-05-07 23:55+07', interval '5 minutes') t CROSS JOIN LATERAL"
            " (SELECT id FROM meters) m"
        )
        db.execute("ANALYZE")
    yield url
    with psycopg.connect(pg_cluster.url("postgres"), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def week(week_url: str) -> Iterator[psycopg.Connection]:
    """A connection to the week's database; staff users and audit entries are cleared after."""
    with psycopg.connect(week_url, autocommit=True) as db:
        yield db
        db.execute("TRUNCATE audit_log, api_tokens, staff_sessions, staff_users")


@pytest.fixture
def week_app(week_url: str) -> Iterator[Flask]:
    app = create_app({"DATABASE_URL": week_url, "TESTING": True, "DB_POOL_MIN": 0})
    yield app
    lookup_web.close(app)


def _form(kind: str, first: str, last: str, fmt: str) -> dict[str, str]:
    return {
        f"{kind}-date_from": first,
        f"{kind}-date_to": last,
        f"{kind}-fmt": fmt,
        f"{kind}-province": "",
    }


def _peak_while_streaming(consume: Callable[[], Iterable[bytes]]) -> tuple[int, int]:
    """(bytes received, peak Python memory in bytes) while consuming one streamed response."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        size = sum(len(chunk) for chunk in consume())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return size, peak


def test_memory_stays_flat_whatever_the_size(week, week_app) -> None:
    db = week
    add_staff(db, "lan", "billing")
    client = signed_in_client(week_app, "lan")
    token = csrf_token(client, "/staff/exports")

    def export(first: str, last: str, fmt: str) -> Callable[[], Iterable[bytes]]:
        def consume() -> Iterable[bytes]:
            response = client.post(
                "/staff/exports/readings",
                data={"csrf_token": token, **_form("readings", first, last, fmt)},
                buffered=False,
            )
            assert response.status_code == 200
            yield from response.response
            response.close()

        return consume

    small_size, small_peak = _peak_while_streaming(export("2025-05-01", "2025-05-01", "csv"))
    large_size, large_peak = _peak_while_streaming(export("2025-05-01", "2025-05-07", "csv"))
    assert large_size > 6 * small_size > 0
    # Holding the file would take large_size (about 18 MB); a stream holds a chunk or two.
    assert large_peak < 4 * 1024 * 1024, (small_peak, large_peak)
    assert large_peak < 2 * small_peak + 1024 * 1024, (small_peak, large_peak)
    rows = db.execute(
        "SELECT row_count FROM audit_log WHERE action = 'export.readings' ORDER BY id"
    ).fetchall()
    assert rows == [(METERS * 288,), (WEEK_ROWS,)]

    # XLSX in constant-memory mode: a 4-times larger workbook needs no more memory.
    meters = "\n".join(f"BIG-{i:04d}" for i in range(1, 11))

    def xlsx(last: str) -> Callable[[], Iterable[bytes]]:
        def consume() -> Iterable[bytes]:
            data = {"csrf_token": token, **_form("readings", "2025-05-01", last, "xlsx")}
            response = client.post(
                "/staff/exports/readings", data={**data, "readings-meters": meters}, buffered=False
            )
            assert response.status_code == 200
            yield from response.response
            response.close()

        return consume

    _, xlsx_small = _peak_while_streaming(xlsx("2025-05-01"))
    _, xlsx_large = _peak_while_streaming(xlsx("2025-05-04"))
    assert xlsx_large < 2 * xlsx_small + 1024 * 1024, (xlsx_small, xlsx_large)


def _active_copies(db: psycopg.Connection) -> int:
    row = db.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND state = 'active' AND query LIKE 'COPY (%%'"
    ).fetchone()
    return int(row[0]) if row else 0


def test_first_bytes_leave_while_the_query_still_runs(week, week_app, live_server) -> None:
    db = week
    add_staff(db, "lan", "billing")
    app = week_app
    client = signed_in_client(app, "lan")
    token = csrf_token(client, "/staff/exports")
    cookie = client.get_cookie("session")
    assert cookie is not None
    url = urlsplit(live_server(app))

    def start_download() -> http.client.HTTPResponse:
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
        body = urlencode(
            {"csrf_token": token, **_form("readings", "2025-05-01", "2025-05-07", "csv")}
        )
        conn.request(
            "POST",
            "/staff/exports/readings",
            body=body,
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Cookie": f"session={cookie.value}",
                # The test client's, so the session passes Flask-Login's "strong" check.
                "User-Agent": f"Werkzeug/{version('werkzeug')}",
            },
        )
        return conn.getresponse()

    response = start_download()
    assert response.status == 200, response.read(300)
    first = response.readline()
    assert first == (
        b"meter_serial,customer_code,ts,energy_import_kwh,energy_export_kwh,power_w,voltage_v,"
        b"current_a,quality\n"
    )
    # The header is here and PostgreSQL is still producing the rows (the rest of an 18 MB file).
    assert _active_copies(db) == 1
    lines = 1 + sum(1 for _ in response)
    assert lines == WEEK_ROWS + 1
    response.close()

    # A download cut short: the query is cancelled and the audit log says so.
    cut = start_download()
    cut.read(100_000)
    cut.close()
    deadline = time.monotonic() + 20
    entries: list[tuple[int, str]] = []
    while len(entries) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
        entries = db.execute(
            "SELECT row_count, detail->>'complete' FROM audit_log"
            " WHERE action = 'export.readings' ORDER BY id"
        ).fetchall()
    assert entries[0] == (WEEK_ROWS, "true")
    entry = entries[1]
    assert entry[1] == "false", entry
    assert entry[0] < WEEK_ROWS
    assert _active_copies(db) == 0
