"""Hostile input against a real ``doxa web`` (gunicorn, the database's rate-limit counters):
redirects after sign-in, security headers on every kind of response, out-of-range API and
export parameters, and the audit of API reads and of exports cut short (issue 20, findings 1,
11, 12 and 13)."""

from __future__ import annotations

import http.client
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from urllib.parse import quote, urlencode

import psycopg
import pytest
from test_staff_helpers import PASSWORD, add_customer, add_meter, add_staff
from test_web_customer_cli import doxa_web
from test_web_http_support import WebClient

import exports
from schema import users

pytestmark = pytest.mark.db


@pytest.fixture
def site(db_url: str, tmp_path: Path) -> Iterator[int]:
    """``doxa web`` on the test's database, believing one proxy's X-Forwarded-For."""
    with doxa_web(db_url, tmp_path, DOXA_WEB_PROXIES="1", DOXA_WEB_WORKERS="1") as (_, port):
        yield port


# -- finding 1: the redirect after sign-in stays on the site ------------------------------------

HOSTILE_NEXT = [
    "/\t/evil.example/x",  # the finding: browsers drop the tab and go to //evil.example/x
    "/\n/evil.example/x",  # the finding: a 500 (a newline in the Location header)
    "/\r\nSet-Cookie: x=1",
    "/\x00/evil.example",
    "//evil.example/x",
    "///evil.example/x",
    "/\\evil.example/x",
    "\\\\evil.example/x",
    "https://evil.example/x",
    "http:evil.example",
    "javascript:alert(1)",
    " //evil.example/x",
    "\t//evil.example/x",
    "/\u200b/evil.example",  # a zero-width space (format character)
    "evil.example/x",
    "",
]


def test_next_after_sign_in_never_leaves_the_site(db: psycopg.Connection, site: int) -> None:
    add_staff(db, "lan", "billing")
    for target in HOSTILE_NEXT:
        client = WebClient(site)
        reply = client.sign_in("lan", PASSWORD, next_url=target or None)
        assert reply.status == 302, (target, reply.status)
        assert reply.location == "/staff/", (target, reply.location)
        # Signed in already, the sign-in page sends the visitor on the same way.
        again = client.get("/staff/login?" + urlencode({"next": target}))
        assert (again.status, again.location) == (302, "/staff/"), target

    # Paths of the site are kept, query included; other characters are percent-encoded.
    for target, expected in [
        ("/ops?x=1&y=2", "/ops?x=1&y=2"),
        ("/staff/exports", "/staff/exports"),
        ("/meters/Đồng hồ", "/meters/%C4%90%E1%BB%93ng%20h%E1%BB%93"),
    ]:
        reply = WebClient(site).sign_in("lan", PASSWORD, next_url=target)
        assert (reply.status, reply.location) == (302, expected), target


# -- finding 12: the security headers on every kind of response ---------------------------------


def _assert_secure_headers(reply, what: str) -> None:  # type: ignore[no-untyped-def]
    headers = reply.headers
    csp = headers.get("Content-Security-Policy", "")
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp, (what, csp)
    assert "script-src 'none'" in csp and "object-src 'none'" in csp, (what, csp)
    assert headers.get("X-Frame-Options") == "DENY", what
    assert headers.get("X-Content-Type-Options") == "nosniff", what
    assert headers.get("Referrer-Policy") == "same-origin", what
    assert headers.get("Cache-Control") == "no-store", what


def test_security_headers_on_staff_ops_api_and_error_responses(
    db: psycopg.Connection, site: int
) -> None:
    user = add_staff(db, "minh", "engineer")
    token = users.create_token(db, user.id, "headers")
    anonymous = WebClient(site)
    for path in ("/", "/staff/login", "/staff/", "/ops", "/healthz", "/no-such-page"):
        _assert_secure_headers(anonymous.get(path), path)
    staff = WebClient(site)
    assert staff.sign_in("minh", PASSWORD).status == 302
    for path in ("/staff/", "/staff/exports", "/staff/tokens", "/ops", "/api/v1/collectors"):
        reply = staff.get(path)
        assert reply.status == 200, path
        _assert_secure_headers(reply, path)
    auth = {"Authorization": f"Bearer {token}"}
    for path in ("/api/v1/collectors", "/api/v1/meters/stale", "/api/v1/openapi.json"):
        reply = anonymous.get(path, headers=auth)
        assert reply.status == 200, path
        _assert_secure_headers(reply, path)
    _assert_secure_headers(anonymous.get("/api/v1/collectors"), "API 401")
    _assert_secure_headers(
        anonymous.get("/api/v1/meters/x/readings?from=x", headers=auth), "API 400"
    )
    # Static files may be cached, but are still not to be sniffed or framed.
    style = anonymous.get("/static/style.css")
    assert style.status == 200 and style.headers.get("Cache-Control") != "no-store"
    assert style.headers.get("X-Content-Type-Options") == "nosniff"


# -- finding 13: out-of-range API and export parameters are 400s naming the range ---------------


def test_hostile_readings_api_parameters_get_400s_naming_the_range(
    db: psycopg.Connection, site: int
) -> None:
    user = add_staff(db, "minh", "engineer")
    customer = add_customer(db, "PB0101000001")
    add_meter(db, customer, "SN-1")
    auth = {"Authorization": f"Bearer {users.create_token(db, user.id)}"}
    client = WebClient(site)
    base = "/api/v1/meters/SN-1/readings?"
    cases = {
        "from=0001-01-01&to=2025-01-01": "1970-01-01",
        "from=2025-01-01&to=9999-12-31": "2200-12-31",
        "from=9999-12-31&to=9999-12-31": "2200-12-31",
        "from=2025-01-01&to=2025-01-02&limit=" + quote("²"): "1 to 10000",
        "from=2025-01-01&to=2025-01-02&limit=" + quote("٣"): "1 to 10000",
        "from=2025-01-01&to=2025-01-02&limit=99999999999999999999": "1 to 10000",
        "from=2025-01-01&to=2025-01-02&after=0001-01-01T00:00:00%2B00:00": "1970-01-01",
        "from=2025-01-01&to=2025-01-02&after=9999-12-31T23:59:59%2B14:00": "2200-12-31",
    }
    for query, named in cases.items():
        reply = client.get(base + query, headers=auth)
        assert reply.status == 400, (query, reply.status, reply.text[:200])
        message = reply.json()["error"]
        assert named in message, (query, message)
    huge = client.get("/api/v1/meters/stale?limit=" + quote("²"), headers=auth)
    assert huge.status == 400 and "1 to 10000" in huge.json()["error"]


def test_hostile_staff_export_dates_get_400s_naming_the_range(
    db: psycopg.Connection, site: int
) -> None:
    add_staff(db, "lan", "billing")
    client = WebClient(site)
    assert client.sign_in("lan", PASSWORD).status == 302

    def export(path: str, **fields: str) -> tuple[int, str]:
        reply = client.post(path, fields, token_from="/staff/exports")
        return reply.status, reply.text

    form = {"readings-fmt": "csv", "readings-date_from": "2025-01-01"}
    status, page = export("/staff/exports/readings", **form, **{"readings-date_to": "9999-12-31"})
    assert status == 400 and "2200-12-31" in page
    status, page = export(
        "/staff/exports/readings",
        **{"readings-fmt": "csv", "readings-date_from": "0001-01-01"},
        **{"readings-date_to": "0001-01-02"},
    )
    assert status == 400 and "1970-01-01" in page
    # The longest range one export may cover (documented in the README).
    status, page = export("/staff/exports/readings", **form, **{"readings-date_to": "2026-02-05"})
    assert status == 400 and "400" in page
    for period in ("0000-01", "9999-12"):
        status, page = export(
            "/staff/exports/closing-indices", **{"closing-fmt": "csv", "closing-period": period}
        )
        assert status == 400 and "2200" in page, period
        status, page = export(
            "/staff/exports/bills", **{"bills-fmt": "csv", "bills-period": period}
        )
        assert status == 400 and "2200" in page, period
    # 400 days is allowed.
    status, _ = export("/staff/exports/readings", **form, **{"readings-date_to": "2026-02-04"})
    assert status == 200


# -- finding 11: API reads are audited; a cut-off export counts the rows it sent ---------------


def test_api_reads_of_readings_are_audited(db: psycopg.Connection, site: int) -> None:
    user = add_staff(db, "minh", "engineer")
    customer = add_customer(db, "PB0101000002")
    meter = add_meter(db, customer, "SN-2")
    db.execute(
        "INSERT INTO readings (meter_id, ts, energy_import_kwh, quality, source)"
        " SELECT %s, t, 100, 'actual', 'mqtt' FROM generate_series("
        " '2025-03-01 00:00+07'::timestamptz, '2025-03-01 02:00+07', '30 minutes') t",
        (meter,),
    )
    auth = {"Authorization": f"Bearer {users.create_token(db, user.id, 'report')}"}
    client = WebClient(site, address="203.0.113.9")
    first = client.get(
        "/api/v1/meters/SN-2/readings?from=2025-03-01&to=2025-03-01&limit=3", headers=auth
    )
    assert first.status == 200 and len(first.json()["readings"]) == 3
    second = client.get(first.json()["next"], headers=auth)
    assert second.status == 200 and len(second.json()["readings"]) == 2
    missing = "/api/v1/meters/NOPE/readings?from=2025-03-01&to=2025-03-01"
    assert client.get(missing, headers=auth).status == 404
    entries = db.execute(
        "SELECT actor, action, detail, row_count FROM audit_log"
        " WHERE action = 'api.readings' ORDER BY id"
    ).fetchall()
    assert [(e[0], e[1], e[3]) for e in entries] == [
        ("minh", "api.readings", 3),
        ("minh", "api.readings", 2),
    ]
    detail = entries[0][2]
    assert detail["meter_serial"] == "SN-2" and detail["customer_code"] == "PB0101000002"
    assert (detail["from"], detail["to"], detail["ip"]) == (
        "2025-03-01",
        "2025-03-01",
        "203.0.113.9",
    )
    assert detail["via"] == "token"
    assert entries[1][2]["after"].startswith("2025-03-01T01:00:00")


TOTAL_ROWS = 120_000


def test_an_export_cut_short_is_logged_with_the_rows_it_sent(
    db: psycopg.Connection, site: int
) -> None:
    add_staff(db, "lan", "billing")
    customer = add_customer(db, "PB0101000003")
    meters = [add_meter(db, customer, f"SN-3-{n}") for n in range(4)]
    db.execute(
        "INSERT INTO readings (meter_id, ts, energy_import_kwh, power_w, voltage_v, current_a,"
        " quality, source)"
        " SELECT m, t, 1000.125, 850.5, 229.75, 3.875, 'actual', 'modbus'"
        " FROM unnest(%s::int[]) m, generate_series('2025-04-01 00:00+07'::timestamptz,"
        " '2025-04-01 00:00+07'::timestamptz + (%s - 1) * interval '1 minute', '1 minute') t",
        (meters, TOTAL_ROWS // len(meters)),
    )
    client = WebClient(site)
    assert client.sign_in("lan", PASSWORD).status == 302
    token = client.csrf("/staff/exports")
    conn = http.client.HTTPConnection("127.0.0.1", site, timeout=30)
    body = urlencode(
        {
            "csrf_token": token,
            "readings-date_from": "2025-04-01",
            "readings-date_to": "2025-05-31",
            "readings-fmt": "csv",
        }
    )
    conn.request(
        "POST",
        "/staff/exports/readings",
        body=body,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": "; ".join(f"{k}={v}" for k, v in client.cookies.items()),
            "X-Forwarded-For": client.address,
            "User-Agent": client.user_agent,
        },
    )
    response = conn.getresponse()
    assert response.status == 200
    received = response.read(700_000)  # a few of the server's 256 KiB chunks of ~10 MB
    assert len(received) == 700_000
    conn.close()  # the client goes away mid-download
    deadline = time.monotonic() + 20
    entry = None
    while entry is None and time.monotonic() < deadline:
        time.sleep(0.1)
        entry = db.execute(
            "SELECT row_count, detail->>'complete' FROM audit_log WHERE action = 'export.readings'"
        ).fetchone()
    assert entry is not None
    rows, complete = entry
    assert complete == "false"
    # At least the rows of the chunks the client got whole, and not all of them.
    assert 0 < rows < TOTAL_ROWS, rows
    lines = received.count(b"\n") - 1
    assert rows >= lines - 256 * 1024 // 60, (rows, lines)


def test_csv_rows_are_counted_chunk_by_chunk(db: psycopg.Connection) -> None:
    """The rows of a chunk count once the consumer has asked for the next one; a stream closed
    at a chunk does not count that chunk."""
    customer = add_customer(db, "PB0101000005")
    meter = add_meter(db, customer, "SN-5")
    db.execute(
        "INSERT INTO readings (meter_id, ts, energy_import_kwh, quality, source)"
        " SELECT %s, t, 5, 'actual', 'modbus' FROM generate_series("
        " '2025-04-01 00:00+07'::timestamptz, '2025-04-01 00:00+07'::timestamptz"
        " + interval '999 minutes', '1 minute') t",
        (meter,),
    )
    spec = exports.readings(date(2025, 4, 1), date(2025, 4, 1), "Asia/Ho_Chi_Minh")
    progress = exports.ExportProgress()
    lines = 0
    for chunk in exports.iter_csv(db, spec, progress, chunk_bytes=4096):
        assert progress.rows == max(lines - 1, 0)
        lines += chunk.count(b"\n")
    assert (progress.rows, progress.complete) == (1000, True) and lines == 1001

    cut = exports.ExportProgress()
    stream = exports.iter_csv(db, spec, cut, chunk_bytes=4096)
    taken = [next(stream) for _ in range(3)]
    stream.close()  # the consumer went away holding the third chunk
    assert cut.rows == sum(c.count(b"\n") for c in taken[:2]) - 1
    assert not cut.complete


def test_a_whole_export_is_logged_with_all_its_rows(db: psycopg.Connection, site: int) -> None:
    add_staff(db, "lan", "billing")
    customer = add_customer(db, "PB0101000004")
    meter = add_meter(db, customer, "SN-4")
    db.execute(
        "INSERT INTO readings (meter_id, ts, energy_import_kwh, quality, source)"
        " SELECT %s, t, 5, 'actual', 'modbus' FROM generate_series("
        " %s::timestamptz, %s::timestamptz, '1 hour') t",
        (meter, datetime(2025, 4, 1, tzinfo=UTC), datetime(2025, 4, 3, 23, tzinfo=UTC)),
    )
    client = WebClient(site)
    assert client.sign_in("lan", PASSWORD).status == 302
    for fmt in ("csv", "xlsx"):
        reply = client.post(
            "/staff/exports/readings",
            {
                "readings-date_from": "2025-04-01",
                "readings-date_to": "2025-04-30",
                "readings-fmt": fmt,
            },
            token_from="/staff/exports",
        )
        assert reply.status == 200
    if_rows = db.execute(
        "SELECT row_count, detail->>'complete', detail->>'format' FROM audit_log"
        " WHERE action = 'export.readings' ORDER BY id"
    ).fetchall()
    expected = db.execute(
        "SELECT count(*) FROM readings WHERE ts >= '2025-04-01 00:00+07'"
    ).fetchone()
    assert expected is not None
    assert if_rows == [(expected[0], "true", "csv"), (expected[0], "true", "xlsx")]
