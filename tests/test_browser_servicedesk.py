"""The service desk in headless Chromium: an engineer plans an outage and a customer of that area
sees it on their page; the customer files a request (hostile text shown as typed, refused text
with its message); staff find it among the overdue once the injected clock passes its deadline,
move it on with notes, and the customer sees its state. Screenshots go to test-artifacts/."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from conftest import ARTIFACTS
from flask import Flask
from test_staff_helpers import PASSWORD, add_staff, app_factory

pytestmark = [pytest.mark.db, pytest.mark.browser]
ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
HOSTILE = "<script>document.title='pwned'</script><b>đậm</b>"


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 8, 28, 15, 30, tzinfo=ZONE))  # a Friday


@pytest.fixture
def make_app(db_url: str, clock: Clock) -> Iterator[Callable[..., Flask]]:
    factory = app_factory(db_url)
    build = next(factory)
    yield lambda **config: build(CLOCK=clock, **config)
    next(factory, None)


def _customer(db: Any, code: str, serial: str, province: str) -> None:
    row = db.execute(
        "INSERT INTO customers (code, name, province, reading_day) VALUES (%s, 'Trần Thị Bích',"
        " %s, 15) RETURNING id",
        (code, province),
    ).fetchone()
    db.execute(
        "INSERT INTO meters (serial, customer_id, protocol) VALUES (%s, %s, 'mqtt')",
        (serial, row[0]),
    )


def _staff_sign_in(page: Any, base: str, username: str) -> None:
    page.goto(f"{base}/staff/login")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.locator("main form button[type=submit]").click()
    page.wait_for_url(f"{base}/staff/")


def _customer_sign_in(page: Any, base: str, code: str, serial: str) -> None:
    page.goto(f"{base}/")
    page.get_by_label("Mã khách hàng").fill(code)
    page.get_by_label("Số sê-ri công tơ").fill(serial)
    page.get_by_role("button", name="Tra cứu").click()
    page.wait_for_url(f"**/meters/{serial}")


def test_outage_and_request_flows(
    db, make_app, live_server, browser_page, external_requests, clock
) -> None:
    _customer(db, "PB0101000001", "SN-BD-1", "Bình Dương")
    _customer(db, "PB0303000001", "SN-DN-1", "Đồng Nai")
    add_staff(db, "thu", "engineer")
    base = live_server(make_app())
    page = browser_page
    ARTIFACTS.mkdir(exist_ok=True)

    # An engineer plans an outage for Bình Dương from the navigation.
    _staff_sign_in(page, base, "thu")
    page.get_by_role("link", name="Ngừng cấp điện").click()
    page.wait_for_url(f"{base}/staff/outages")
    page.select_option("#province", "Bình Dương")
    page.fill("#starts_at", "2026-08-31T08:00")
    page.fill("#ends_at", "2026-08-31T16:30")
    page.fill("#reason", "Bảo trì trạm biến áp " + HOSTILE)
    page.screenshot(path=str(ARTIFACTS / "servicedesk_staff_outage_form.png"), full_page=True)
    page.get_by_role("button", name="Lập lịch", exact=True).click()
    page.wait_for_url(f"{base}/staff/outages")
    row = page.locator("#outages tr[data-outage]")
    assert row.count() == 1 and row.get_attribute("data-state") == "planned"
    assert HOSTILE in row.inner_text()  # shown as typed, not run
    page.locator("header form button[type=submit]").click()

    # A customer there sees it on their page; one elsewhere does not.
    page.context.clear_cookies()
    _customer_sign_in(page, base, "PB0303000001", "SN-DN-1")
    assert page.locator("#planned-outages [data-outage]").count() == 0
    page.context.clear_cookies()
    _customer_sign_in(page, base, "PB0101000001", "SN-BD-1")
    outage = page.locator("#planned-outages [data-outage]")
    assert outage.count() == 1
    assert "31/08/2026 08:00 – 31/08/2026 16:30" in outage.inner_text()
    assert HOSTILE in outage.inner_text() and page.title() != "pwned"
    page.screenshot(path=str(ARTIFACTS / "servicedesk_customer_meter.png"), full_page=True)

    # The customer files a request: a NUL is refused with a message, then it goes through.
    page.get_by_role("link", name="Gửi hoặc theo dõi yêu cầu").click()
    page.wait_for_url(f"{base}/requests")
    page.select_option("#kind", "new_supply")
    page.fill("#description", "Lắp công tơ\x00 mới")
    page.fill("#contact_phone", "0912 345 678")
    page.get_by_role("button", name="Gửi yêu cầu").click()
    assert "Không được dùng ký tự điều khiển" in page.locator("#new-request").inner_text()
    page.fill("#description", "Lắp công tơ cho nhà mới " + HOSTILE)
    page.get_by_role("button", name="Gửi yêu cầu").click()
    page.wait_for_url(f"{base}/requests/*")
    # Filed Friday 28 Aug 2026: Mon 31 Aug, Thu 3 Sep, Fri 4 Sep (1–2 Sep are National Day).
    assert "05/09/2026 00:00" in page.locator("#request-deadline").inner_text()
    assert page.locator("#request-description").inner_text() == "Lắp công tơ cho nhà mới " + HOSTILE
    assert page.locator("#request-status [data-state=received]").count() == 1
    page.screenshot(path=str(ARTIFACTS / "servicedesk_customer_request.png"), full_page=True)
    request_url = page.url

    # Staff: not overdue before the deadline, overdue at it; moved on with notes.
    add_staff(db, "lan", "billing")
    page.context.clear_cookies()
    _staff_sign_in(page, base, "lan")
    page.get_by_role("link", name="Yêu cầu dịch vụ").click()
    page.select_option("#overdue", "yes")
    page.get_by_role("button", name="Lọc").click()
    assert page.locator("#requests tr[data-request]").count() == 0
    clock.now = datetime(2026, 9, 5, 0, 0, tzinfo=ZONE)
    page.reload()
    assert page.locator("#requests tr[data-request][data-overdue]").count() == 1
    page.locator("#requests tr[data-request] a").click()
    page.select_option("#state", "in_progress")
    page.fill("#note", "Đã cử thợ")
    page.get_by_role("button", name="Lưu", exact=True).click()
    assert page.locator("#request-status [data-state=in_progress]").count() == 1
    page.select_option("#state", "done")
    page.fill("#note", "Đã lắp xong")
    page.get_by_role("button", name="Lưu", exact=True).click()
    assert page.locator("#request-status [data-flag=late]").count() == 1
    page.goto(f"{base}/staff/requests/on-time?from=2026-09&to=2026-09")
    cell = page.locator('#on-time tr[data-province="Bình Dương"] td[data-month="2026-09"]')
    assert "0,0 %" in cell.inner_text()
    page.screenshot(path=str(ARTIFACTS / "servicedesk_on_time.png"), full_page=True)

    # The customer sees the state and the notes.
    page.context.clear_cookies()
    _customer_sign_in(page, base, "PB0101000001", "SN-BD-1")
    page.goto(request_url)
    assert page.locator("#request-status [data-state=done]").count() == 1
    assert "Đã lắp xong" in page.locator("#history").inner_text()
    page.goto(request_url + "?lang=en")
    assert page.locator("html").get_attribute("lang") == "en"
    assert "Due by 5 Sep 2026 00:00" in page.locator("#request-deadline").inner_text()

    # The engineer cancels the outage with a note; it is gone from the customer's page.
    clock.now = datetime(2026, 8, 29, 9, 0, tzinfo=ZONE)
    page.context.clear_cookies()
    _staff_sign_in(page, base, "thu")
    page.goto(f"{base}/staff/outages")
    page.locator("#outages tr[data-outage] a").click()
    page.fill("#note", "Hoãn vì mưa bão")
    page.locator("#cancel-outage button[type=submit]").click()
    assert page.locator("#outage-state").inner_text() == "đã hủy"
    page.context.clear_cookies()
    _customer_sign_in(page, base, "PB0101000001", "SN-BD-1")
    assert page.locator("#planned-outages [data-outage]").count() == 0
    assert external_requests == []
