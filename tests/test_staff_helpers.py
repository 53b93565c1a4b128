"""Helpers and fixtures shared by the staff, ops, export and API tests (no tests here).

They insert customers, meters, readings, bills and staff users straight into the test database,
build the app against it, and sign in through the real form (with its CSRF token).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from datetime import date, datetime
from typing import Any

import psycopg
from flask import Flask
from flask.testing import FlaskClient

import lookup_web
from lookup_web import create_app
from schema import users

PASSWORD = "correct horse battery"
CSRF = re.compile(r'name="(?:[a-z]+-)?csrf_token"[^>]*?value="([^"]+)"')


def app_factory(db_url: str) -> Iterator[Callable[..., Flask]]:
    """For a ``make_app`` fixture: ``make_app(**config)`` builds the site on the test's
    database (login limit raised, CSRF on); the pools are closed afterwards."""
    made: list[Flask] = []

    def build(**config: Any) -> Flask:
        app = create_app(
            {
                "DATABASE_URL": db_url,
                "TESTING": True,
                "DB_POOL_MIN": 0,
                "STAFF_LOGIN_LIMIT": "1000 per minute",
                **config,
            }
        )
        made.append(app)
        return app

    yield build
    for app in made:
        lookup_web.close(app)


def add_customer(
    db: psycopg.Connection,
    code: str,
    province: str = "Bình Dương",
    reading_day: int = 15,
    name: str = "Nguyễn Văn A",
) -> int:
    row = db.execute(
        "INSERT INTO customers (code, name, province, reading_day) VALUES (%s, %s, %s, %s)"
        " RETURNING id",
        (code, name, province, reading_day),
    ).fetchone()
    assert row
    return int(row[0])


def add_meter(
    db: psycopg.Connection,
    customer_id: int,
    serial: str,
    protocol: str = "modbus",
    gateway: tuple[str, int] = ("10.0.0.1", 502),
    unit_id: int | None = None,
    collector_id: str | None = None,
    created_at: datetime | None = None,
) -> int:
    modbus = protocol == "modbus"
    if modbus and unit_id is None:
        count = db.execute("SELECT count(*) FROM meters").fetchone()
        unit_id = int(count[0]) % 247 + 1 if count else 1
    row = db.execute(
        "INSERT INTO meters (serial, customer_id, protocol, model, host, port, unit_id,"
        " collector_id, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s,"
        " coalesce(%s, now())) RETURNING id",
        (
            serial,
            customer_id,
            protocol,
            "sdm120" if modbus else None,
            gateway[0] if modbus else None,
            gateway[1] if modbus else None,
            unit_id if modbus else None,
            collector_id,
            created_at,
        ),
    ).fetchone()
    assert row
    return int(row[0])


READING_COLUMNS = (
    "meter_id",
    "ts",
    "energy_import_kwh",
    "energy_export_kwh",
    "power_w",
    "voltage_v",
    "current_a",
    "quality",
    "source",
)


def add_readings(db: psycopg.Connection, rows: Iterable[tuple[Any, ...]]) -> None:
    """Rows of (meter_id, ts, import, export, power, voltage, current, quality, source)."""
    with (
        db.cursor() as cur,
        cur.copy(f"COPY readings ({', '.join(READING_COLUMNS)}) FROM STDIN") as cp,
    ):
        for row in rows:
            cp.write_row(row)


def add_bill(
    db: psycopg.Connection,
    customer_id: int,
    meter_id: int,
    period: str,
    start: date,
    end: date,
    start_index: str,
    end_index: str,
    consumption: int,
    amount: int,
    estimated: bool = False,
) -> None:
    vat = round(amount * 0.08)
    db.execute(
        "INSERT INTO bills (customer_id, meter_id, period, period_start, period_end, days,"
        " start_index_kwh, end_index_kwh, consumption_kwh, amount_vnd, vat_vnd, total_vnd,"
        " estimated, breakdown) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, '{}')",
        (
            customer_id,
            meter_id,
            period,
            start,
            end,
            (end - start).days,
            start_index,
            end_index,
            consumption,
            amount,
            vat,
            amount + vat,
            estimated,
        ),
    )


def add_staff(db: psycopg.Connection, username: str, *roles: str) -> users.StaffUser:
    return users.add_user(db, username, PASSWORD, roles)


def csrf_token(client: FlaskClient, url: str = "/staff/login") -> str:
    page = client.get(url)
    match = CSRF.search(page.get_data(as_text=True))
    assert match, f"no CSRF token on {url} ({page.status_code})"
    return match[1]


def sign_in(client: FlaskClient, username: str, password: str = PASSWORD) -> Any:
    token = csrf_token(client)
    return client.post(
        "/staff/login",
        data={"csrf_token": token, "username": username, "password": password},
    )


def signed_in_client(app: Flask, username: str) -> FlaskClient:
    client = app.test_client()
    response = sign_in(client, username)
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    return client
