"""The customer site in headless Chromium: look a meter up by keyboard, see the right index and a
drawn chart, switch to English, open a bill's tier lines; on a phone-sized screen nothing spills
sideways; nothing is loaded from outside the server. Screenshots go to test-artifacts/."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from flask import Flask
from test_web_customer_data import (
    NOW,
    add_bill,
    add_customer,
    add_readings,
    close,
    ensure_tariffs,
    make_app,
    steady_readings,
)

pytestmark = [pytest.mark.browser, pytest.mark.db]

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"

CODE, SERIAL = "PB01010012345", "SN-0001"
LINES = [
    {"tier": 1, "width_kwh": 50, "kwh": 50, "price_vnd": 1984},
    {"tier": 2, "width_kwh": 50, "kwh": 50, "price_vnd": 2050},
    {"tier": 3, "width_kwh": 100, "kwh": 86, "price_vnd": 2380},
    {"tier": 4, "width_kwh": 100, "kwh": 0, "price_vnd": 2998},
    {"tier": 5, "width_kwh": 100, "kwh": 0, "price_vnd": 3350},
    {"tier": 6, "width_kwh": None, "kwh": 0, "price_vnd": 3460},
]


@pytest.fixture
def site(db: psycopg.Connection, db_url: str, live_server: Callable[..., str]) -> Iterator[str]:
    ensure_tariffs(db)
    ids = add_customer(db, CODE, SERIAL)
    start = NOW - timedelta(days=100)
    add_readings(
        db, ids[1], steady_readings(start.replace(hour=0), NOW, timedelta(minutes=30), 1000, 0.25)
    )
    add_bill(db, *ids, "2025-06", lines=LINES)
    ARTIFACTS.mkdir(exist_ok=True)
    app: Flask = make_app(db_url)
    yield live_server(app)
    close(app)


def test_customer_journey(site: str, browser_page: Any, external_requests: list[str]) -> None:
    page = browser_page
    console_errors: list[str] = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    page.goto(site + "/")
    assert page.get_attribute("html", "lang") == "vi"
    # A wrong serial first: the one failure message.
    page.get_by_label("Mã khách hàng").fill(CODE)
    page.get_by_label("Số sê-ri công tơ").fill("WRONG-1")
    page.get_by_role("button", name="Tra cứu").click()
    assert "Không tìm thấy công tơ" in page.get_by_role("alert").inner_text()
    console_errors.clear()  # Chromium reports the failed lookup's 400 itself as an error

    # By keyboard: the code field, Tab to the serial, Enter submits.
    page.get_by_label("Mã khách hàng").fill("")
    page.get_by_label("Mã khách hàng").press_sequentially(CODE.lower())
    page.keyboard.press("Tab")
    page.keyboard.press("Control+A")
    page.keyboard.type(SERIAL)
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/meters/{SERIAL}")

    assert "1.602,38\u00a0kWh" in page.locator("#latest-index").inner_text()
    assert "20/06/2025 09:30" in page.locator("#latest-index").inner_text()
    bars = page.locator("svg#daily-30 rect.bar")
    assert bars.count() == 30
    box = bars.nth(10).bounding_box()
    assert box is not None and box["height"] > 20 and box["width"] > 5  # really drawn
    assert page.locator("svg#monthly rect.bar").count() == 4
    page.screenshot(path=str(ARTIFACTS / "customer-meter-vi.png"), full_page=True)

    page.get_by_role("link", name="English").click()
    page.wait_for_url("**lang=en")
    assert page.get_attribute("html", "lang") == "en"
    assert "1,602.38\u00a0kWh" in page.locator("#latest-index").inner_text()
    assert "Reaches tier 3" in page.locator("#projection").inner_text()

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Bills").click()
    assert page.get_attribute("html", "lang") == "en"  # remembered
    page.get_by_role("link", name="Details").first.click()
    lines = page.locator("tr.tier-line")
    assert lines.count() == 6
    assert lines.nth(2).inner_text().split("\t") == ["Tier 3", "101–200", "86", "2,380", "₫204,680"]
    assert page.locator("#bill-total").inner_text() == "₫438,890"
    page.screenshot(path=str(ARTIFACTS / "customer-bill-en.png"), full_page=True)
    assert external_requests == []
    assert console_errors == []  # no Content-Security-Policy violation, no broken resource


def test_phone_screen_and_skip_link(
    site: str, browser_page: Any, external_requests: list[str]
) -> None:
    page = browser_page
    page.set_viewport_size({"width": 360, "height": 740})
    page.goto(site + "/")
    page.keyboard.press("Tab")  # the first stop is the skip link
    assert page.evaluate("document.activeElement.getAttribute('href')") == "#main"
    page.get_by_label("Mã khách hàng").fill(CODE)
    page.get_by_label("Số sê-ri công tơ").fill(SERIAL)
    page.get_by_role("button", name="Tra cứu").click()
    page.wait_for_url(f"**/meters/{SERIAL}")
    for path in (f"/meters/{SERIAL}", f"/meters/{SERIAL}/readings", "/bills"):
        page.goto(site + path)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, path
    page.goto(site + f"/meters/{SERIAL}")
    # The charts keep a legible size and scroll sideways, showing the newest bars first.
    today = page.locator("svg#daily-30 rect.bar").last.bounding_box()
    assert today is not None and today["x"] > 0 and today["x"] + today["width"] <= 360
    page.screenshot(path=str(ARTIFACTS / "customer-meter-phone.png"), full_page=True)
    assert external_requests == []
