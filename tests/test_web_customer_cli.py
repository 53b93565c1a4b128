"""``doxa web`` serves the site with gunicorn: real processes on a free port, stopped by SIGTERM,
sharing the rate limits through the database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from doxa.services._proc import free_port, wait_for_tcp

pytestmark = pytest.mark.db

DOXA = str(Path(sys.executable).with_name("doxa"))


@contextmanager
def doxa_web(db_url: str, home: Path, **env: str) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DOXA_")}
    environ.update(DOXA_DATABASE_URL=db_url, DOXA_HOME=str(home), DOXA_SECRET_KEY="s3cret", **env)
    proc = subprocess.Popen(
        [DOXA, "web", "--host", "127.0.0.1", "--port", str(port)],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_tcp("127.0.0.1", port, timeout=20, proc=proc)
        # The socket listens before the app is built: the first answer means it is all up.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=20) as response:
            assert response.status == 200
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            assert stream is not None
            stream.close()


def test_doxa_web_serves_and_stops_on_sigterm(db_url: str, tmp_path: Path) -> None:
    with doxa_web(db_url, tmp_path, DOXA_WEB_WORKERS="2", DOXA_WEB_THREADS="2") as (proc, port):
        base = f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(f"{base}/healthz", timeout=10) as response:
            assert response.status == 200 and response.read() == b'{"status":"ok"}\n'
        with urllib.request.urlopen(f"{base}/", timeout=10) as response:
            page = response.read().decode()
            assert response.status == 200 and '<html lang="vi">' in page
            assert response.headers["Content-Security-Policy"].startswith("default-src 'self'")
        with urllib.request.urlopen(f"{base}/static/style.css", timeout=10) as response:
            assert response.status == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert proc.stderr is not None
        assert f"serving the site on http://127.0.0.1:{port}/ (2 process(es) × 2 thread(s))" in (
            proc.stderr.read().decode()
        )
        assert not children_of(proc.pid)  # the workers are gone too


def children_of(pid: int) -> list[int]:
    found = []
    for task in (
        Path(f"/proc/{pid}/task").glob("*/children") if Path(f"/proc/{pid}").exists() else ()
    ):
        found += [int(child) for child in task.read_text().split()]
    return found


def test_workers_and_threads_come_from_the_settings(db_url: str, tmp_path: Path) -> None:
    """DOXA_WEB_WORKERS processes, each with its own pool of DOXA_WEB_THREADS connections:
    3 workers of 1 thread hold 3 connections to the database."""
    with doxa_web(db_url, tmp_path, DOXA_WEB_WORKERS="3", DOXA_WEB_THREADS="1") as (proc, _):
        deadline = time.monotonic() + 20
        with psycopg.connect(db_url, autocommit=True) as conn:
            while True:
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
                ).fetchone()
                workers = children_of(proc.pid)
                if (row and row[0] == 3 and len(workers) == 3) or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
        assert row is not None and (row[0], len(workers)) == (3, 3)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0


def test_doxa_web_needs_a_secret_key(doxa: Callable[..., object], db_url: str) -> None:
    result = doxa("web", "--port", "0", env={"DOXA_DATABASE_URL": db_url})
    assert result.code == 2  # type: ignore[attr-defined]
    assert "DOXA_SECRET_KEY" in result.err and "Traceback" not in result.err  # type: ignore[attr-defined]


def test_doxa_web_reports_a_busy_port(doxa: Callable[..., object], db_url: str) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = doxa(
            "web",
            "--port",
            str(port),
            env={"DOXA_DATABASE_URL": db_url, "DOXA_SECRET_KEY": "x"},
        )
    assert result.code == 1  # type: ignore[attr-defined]
    assert f"cannot listen on 127.0.0.1:{port}" in result.err  # type: ignore[attr-defined]


def _lookup(port: int, code: str, serial: str) -> int:
    """The lookup form as a browser fills it, each request on a new connection (so any of the
    workers may take it): the status of the POST."""
    return _lookup_answer(port, code, serial)[0]


def _lookup_answer(port: int, code: str, serial: str) -> tuple[int, str]:
    """The lookup form's POST over HTTP: its status and the session cookie it sets."""
    import http.client
    import re

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/")
    response = conn.getresponse()
    page = response.read().decode()
    cookie = response.headers["Set-Cookie"].split(";", 1)[0]
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token is not None
    conn.close()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    body = f"csrf_token={token[1]}&customer_code={code}&meter_serial={serial}"
    conn.request(
        "POST",
        "/",
        body=body,
        headers={"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"},
    )
    response = conn.getresponse()
    response.read()
    conn.close()
    return response.status, (response.headers["Set-Cookie"] or "").split(";", 1)[0]


def test_workers_share_the_lookup_rate_limit(db_url: str, tmp_path: Path) -> None:
    """The lookup limit per client address (20 a minute) holds across the processes: the
    counters are rows of rate_limits, not memory of one worker."""
    with doxa_web(db_url, tmp_path, DOXA_WEB_WORKERS="3", DOXA_WEB_THREADS="2") as (_, port):
        statuses = [_lookup(port, f"PB0101{n:07d}", "NO-SUCH") for n in range(21)]
        assert statuses == [400] * 20 + [429]
        with psycopg.connect(db_url) as conn:
            counters = conn.execute(
                "SELECT hits FROM rate_limits WHERE expires_at > now() ORDER BY hits DESC"
            ).fetchall()
        # The address's window holds its failures: the refused attempt was not tried, and its
        # count was given back.
        assert counters[0][0] == 20


def _session(port: int, code: str, serial: str) -> str:
    """Sign in with the lookup form over HTTP; the session cookie it sets."""
    status, cookie = _lookup_answer(port, code, serial)
    assert status == 302, status
    return cookie


def test_any_stored_value_gives_a_page_not_a_500(db_url: str, tmp_path: Path) -> None:
    """Issue 20, finding 4: a finite but absurd register (1.7e308 kWh, a jump of 10^300, the
    largest double) or one that is not a number at all, stored however it got in: every meter
    page answers 200 over HTTP from a real doxa web, the absurd days shown unknown."""
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC)
    hour = timedelta(hours=1)
    normal = [(now - (72 - k) * hour, 1000.0 + k) for k in range(70)]
    cases = {
        "ABSURD-LATEST": [*normal, (now - hour, 1.7e308)],
        "ABSURD-SPIKE": [*normal[:40], (normal[40][0], 1e300), *normal[41:]],
        "LARGEST-DOUBLE": [(ts, 1.7976931348623157e308) for ts, _ in normal],
        "HUGE-NEGATIVE": [(ts, -1.7e308 + k) for k, (ts, _) in enumerate(normal)],
        "NOT-A-NUMBER": [*normal, (now - hour, float("nan")), (now - hour / 2, float("inf"))],
    }
    with psycopg.connect(db_url, autocommit=True) as db:
        customer = db.execute(
            "INSERT INTO customers (code, name, reading_day) VALUES ('PB01010099999', 'An', 15)"
            " RETURNING id"
        ).fetchone()
        assert customer is not None
        for serial, rows in cases.items():
            meter = db.execute(
                "INSERT INTO meters (serial, customer_id, protocol) VALUES (%s, %s, 'mqtt')"
                " RETURNING id",
                (serial, customer[0]),
            ).fetchone()
            assert meter is not None
            db.cursor().executemany(
                "INSERT INTO readings (meter_id, ts, energy_import_kwh, source)"
                " VALUES (%s, %s, %s, 'mqtt')",
                [(meter[0], ts, kwh) for ts, kwh in rows],
            )
    import http.client

    with doxa_web(db_url, tmp_path, DOXA_WEB_WORKERS="1", DOXA_WEB_THREADS="2") as (_, port):
        cookie = _session(port, "PB01010099999", "ABSURD-LATEST")
        for serial in cases:
            for path in (f"/meters/{serial}", f"/meters/{serial}?days=90"):
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
                conn.request("GET", path, headers={"Cookie": cookie})
                response = conn.getresponse()
                page = response.read().decode()
                conn.close()
                assert response.status == 200, (path, response.status)
                assert f"<strong>{serial}</strong>" in page and "<svg" in page
