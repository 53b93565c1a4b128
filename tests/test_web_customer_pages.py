"""What the customer sees: latest index, today, the billing month and its projection, charts,
readings with paging, bills with their tier lines, the CSV download, both languages — checked
against readings and bills the tests insert themselves (the clock is frozen at ``NOW``)."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from xml.etree import ElementTree

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient
from test_web_customer_data import (
    NOW,
    ZONE,
    add_bill,
    add_customer,
    add_readings,
    close,
    ensure_tariffs,
    make_app,
    sign_in,
    steady_readings,
)

pytestmark = pytest.mark.db

CODE, SERIAL = "PB01010012345", "SN-0001"
START = datetime(2025, 3, 12, tzinfo=ZONE)  # readings every 30 min from here up to NOW


@pytest.fixture
def app(db_url: str) -> Iterator[Flask]:
    site = make_app(db_url)
    yield site
    close(site)


@pytest.fixture
def meter(db: psycopg.Connection) -> tuple[int, int]:
    """A customer whose register grows 0.25 kWh an hour (6 kWh a day) since 12 March."""
    ensure_tariffs(db)
    ids = add_customer(db, CODE, SERIAL)
    add_readings(db, ids[1], steady_readings(START, NOW, timedelta(minutes=30), 1000, 0.25))
    return ids


def signed_in(app: Flask, code: str = CODE, serial: str = SERIAL) -> FlaskClient:
    client = app.test_client()
    assert sign_in(client, code, serial).status_code == 302
    return client


def text(html: str) -> str:
    """The visible text of a page, whitespace collapsed."""
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def by_id(html: str, element_id: str) -> str:
    """The text of the element with that id (up to its section's end: enough for the stats)."""
    start = html.index(f'id="{element_id}"')
    return text(html[start : html.index("</div>", start)])


def test_meter_page_figures_in_vietnamese(app: Flask, meter: tuple[int, int]) -> None:
    html = signed_in(app).get(f"/meters/{SERIAL}").get_data(as_text=True)
    assert '<html lang="vi">' in html
    # Last reading 09:30 today: 1000 + (100 days × 24 + 9.5 h) × 0.25 = 1602.375 kWh.
    latest = by_id(html, "latest-index")
    assert "1.602,38 kWh" in latest and "20/06/2025 09:30" in latest
    assert "2,38 kWh" in by_id(html, "today")  # 9.5 h × 0.25
    period = by_id(html, "this-period")
    assert "32,38 kWh" in period  # since 15/06 00:00: 129.5 h × 0.25
    assert "15/06/2025" in period and "15/07/2025" in period
    projection = by_id(html, "projection")
    assert "180 kWh" in projection  # 32.375 × 720 h / 129.5 h
    assert "Đạt bậc 3 (101–200 kWh), giá 2.380 ₫/kWh" in projection


def test_daily_and_monthly_series(app: Flask, meter: tuple[int, int]) -> None:
    client = signed_in(app)
    html = client.get(f"/meters/{SERIAL}").get_data(as_text=True)
    page = text(html)
    # Every full day 24 h × 0.25 = 6 kWh; the last 30 days are shown, today partial.
    assert page.count("6,00 kWh") >= 29 * 2  # table + tooltip for each full day
    assert "19/06/2025 6,00 kWh" in page and "21/05/2025" not in page.split("Show the")[0]
    # Billing months (reading day 15): 15/05–15/06 is 31 days = 186 kWh, named 06/2025.
    assert "06/2025 186,00 kWh" in page and "05/2025 180,00 kWh" in page
    assert "07/2025 32,38 kWh" in page
    # Before 12 March there is no data: no value rather than a wrong one.
    assert "03/2025 –" in page
    html90 = client.get(f"/meters/{SERIAL}?days=90").get_data(as_text=True)
    assert 'id="daily-90"' in html90 and "23/03/2025" in text(html90)


def test_charts_are_inline_svg(app: Flask, meter: tuple[int, int]) -> None:
    html = signed_in(app).get(f"/meters/{SERIAL}").get_data(as_text=True)
    for chart_id, bars in (("daily-30", 30), ("monthly", 4)):
        start = html.index(f'<svg class="chart" id="{chart_id}"')
        svg = ElementTree.fromstring(html[start : html.index("</svg>", start) + 6])
        rects = svg.findall(".//{http://www.w3.org/2000/svg}rect[@class]")
        drawn = [r for r in rects if r.get("class", "").startswith("bar")]
        assert len(drawn) == bars
        assert svg.get("role") == "img"
    # Nothing on the page points outside the server.
    assert not re.search(r'(src|href)="(https?:)?//', html)


def test_multiplier_applies_to_consumption(app: Flask, db: psycopg.Connection) -> None:
    ensure_tariffs(db)
    _, meter_id = add_customer(db, "PB01010054321", "CT-40", multiplier=40)
    add_readings(
        db, meter_id, steady_readings(NOW - timedelta(days=10), NOW, timedelta(hours=1), 10, 0.01)
    )
    html = signed_in(app, "PB01010054321", "CT-40").get("/meters/CT-40").get_data(as_text=True)
    assert "9,60 kWh" in text(html)  # a full day: 24 × 0.01 × 40
    assert "×40" in html


def test_gap_and_estimated_readings_are_marked(app: Flask, db: psycopg.Connection) -> None:
    _, meter_id = add_customer(db, CODE, SERIAL)
    rows = steady_readings(NOW - timedelta(days=10), NOW, timedelta(minutes=30), 0, 1)
    gap_start, gap_end = datetime(2025, 6, 16, 12, tzinfo=ZONE), datetime(2025, 6, 18, tzinfo=ZONE)
    kept = [r for r in rows if not gap_start <= r[0] < gap_end]
    # The meter estimated two readings itself: at midnight starting the 12th, and at 08:00 on
    # the 13th (inside a day: it does not change that day's consumption).
    flagged = {datetime(2025, 6, 12, tzinfo=ZONE), datetime(2025, 6, 13, 8, tzinfo=ZONE)}
    kept = [(ts, kwh, "estimated" if ts in flagged else q) for ts, kwh, q in kept]
    add_readings(db, meter_id, kept)
    client = signed_in(app)
    page = text(client.get(f"/meters/{SERIAL}").get_data(as_text=True))
    # The gap (12:00 on the 16th to 00:00 on the 18th) is spread evenly: still 24 kWh a day.
    for day in ("16/06/2025", "17/06/2025", "11/06/2025", "12/06/2025"):
        assert f"{day} 24,00 kWh ước tính" in page, day
    for day in ("13/06/2025", "15/06/2025", "18/06/2025"):
        assert f"{day} 24,00 kWh" in page and f"{day} 24,00 kWh ước tính" not in page, day
    readings = client.get(
        f"/meters/{SERIAL}/readings", query_string={"before": "2025-06-13T01:30:00+00:00"}
    ).get_data(as_text=True)
    row = re.search(r'<tr class="estimated">.*?</tr>', readings, re.S)
    assert row and "13/06/2025 08:00" in text(row.group(0)) and "ước tính" in text(row.group(0))


def test_register_reset_adds_both_registers_never_negative(
    app: Flask, db: psycopg.Connection
) -> None:
    """The register falls by 5,000 kWh at 12:00 on the 18th (a reset, as billing detects it):
    the day adds 00:00–11:00 on the old register (11 kWh) and 12:00–24:00 on the new one (12 kWh);
    the hour across the drop is unknown and not counted (contract §10)."""
    _, meter_id = add_customer(db, CODE, SERIAL)
    rows = steady_readings(NOW - timedelta(days=5), NOW, timedelta(hours=1), 5000, 1)
    reset_at = datetime(2025, 6, 18, 12, tzinfo=ZONE)
    rows = [(ts, kwh - 5000 if ts >= reset_at else kwh, q) for ts, kwh, q in rows]
    add_readings(db, meter_id, rows)
    page = text(signed_in(app).get(f"/meters/{SERIAL}").get_data(as_text=True))
    assert "18/06/2025 23,00 kWh" in page
    assert "17/06/2025 24,00 kWh" in page and "19/06/2025 24,00 kWh" in page
    assert "-4" not in page  # no negative consumption anywhere


def test_meter_without_readings(app: Flask, db: psycopg.Connection) -> None:
    add_customer(db, CODE, SERIAL)  # no tariff table either
    response = signed_in(app).get(f"/meters/{SERIAL}")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "Chưa nhận được chỉ số nào." in html
    assert "Có sau ngày đầu tiên của tháng." in html


def test_english_on_request_and_remembered(app: Flask, meter: tuple[int, int]) -> None:
    client = signed_in(app)
    html = client.get(f"/meters/{SERIAL}?lang=en").get_data(as_text=True)
    assert '<html lang="en">' in html
    latest = by_id(html, "latest-index")
    assert "1,602.38 kWh" in latest and "20 Jun 2025 09:30" in latest
    assert "Reaches tier 3 (101–200 kWh) at ₫2,380/kWh." in by_id(html, "projection")
    again = client.get("/bills").get_data(as_text=True)  # no ?lang: remembered
    assert '<html lang="en">' in again and "No bills yet." in again
    back = client.get("/bills?lang=vi").get_data(as_text=True)
    assert '<html lang="vi">' in back and "Chưa có hóa đơn." in back
    # A fresh visitor gets Vietnamese, and the switch link keeps the page's own query.
    fresh = app.test_client().get("/").get_data(as_text=True)
    assert '<html lang="vi">' in fresh and 'href="/?lang=en"' in fresh


def test_bills_list_and_tier_breakdown(app: Flask, db: psycopg.Connection, meter: tuple) -> None:
    lines = [
        {"tier": 1, "width_kwh": 50, "kwh": 50, "price_vnd": 1984},
        {"tier": 2, "width_kwh": 50, "kwh": 50, "price_vnd": 2050},
        {"tier": 3, "width_kwh": 100, "kwh": 86, "price_vnd": 2380},
        {"tier": 4, "width_kwh": 100, "kwh": 0, "price_vnd": 2998},
        {"tier": 5, "width_kwh": 100, "kwh": 0, "price_vnd": 3350},
        {"tier": 6, "width_kwh": None, "kwh": 0, "price_vnd": 3460},
    ]
    bill_id = add_bill(db, *meter, "2025-06", lines=lines)
    add_bill(db, *meter, "2025-05", lines=lines[:3], estimated=True)
    client = signed_in(app)
    listing = text(client.get("/bills").get_data(as_text=True))
    # 50×1984 + 50×2050 + 86×2380 = 406,380; VAT 8% = 32,510.4 → 32,510; total 438,890.
    assert "06/2025 chính thức SN-0001 15/05/2025 – 15/06/2025 186 kWh 438.890 ₫" in listing
    assert "05/2025 ước tính" in listing
    html = client.get(f"/bills/{bill_id}").get_data(as_text=True)
    rows = [text(m) for m in re.findall(r'<tr class="tier-line">(.*?)</tr>', html, re.S)]
    assert rows == [
        "Bậc 1 0–50 50 1.984 99.200 ₫",
        "Bậc 2 51–100 50 2.050 102.500 ₫",
        "Bậc 3 101–200 86 2.380 204.680 ₫",
        "Bậc 4 201–300 0 2.998 0 ₫",
        "Bậc 5 301–400 0 3.350 0 ₫",
        "Bậc 6 trên 400 0 3.460 0 ₫",
    ]
    page = text(html)
    assert "Thuế GTGT (8 %) 32.510 ₫" in page
    assert by_id(html, "bill-total").endswith("438.890 ₫")
    en = text(client.get(f"/bills/{bill_id}?lang=en").get_data(as_text=True))
    assert "Tier 3 101–200 86 2,380 ₫204,680" in en and "Total ₫438,890" in en


def test_readings_paging_walks_every_reading_once(app: Flask, db: psycopg.Connection) -> None:
    _, meter_id = add_customer(db, CODE, SERIAL)
    rows = steady_readings(NOW - timedelta(days=3), NOW, timedelta(minutes=30), 0, 1)
    add_readings(db, meter_id, rows)
    client = signed_in(app)
    seen: list[str] = []
    url = f"/meters/{SERIAL}/readings?lang=en"
    pages = 0
    while url:
        html = client.get(url).get_data(as_text=True)
        table = html[html.index('id="readings"') :] if 'id="readings"' in html else ""
        seen += re.findall(r"<td>(\d+ \w+ \d{4} \d\d:\d\d)</td>", table)
        older = re.search(r'href="([^"]+)" rel="next"', html)
        url = older.group(1).replace("&amp;", "&") if older else ""
        pages += 1
    assert pages == 3  # 144 readings, 48 a page; the last page offers no older link
    assert len(seen) == len(rows) == len(set(seen))
    expected = [ts.astimezone(ZONE).strftime("%-d %b %Y %H:%M") for ts, _, _ in reversed(rows)]
    assert seen[: len(expected)] == expected
    # And back towards the newest from the second page.
    second = client.get(
        f"/meters/{SERIAL}/readings", query_string={"before": rows[-48][0].isoformat()}
    )
    assert second.status_code == 200
    newer = re.search(r'href="([^"]+)" rel="prev"', second.get_data(as_text=True))
    assert newer
    first_again = client.get(newer.group(1).replace("&amp;", "&")).get_data(as_text=True)
    assert text(first_again).count("Jun 2025") == 48  # the language is remembered: English


def test_download_my_data_csv(app: Flask, db: psycopg.Connection, meter: tuple[int, int]) -> None:
    _, other_meter = add_customer(db, "PE02020067890", "OTHER-1")
    add_readings(db, other_meter, steady_readings(START, NOW, timedelta(hours=1), 0, 1))
    response = signed_in(app).get(f"/meters/{SERIAL}/readings.csv?from=2025-06-01&to=2025-06-02")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0] == [
        "meter_serial", "customer_code", "ts", "energy_import_kwh", "energy_export_kwh",
        "power_w", "voltage_v", "current_a", "quality",
    ]  # fmt: skip
    body = rows[1:]
    assert len(body) == 96  # two local days of 30-minute readings, both days included
    assert {r[0] for r in body} == {SERIAL} and {r[1] for r in body} == {CODE}
    assert body[0][2] == "2025-06-01T00:00:00+07:00" and body[-1][2] == "2025-06-02T23:30:00+07:00"
    first = datetime.fromisoformat(body[0][2])
    expected = 1000 + (first - START).total_seconds() / 3600 * 0.25
    assert float(body[0][3]) == pytest.approx(expected)
    assert body[0][4] == "" and float(body[0][5]) == 850.0 and body[0][8] == "actual"
    with db.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM readings WHERE meter_id = %s AND ts >= %s AND ts < %s",
            (meter[1], datetime(2025, 6, 1, tzinfo=ZONE), datetime(2025, 6, 3, tzinfo=ZONE)),
        )
        assert cur.fetchone() == (96,)


def test_pages_use_prepared_statements(db_url: str, meter: tuple[int, int]) -> None:
    app = make_app(db_url, DB_POOL_MIN=1, DB_POOL_MAX=1)
    try:
        client = signed_in(app)
        assert client.get(f"/meters/{SERIAL}").status_code == 200
        with app.app_context():
            from lookup_web import db

            with db.connection() as conn:
                statements = [
                    r[0]
                    for r in conn.execute("SELECT statement FROM pg_prepared_statements").fetchall()
                ]
        reading_queries = [s for s in statements if "FROM readings" in s]
        # The latest reading and the index lookups (days and billing months share one).
        assert any("ORDER BY ts DESC LIMIT 1" in s and "LATERAL" not in s for s in reading_queries)
        assert any("LATERAL" in s for s in reading_queries)
    finally:
        close(app)


def test_time_is_read_in_the_site_zone(db_url: str, db: psycopg.Connection) -> None:
    """A UTC reading at 18:00 is 01:00 the next day in Ho Chi Minh City."""
    _, meter_id = add_customer(db, CODE, SERIAL)
    add_readings(db, meter_id, [(datetime(2025, 6, 19, 18, tzinfo=UTC), 42.0, "actual")])
    app = make_app(db_url)
    try:
        html = signed_in(app).get(f"/meters/{SERIAL}").get_data(as_text=True)
        assert "20/06/2025 01:00" in by_id(html, "latest-index")
    finally:
        close(app)
