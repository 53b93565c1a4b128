"""In headless Chromium: billing staff work the validation exception queue (contract §12) on a
simulated fleet with known faults: filter by rule and province, open an exception and see the
meter's chart, edit a reading and see both its values in the history, estimate a gap, accept
one and accept a rule's exceptions of an area at once; /ops counts open exceptions per
province; every action is in the audit log."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date, timedelta

import psycopg
import pytest
from conftest import ARTIFACTS
from flask import Flask
from test_staff_helpers import PASSWORD, add_staff, app_factory

from simulators.modbus import ModbusFleet
from tests.vee_fleet import HCM, insert_fleet, insert_history, local
from vee.validate import validate_range

pytestmark = [pytest.mark.db, pytest.mark.browser]
NOW = local(2026, 11, 8, 0.5)


@pytest.fixture
def make_app(db_url: str) -> Iterator[Callable[..., Flask]]:
    yield from app_factory(db_url)


def _fleet(db: psycopg.Connection) -> tuple[ModbusFleet, list[str]]:
    fleet = ModbusFleet(meters=6, gateways=1, seed=14, models=("sdm120",))
    s = [m.serial for m in fleet.meters]
    fleet.inject_spike(s[0], local(2026, 11, 4, 19.2), 30.0)
    fleet.inject_gap(s[1], local(2026, 11, 4, 8), local(2026, 11, 4, 14))
    fleet.inject_gap(s[2], local(2026, 11, 5, 8), local(2026, 11, 5, 10))
    ids = insert_fleet(db, fleet)
    insert_history(db, fleet, ids, local(2026, 10, 20), local(2026, 11, 8, 1))
    validate_range(db, date(2026, 11, 1), date(2026, 11, 7), NOW, HCM)
    return fleet, s


def test_billing_staff_work_the_exception_queue(
    db, make_app, live_server, browser_page, external_requests
) -> None:
    fleet, s = _fleet(db)
    add_staff(db, "lan", "billing")
    base = live_server(make_app(CLOCK=lambda: NOW))
    page = browser_page
    page.goto(f"{base}/staff/exceptions")
    page.fill("#username", "lan")
    page.fill("#password", PASSWORD)
    page.locator("main form button[type=submit]").click()
    page.wait_for_url(f"{base}/staff/exceptions")
    assert page.locator("#exceptions tbody tr").count() == 3

    page.select_option("#rule", "spike")
    page.locator("#filter button[type=submit]").click()
    page.wait_for_url("**rule=spike**")
    rows = page.locator("#exceptions tbody tr")
    assert rows.count() == 1
    assert "23.0 kW a sdm120 can count" in rows.first.inner_text()
    rows.first.locator("a").click()
    page.locator("#exception-chart").wait_for()
    assert "19:00" in page.locator('#exception [data-field="reason"]').inner_text()
    # The spike's reading: corrected to what the meter would have read without it.
    spike_ts = local(2026, 11, 4, 19.5)
    truth = fleet.reading(s[0], spike_ts).energy_import_kwh - 30.0
    stored = page.locator('#readings tr[data-ts="2026-11-04T19:30"] [data-field="kwh"]')
    before = float(stored.inner_text())
    page.fill("#edit-ts", "2026-11-04T19:30")
    page.fill("#edit-kwh", f"{truth:.3f}")
    page.fill("#edit-reason", "spike: meter photo shows the true register")
    page.locator("#edit button[type=submit]").click()
    page.locator(".flash, [role=status], main").first.wait_for()
    versions = page.locator('#readings tr[data-ts="2026-11-04T19:30"] [data-field="versions"] li')
    versions.first.wait_for()
    assert versions.count() == 2
    first, second = versions.nth(0).inner_text(), versions.nth(1).inner_text()
    assert f"v1: {before}" in first and "(actual)" in first and "backfill" in first
    assert f"v2: {round(truth, 3)}" in second and "(edited)" in second and "lan" in second
    assert "meter photo" in second
    quality = page.locator('#readings tr[data-ts="2026-11-04T19:30"] [data-field="quality"]')
    assert quality.inner_text() == "edited"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "staff_exception.png"), full_page=True)

    # Accept it with a reason: it leaves the queue.
    page.fill("#accept-reason", "corrected from the meter photo")
    page.locator("#accept button[type=submit]").click()
    page.wait_for_url(f"{base}/staff/exceptions")
    assert page.locator("#exceptions tbody tr").count() == 2

    # Estimate the long gap from its page; validation then finds nothing there.
    page.select_option("#rule", "gap")
    page.locator("#filter button[type=submit]").click()
    page.wait_for_url("**rule=gap**")
    page.locator(f'#exceptions tr:has-text("{s[1]}") a').click()
    page.locator("#estimate button[type=submit]").click()
    page.locator('#readings tr[data-ts="2026-11-04T10:00"] [data-field="quality"]').wait_for()
    assert (
        page.locator('#readings tr[data-ts="2026-11-04T10:00"] [data-field="quality"]').inner_text()
        == "estimated"
    )
    counts = validate_range(db, date(2026, 11, 1), date(2026, 11, 7), NOW, HCM)
    assert counts.closed == 1  # the estimated gap
    # Correcting one reading moved the spike: the register still carries the 30 kWh after it.
    assert counts.opened == 1
    moved = db.execute(
        "SELECT rule, ts_from FROM reading_exceptions WHERE state = 'open' AND rule = 'spike'"
    ).fetchall()
    assert moved == [("spike", spike_ts)]

    # Bulk: every open gap of the remaining meter's province.
    province = fleet.meters[2].customer.province
    page.goto(f"{base}/staff/exceptions?rule=gap&province={province}")
    assert page.locator("#exceptions tbody tr").count() == 1
    page.fill("#bulk-reason", "outage of the feeder, known")
    page.locator("#bulk-accept button[type=submit]").click()
    page.locator("#no-exceptions").wait_for()

    open_left = db.execute("SELECT rule FROM reading_exceptions WHERE state = 'open'")
    assert open_left.fetchall() == [("spike",)]
    actions = [
        row[0]
        for row in db.execute(
            "SELECT action FROM audit_log WHERE actor = 'lan' AND action <> 'login' ORDER BY id"
        ).fetchall()
    ]
    assert actions == ["reading.edit", "exception.accept", "readings.estimate", "exception.accept"]


def test_ops_counts_open_exceptions_per_province(db, make_app) -> None:
    fleet, _ = _fleet(db)
    add_staff(db, "thu", "engineer")
    app = make_app(CLOCK=lambda: NOW + timedelta(days=1))
    client = app.test_client()
    from test_staff_helpers import sign_in

    assert sign_in(client, "thu").status_code == 302
    page = client.get("/ops").get_data(as_text=True)
    expected: dict[str, int] = {}
    for m in fleet.meters[:3]:
        expected[m.customer.province] = expected.get(m.customer.province, 0) + 1
    for province, n in expected.items():
        assert (
            f'<tr data-province="{province}"><td>{province}</td>'
            f'<td class="num" data-field="open">{n}</td></tr>'
        ) in page
    # Engineers see the counts, not the queue.
    assert client.get("/staff/exceptions").status_code == 403
