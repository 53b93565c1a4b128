"""The one-time-code flow in headless Chromium: after the lookup, the customer opens My account,
types a new email address, reads the code in the mail that arrived at the real SMTP server,
types a wrong code (told how many tries are left), then the right one; the address is confirmed.
A pasted 10 kB phone number is refused with a clear message and nothing is sent."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from flask import Flask
from test_care_support import SmsGateway, SmtpServer, sms_gateway, smtp_server  # noqa: F401
from test_web_customer_data import add_customer, close, make_app

pytestmark = [pytest.mark.browser, pytest.mark.db]

CODE, SERIAL = "PB01010012345", "SN-0001"


@pytest.fixture
def site(
    db: psycopg.Connection, db_url: str, live_server: Callable[..., str],
    smtp_server: SmtpServer, sms_gateway: SmsGateway,
) -> Iterator[str]:  # fmt: skip
    add_customer(db, CODE, SERIAL)
    app: Flask = make_app(db_url, SMTP_URL=smtp_server.url, SMS_URL=sms_gateway.url)
    yield live_server(app)
    close(app)


def test_confirm_a_new_email_with_the_code_it_received(
    site: str, browser_page: Any, external_requests: list[str], smtp_server: SmtpServer,
    sms_gateway: SmsGateway, db: psycopg.Connection,
) -> None:  # fmt: skip
    page = browser_page
    page.goto(site + "/")
    page.get_by_label("Mã khách hàng").fill(CODE)
    page.get_by_label("Số sê-ri công tơ").fill(SERIAL)
    page.get_by_role("button", name="Tra cứu").click()
    page.wait_for_url(f"**/meters/{SERIAL}")
    page.get_by_role("navigation", name="Chính").get_by_role(
        "link", name="Tài khoản của tôi"
    ).click()
    page.wait_for_url("**/account")

    # Hostile input first: a 10 kB paste into the phone field.
    page.locator("#phone").evaluate("(el, v) => { el.removeAttribute('maxlength'); el.value = v; }",
                                    "0912345678" * 1000)  # fmt: skip
    page.get_by_role("button", name="Gửi mã qua SMS").click()
    assert "Số điện thoại quá dài." in page.locator("#phone-error").inner_text()
    assert sms_gateway.received == []

    page.get_by_label("Địa chỉ email mới").fill("an.nguyen@example.vn")
    page.get_by_role("button", name="Gửi mã qua email").click()
    page.wait_for_url("**/account#code-email")
    assert "an.nguyen@example.vn" in page.get_by_role("alert").first.inner_text()
    (mail,) = smtp_server.messages()
    code = re.search(r"\b(\d{6})\b", mail.get_content()).group(1)

    field = page.get_by_label("Mã đã gửi đến an.nguyen@example.vn")
    field.fill("999999" if code != "999999" else "888888")
    page.get_by_role("button", name="Xác nhận").click()
    assert "Còn 4 lần thử" in page.locator("#code_email-error").inner_text()
    page.get_by_label("Mã đã gửi đến an.nguyen@example.vn").fill(code)
    page.get_by_role("button", name="Xác nhận").click()
    page.wait_for_url("**/account")
    assert "Địa chỉ email đã được xác nhận" in page.get_by_role("alert").first.inner_text()
    assert "Đã xác nhận: a•••n@example.vn" in page.locator("#current-email").inner_text()
    assert db.execute("SELECT email FROM customer_contacts").fetchone()[0] == "an.nguyen@example.vn"
    assert external_requests == []
