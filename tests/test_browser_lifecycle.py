"""Bill lifecycle in headless Chromium (contract §11): billing staff open a held bill at
/staff/bills, see its readings chart and release it; they correct an issued bill; the customer
then sees issued bills as final, a draft as provisional, and both versions of the correction.
Screenshots go to test-artifacts/."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import psycopg
import pytest
from conftest import ARTIFACTS
from flask import Flask
from test_billing_run import add_meter, add_readings, local
from test_staff_helpers import PASSWORD, add_staff, app_factory

pytestmark = [pytest.mark.db, pytest.mark.browser]

CODE, SERIAL = "PB01010000201", "SN-201"


@pytest.fixture
def make_app(db_url: str) -> Iterator[Callable[..., Flask]]:
    yield from app_factory(db_url)


def test_staff_release_a_held_bill_and_the_customer_sees_final_provisional_and_versions(
    db: psycopg.Connection, db_url: str, doxa, make_app, live_server, browser_page,
    external_requests: list[str],
) -> None:  # fmt: skip
    env = {"DOXA_DATABASE_URL": db_url}
    meter = add_meter(db, CODE, SERIAL, 5)
    db.execute("UPDATE customers SET province = 'Bình Dương'")
    # 2025-08: 100 kWh (issued); 2025-09: 140 kWh, 40 % more (held); 2025-10: 50 kWh (a draft).
    add_readings(db, meter, [(local(2025, 7, 5), 1000.0), (local(2025, 8, 5), 1100.0),
                             (local(2025, 9, 5), 1240.0), (local(2025, 10, 5), 1290.0)])  # fmt: skip
    for period in ("2025-08", "2025-09"):
        assert doxa("bills", "run", "--period", period, env=env).code == 0
        assert doxa("bills", "issue", "--period", period, env=env).code == 0
    assert doxa("bills", "run", "--period", "2025-10", env=env).code == 0
    held_id = db.execute("SELECT id FROM bills WHERE period = '2025-09'").fetchone()[0]
    august = db.execute("SELECT id FROM bills WHERE period = '2025-08'").fetchone()[0]
    add_staff(db, "lan", "billing")
    base = live_server(make_app())
    page = browser_page

    page.goto(f"{base}/staff/bills")
    page.fill("#username", "lan")
    page.fill("#password", PASSWORD)
    page.locator("main form button[type=submit]").click()
    page.wait_for_url(f"{base}/staff/bills")
    assert page.locator("html").get_attribute("lang") == "vi"
    counts = page.locator("#hold-counts tbody tr")
    assert counts.count() == 1 and "Bình Dương" in counts.first.inner_text()
    row = page.locator(f'#held tr[data-bill="{held_id}"]')
    assert row.locator('[data-reason="over_30_percent"]').inner_text() == (
        "Cao hơn 30 % so với hóa đơn đã phát hành trước"
    )
    row.get_by_role("link", name="2025-09").click()
    page.wait_for_url(f"{base}/staff/bills/{held_id}")
    assert page.locator("#bill-status").get_attribute("data-status") == "held"
    # The readings chart: one bar per day of the period (31), drawn from the metering rule.
    assert page.locator("svg#bill-daily rect.bar").count() == 31
    page.screenshot(path=str(ARTIFACTS / "lifecycle-held-bill.png"), full_page=True)
    page.fill("#release-reason", "checked on site: new air conditioner")
    page.get_by_role("button", name="Giải phóng và phát hành").click()
    page.wait_for_url(f"{base}/staff/bills/{held_id}")
    assert page.locator("#bill-status").get_attribute("data-status") == "issued"
    assert db.execute(
        "SELECT status, issued_by FROM bills WHERE id = %s", (held_id,)
    ).fetchone() == (
        "issued",
        "lan",
    )
    (audit,) = db.execute("SELECT actor, detail FROM audit_log WHERE action = 'bill.release'")
    assert audit[0] == "lan" and audit[1]["held_reason"] == "over_30_percent"

    # August's end index was misread (1,110, not 1,100): staff correct the issued bill.
    db.execute(
        "UPDATE readings SET energy_import_kwh = 1110 WHERE meter_id = %s AND ts = %s",
        (meter, local(2025, 8, 5)),
    )
    page.goto(f"{base}/staff/bills/{august}")
    page.fill("#correct-reason", "chỉ số cuối kỳ đọc sai")
    page.get_by_role("button", name="Phát hành hóa đơn điều chỉnh").click()
    page.locator("#versions tbody tr").nth(1).wait_for()
    assert db.execute(
        "SELECT version, consumption_kwh, issued_by FROM bills WHERE period = '2025-08'"
        " ORDER BY version"
    ).fetchall() == [(1, 100, "cli"), (2, 10, "lan")]

    # The customer: issued bills final, the draft provisional, the correction's two versions.
    customer = page.context.browser.new_context(locale="vi-VN")
    try:
        mine = customer.new_page()
        mine.goto(f"{base}/")
        mine.get_by_label("Mã khách hàng").fill(CODE)
        mine.get_by_label("Số sê-ri công tơ").fill(SERIAL)
        mine.get_by_role("button", name="Tra cứu").click()
        mine.wait_for_load_state()
        mine.goto(f"{base}/bills")
        rows = mine.locator("#bills tbody tr")
        states = [
            (r.locator("td").first.inner_text(), r.locator("[data-state]").evaluate_all(
                "els => els.map(e => e.dataset.state)"))
            for r in rows.all()
        ]  # fmt: skip
        assert [s for _, s in states] == [
            ["provisional"],  # 2025-10
            ["final"],  # 2025-09
            ["final"],  # 2025-08 version 1
            ["final", "correction"],  # 2025-08 version 2
        ]
        mine.screenshot(path=str(ARTIFACTS / "lifecycle-customer-bills.png"), full_page=True)
        rows.nth(3).get_by_role("link").click()
        assert mine.locator("#bill-state").get_attribute("data-state") == "final"
        assert "chỉ số cuối kỳ đọc sai" in mine.locator("#bill-correction").inner_text()
        versions = mine.locator("#bill-versions tbody tr")
        assert versions.count() == 2
        # 110 kWh: 50 × 1,984 + 50 × 2,050 + 10 × 2,380 = 225,500; VAT 8 % 18,040;
        # total 243,540.
        assert mine.locator("#corrected-total").inner_text().replace("\u00a0", " ") == ("243.540 ₫")
        mine.goto(f"{base}/bills")
        mine.locator("#bills tbody tr").first.get_by_role("link").click()
        assert mine.locator("#bill-state").get_attribute("data-state") == "provisional"
    finally:
        customer.close()
    assert external_requests == []
