"""In headless Chromium: an engineer opens /ops, is sent to the sign-in page, signs in and sees
the health dashboard; the export page works for billing staff. Screenshots go to test-artifacts/."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from conftest import ARTIFACTS
from flask import Flask
from test_staff_helpers import PASSWORD, add_customer, add_meter, add_staff, app_factory

pytestmark = [pytest.mark.db, pytest.mark.browser]


@pytest.fixture
def make_app(db_url: str) -> Iterator[Callable[..., Flask]]:
    yield from app_factory(db_url)


def test_engineer_signs_in_and_sees_the_dashboard(
    db, make_app, live_server, browser_page, external_requests
) -> None:
    add_staff(db, "thu", "engineer")
    add_staff(db, "lan", "billing")
    db.execute(
        "INSERT INTO collectors (id, host, version, pid, started_at, last_seen, poll_interval,"
        " spool_depth) VALUES ('edge-hcm-1', 'edge-hcm-1', '0.1.0', 811, now() - interval '3 h',"
        " now(), 60, 0), ('edge-dn-2', 'edge-dn-2', '0.1.0', 912, now() - interval '1 day',"
        " now() - interval '10 min', 60, 1250)"
    )
    meter = add_meter(db, add_customer(db, "PB0101000001", province="Đồng Nai"), "SDM-0042")
    db.execute(
        "INSERT INTO meter_status (meter_id, last_reading_ts, last_error, last_error_at,"
        " consecutive_failures) VALUES (%s, now() - interval '25 min', 'timeout after 3 s',"
        " now(), 12)",
        (meter,),
    )
    db.execute(
        "INSERT INTO collector_heartbeats (ts, collector_id, readings_written, polls_ok,"
        " polls_failed) VALUES (now(), 'edge-hcm-1', 1180, 1170, 12)"
    )
    base = live_server(make_app())
    page = browser_page
    console_errors: list[str] = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)

    page.goto(f"{base}/ops")
    assert page.url.startswith(f"{base}/staff/login")
    assert page.locator("html").get_attribute("lang") == "vi"
    page.fill("#username", "thu")
    page.fill("#password", PASSWORD)
    page.locator("main form button[type=submit]").click()
    page.wait_for_url(f"{base}/ops")
    page.locator('#collectors tr[data-collector="edge-hcm-1"][data-status="ok"]').wait_for()
    assert (
        page.locator('#collectors tr[data-collector="edge-dn-2"]').get_attribute("data-status")
        == "down"
    )
    assert (
        page.locator('#stale tr[data-meter="SDM-0042"]').inner_text().count("timeout after 3 s")
        == 1
    )
    assert page.locator('meta[http-equiv="refresh"]').count() == 1
    # The staff style sheet applies under the site's Content-Security-Policy (no inline styles).
    ok_badge = page.locator(".status-ok").first
    assert ok_badge.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(223, 243, 228)"
    assert console_errors == []
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "staff_ops_dashboard.png"), full_page=True)

    # Engineers have no bill export; signing out ends the session.
    page.goto(f"{base}/staff/exports")
    assert page.locator("#export-readings").count() == 1
    assert page.locator("#export-bills").count() == 0
    page.locator("header form button[type=submit]").click()
    page.wait_for_url(f"{base}/staff/login")

    page.fill("#username", "lan")
    page.fill("#password", PASSWORD)
    page.locator("main form button[type=submit]").click()
    page.wait_for_url(f"{base}/staff/")
    page.goto(f"{base}/staff/exports")
    page.fill("#readings-date_from", "2025-05-01")
    page.fill("#readings-date_to", "2025-05-01")
    page.screenshot(path=str(ARTIFACTS / "staff_exports.png"), full_page=True)
    with page.expect_download() as download_info:
        page.locator("#export-readings button[type=submit]").click()
    download = download_info.value
    assert download.suggested_filename == "readings_2025-05-01_2025-05-01.csv"
    with open(download.path(), encoding="utf-8") as fh:
        assert fh.readline().startswith("meter_serial,customer_code,ts,")
    assert external_requests == []
