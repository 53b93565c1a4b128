"""Helpers for the customer-site tests: insert customers, meters, readings, tariffs and bills
straight into a test database, and sign a Flask test client in. (No tests in this module.)"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from flask import Flask
from flask.testing import FlaskClient

import lookup_web
from lookup_web import create_app

ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
# The tests' "now": 20 June 2025, 10:00 in Ho Chi Minh City. With reading day 15 the current
# billing month runs from 15 June to 15 July.
NOW = datetime(2025, 6, 20, 10, 0, tzinfo=ZONE)

TARIFFS = (
    (date(2024, 10, 11), (1893, 1956, 2271, 2860, 3197, 3302)),
    (date(2025, 5, 10), (1984, 2050, 2380, 2998, 3350, 3460)),
)
WIDTHS = (50, 50, 100, 100, 100, None)


def make_app(db_url: str, **config: Any) -> Flask:
    """The site on the test database, its clock frozen at ``NOW`` unless told otherwise."""
    settings = {
        "DATABASE_URL": db_url,
        "TESTING": True,
        "SECRET_KEY": "test-secret",
        "CLOCK": lambda: NOW,
        **config,
    }
    return create_app(settings)


def close(app: Flask) -> None:
    lookup_web.close(app)


def add_customer(
    db: psycopg.Connection,
    code: str,
    serial: str,
    *,
    name: str = "Nguyễn Văn An",
    reading_day: int = 15,
    multiplier: float = 1,
) -> tuple[int, int]:
    """A residential customer with one MQTT meter; returns (customer id, meter id)."""
    row = db.execute(
        "INSERT INTO customers (code, name, address, province, reading_day)"
        " VALUES (%s, %s, '12 Lê Lợi, Quận 1', 'Hồ Chí Minh', %s)"
        " ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name RETURNING id",
        (code, name, reading_day),
    ).fetchone()
    assert row is not None
    customer_id = row[0]
    meter = db.execute(
        "INSERT INTO meters (serial, customer_id, protocol, multiplier)"
        " VALUES (%s, %s, 'mqtt', %s) RETURNING id",
        (serial, customer_id, multiplier),
    ).fetchone()
    assert meter is not None
    return customer_id, meter[0]


def add_readings(
    db: psycopg.Connection, meter_id: int, rows: Iterable[tuple[datetime, float, str]]
) -> None:
    """Readings as (time, import register kWh, quality)."""
    with db.cursor().copy(
        "COPY readings (meter_id, ts, energy_import_kwh, power_w, voltage_v, current_a,"
        " quality, source) FROM STDIN"
    ) as copy:
        for ts, kwh, quality in rows:
            copy.write_row((meter_id, ts, kwh, 850.0, 229.8, 3.9, quality, "mqtt"))


def steady_readings(
    start: datetime, end: datetime, step: timedelta, start_kwh: float, kwh_per_hour: float
) -> list[tuple[datetime, float, str]]:
    """Readings every ``step`` in [start, end) of a register growing at a steady rate."""
    out = []
    ts = start
    while ts < end:
        hours = (ts - start).total_seconds() / 3600
        out.append((ts, round(start_kwh + hours * kwh_per_hour, 6), "actual"))
        ts += step
    return out


def ensure_tariffs(db: psycopg.Connection) -> None:
    """The contract's residential tables, unless a migration already seeded them."""
    for effective_from, prices in TARIFFS:
        row = db.execute(
            "INSERT INTO tariff_tables (tariff_group, effective_from, source)"
            " VALUES ('residential', %s, 'test') ON CONFLICT DO NOTHING RETURNING id",
            (effective_from,),
        ).fetchone()
        if row is None:
            continue
        for tier, (width, price) in enumerate(zip(WIDTHS, prices, strict=True), start=1):
            db.execute(
                "INSERT INTO tariff_tiers (tariff_id, tier, width_kwh, price_vnd)"
                " VALUES (%s, %s, %s, %s)",
                (row[0], tier, width, price),
            )


def add_bill(
    db: psycopg.Connection,
    customer_id: int,
    meter_id: int,
    period: str,
    *,
    lines: list[dict[str, Any]],
    vat_rate: str = "0.08",
    estimated: bool = False,
    status: str = "issued",
) -> int:
    """A one-part bill whose amounts follow from ``lines`` (tier, width_kwh, kwh, price_vnd);
    ``status`` draft or issued (an issued bill cannot be changed afterwards)."""
    year, month = (int(x) for x in period.split("-"))
    end = date(year, month, 15)
    start = date(year - (month == 1), (month - 2) % 12 + 1, 15)
    days = (end - start).days
    full_lines = [{**line, "amount_vnd": line["kwh"] * line["price_vnd"]} for line in lines]
    amount = sum(line["amount_vnd"] for line in full_lines)
    vat = int((amount * int(float(vat_rate) * 100) + 50) // 100)
    kwh = sum(line["kwh"] for line in lines)
    breakdown = {
        "parts": [
            {
                "start": start.isoformat(),
                "end": end.isoformat(),
                "days": days,
                "consumption_kwh": kwh,
                "tariff_effective_from": "2025-05-10",
                "vat_rate": vat_rate,
                "lines": full_lines,
                "amount_vnd": amount,
                "vat_vnd": vat,
                "total_vnd": amount + vat,
            }
        ],
        "segments": [],
        "estimated": estimated,
    }
    row = db.execute(
        "INSERT INTO bills (customer_id, meter_id, period, period_start, period_end, days,"
        " start_index_kwh, end_index_kwh, consumption_kwh, amount_vnd, vat_vnd, total_vnd,"
        " estimated, status, breakdown)"
        " VALUES (%s, %s, %s, %s, %s, %s, 1000, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (
            customer_id,
            meter_id,
            period,
            start,
            end,
            days,
            1000 + kwh,
            kwh,
            amount,
            vat,
            amount + vat,
            estimated,
            status,
            json.dumps(breakdown),
        ),
    ).fetchone()
    assert row is not None
    return int(row[0])


_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_token(client: FlaskClient, path: str = "/") -> str:
    page = client.get(path)
    match = _TOKEN.search(page.get_data(as_text=True))
    assert match, "the page has no CSRF token"
    return match.group(1)


def sign_in(client: FlaskClient, code: str, serial: str, **environ: Any) -> Any:
    """Post the lookup form as a browser would (token from the form); returns the response."""
    token = csrf_token(client)
    return client.post(
        "/",
        data={"csrf_token": token, "customer_code": code, "meter_serial": serial},
        environ_base=environ,
    )


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)
