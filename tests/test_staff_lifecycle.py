"""The staff actions of /staff/meters and /staff/bills (contract §11): replace, decommission and
change of owner through the site, each audited under the staff user's name; refusals come back
as a message, never an error page; the pages are Vietnamese first."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import psycopg
import pytest
from flask import Flask
from test_staff_helpers import (
    add_customer,
    add_meter,
    add_staff,
    app_factory,
    csrf_token,
    signed_in_client,
)

pytestmark = pytest.mark.db


@pytest.fixture
def make_app(db_url: str) -> Iterator[Callable[..., Flask]]:
    yield from app_factory(db_url)


def test_billing_staff_replace_decommission_and_transfer_through_the_site(
    db: psycopg.Connection, make_app
) -> None:
    customer = add_customer(db, "PB0101000301", name="Nguyễn Văn A")
    add_meter(db, customer, "SW-OLD", unit_id=7)
    add_meter(db, customer, "SW-GONE", unit_id=8)
    db.execute(
        "UPDATE meters SET framing = 'rtu-over-tcp', request_delay_ms = 20 WHERE serial = 'SW-OLD'"
    )
    add_staff(db, "lan", "billing")
    client = signed_in_client(make_app(), "lan")
    page = client.get("/staff/meters").get_data(as_text=True)
    assert '<html lang="vi">' in page and "Thay công tơ" in page
    token = csrf_token(client, "/staff/meters")
    version = db.execute("SELECT version FROM inventory_version").fetchone()[0]

    replaced = client.post("/staff/meters/replace", data={
        "csrf_token": token, "old_serial": "SW-OLD", "new_serial": "SW-NEW",
        "at": "2025-08-20T12:00", "old_final_kwh": "1080,5", "new_start_kwh": "0",
        "note": "WO-9"}, follow_redirects=True)  # fmt: skip
    assert "Công tơ SW-OLD đã được thay bằng SW-NEW." in replaced.get_data(as_text=True)
    # Same gateway, unit id and gateway options as the old one, which no longer holds the address.
    assert db.execute(
        "SELECT host, port, unit_id, framing, request_delay_ms, installed_at IS NOT NULL"
        " FROM meters WHERE serial = 'SW-NEW'"
    ).fetchone() == ("10.0.0.1", 502, 7, "rtu-over-tcp", 20, True)
    assert db.execute("SELECT old_final_kwh, new_start_kwh, note FROM meter_resets").fetchone() == (
        1080.5,
        0.0,
        "WO-9",
    )

    gone = client.post("/staff/meters/decommission", data={
        "csrf_token": token, "serial": "SW-GONE", "at": "2025-08-21T00:00",
        "final_kwh": ""}, follow_redirects=True)  # fmt: skip
    assert "Công tơ SW-GONE đã ngừng sử dụng." in gone.get_data(as_text=True)
    transferred = client.post("/staff/customers/transfer", data={
        "csrf_token": token, "code": "pb0101000301", "name": "Trần Thị B",
        "at": "2025-09-01", "note": "hợp đồng mua bán"}, follow_redirects=True)  # fmt: skip
    assert "Tài khoản PB0101000301 đã chuyển sang chủ mới." in transferred.get_data(as_text=True)
    assert db.execute("SELECT name FROM customers").fetchone() == ("Trần Thị B",)

    actions = db.execute(
        "SELECT action, actor FROM audit_log WHERE action LIKE 'meter.%' OR"
        " action = 'customer.transfer' ORDER BY id"
    ).fetchall()
    assert actions == [
        ("meter.replace", "lan"),
        ("meter.decommission", "lan"),
        ("customer.transfer", "lan"),
    ]
    assert db.execute("SELECT version FROM inventory_version").fetchone()[0] == version + 2
    recent = client.get("/staff/meters").get_data(as_text=True)
    assert "meter.replace" in recent and "SW-OLD" in recent

    # Refused: a message on the page, nothing changed.
    again = client.post("/staff/meters/decommission", data={
        "csrf_token": token, "serial": "SW-GONE", "at": "2025-08-22T00:00"},
        follow_redirects=True)  # fmt: skip
    assert again.status_code == 200
    assert "Chưa thực hiện: meter SW-GONE was already retired" in again.get_data(as_text=True)
    bad = client.post("/staff/meters/replace", data={
        "csrf_token": token, "old_serial": "SW-NEW", "new_serial": "X", "at": "soon",
        "old_final_kwh": "1"}, follow_redirects=True)  # fmt: skip
    assert "YYYY-MM-DDTHH:MM" in bad.get_data(as_text=True)
    assert db.execute("SELECT count(*) FROM meters").fetchone() == (3,)


def test_engineers_cannot_change_meters_or_bills(db: psycopg.Connection, make_app) -> None:
    add_staff(db, "minh", "engineer")
    client = signed_in_client(make_app(), "minh")
    assert client.get("/staff/meters").status_code == 403
    assert client.get("/staff/bills").status_code == 403
