"""``/account`` through the site (Flask test client) with a real SMTP server and the tests' SMS
gateway: codes sent and entered, what they change, the audit trail, limits, hostile input; and
``/staff/reviews``: requests approved or rejected with a reason, audited."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient
from test_care_support import SmsGateway, SmtpServer, sms_gateway, smtp_server  # noqa: F401
from test_staff_helpers import add_staff, signed_in_client
from test_web_customer_data import NOW, add_customer, close, csrf_token, make_app, sign_in

from schema import audit

pytestmark = pytest.mark.db

CODE, SERIAL = "PB01010012345", "SN-0001"
SIX = re.compile(r"\b(\d{6})\b")


@pytest.fixture
def app(db: psycopg.Connection, db_url: str, smtp_server: SmtpServer,
        sms_gateway: SmsGateway) -> Iterator[Flask]:  # fmt: skip
    add_customer(db, CODE, SERIAL)
    app = make_app(db_url, SMTP_URL=smtp_server.url, SMS_URL=sms_gateway.url,
                   STAFF_LOGIN_LIMIT="1000 per minute")  # fmt: skip
    yield app
    close(app)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    client = app.test_client()
    assert sign_in(client, CODE, SERIAL).status_code == 302
    return client


def _post(client: FlaskClient, path: str, **form: str) -> Any:
    return client.post(path, data={"csrf_token": csrf_token(client, "/account"), **form})


def _contacts(db: psycopg.Connection) -> tuple[Any, ...] | None:
    return db.execute("SELECT phone, email FROM customer_contacts").fetchone()


def test_account_needs_the_lookup_and_is_vietnamese_by_default(app: Flask) -> None:
    anonymous = app.test_client()
    response = anonymous.get("/account")
    assert response.status_code == 302 and response.headers["Location"] == "/"
    client = app.test_client()
    sign_in(client, CODE, SERIAL)
    page = client.get("/account").get_data(as_text=True)
    assert '<html lang="vi">' in page and "Tài khoản của tôi" in page
    assert 'name="phone"' in page and 'name="email"' in page
    assert "Content-Security-Policy" in client.get("/account").headers
    assert "My account" in client.get("/account?lang=en").get_data(as_text=True)


def test_a_new_email_takes_effect_only_with_the_code_sent_to_it(
    client: FlaskClient, db: psycopg.Connection, smtp_server: SmtpServer
) -> None:
    response = _post(client, "/account/email", email=" An.Nguyen@Example.VN ")
    assert response.status_code == 302
    (mail,) = smtp_server.messages()
    assert mail["To"] == "An.Nguyen@example.vn"
    assert mail["Subject"].startswith("Mã xác nhận Doxa")
    code = SIX.search(mail.get_content()).group(1)
    assert _contacts(db) is None  # nothing changes before the code is entered
    stored = db.execute("SELECT code_hash FROM contact_verifications").fetchone()[0]
    assert code.encode() not in bytes(stored) and len(bytes(stored)) == 32  # only an HMAC

    wrong = "000000" if code != "000000" else "111111"
    page = _post(client, "/account/verify", channel="email", code=wrong)
    assert page.status_code == 400 and "Còn 4 lần thử" in page.get_data(as_text=True)
    assert _post(client, "/account/verify", channel="email", code=code).status_code == 302
    assert _contacts(db) == (None, "An.Nguyen@example.vn")
    assert _post(client, "/account/verify", channel="email", code=code).status_code == 400  # used
    (entry,) = audit.recent(db, action="account.email")
    assert entry.actor == f"customer:{CODE}"
    assert entry.detail["old"] is None and entry.detail["new"] == "An.Nguyen@example.vn"

    # A second change: the audit keeps the old value.
    _post(client, "/account/email", email="binh@example.vn")
    code = SIX.search(smtp_server.messages()[-1].get_content()).group(1)
    _post(client, "/account/verify", channel="email", code=code)
    newest = audit.recent(db, action="account.email")[0]
    assert (newest.detail["old"], newest.detail["new"]) == (
        "An.Nguyen@example.vn",
        "binh@example.vn",
    )


def test_a_new_phone_gets_its_code_by_sms_normalised_to_plus84(
    client: FlaskClient, db: psycopg.Connection, sms_gateway: SmsGateway
) -> None:
    assert _post(client, "/account/phone", phone="0912.345.678").status_code == 302
    (sms,) = sms_gateway.received
    assert sms["to"] == "+84912345678" and len(sms["text"]) <= 160
    code = SIX.search(sms["text"]).group(1)
    _post(client, "/account/verify", channel="phone", code=code)
    assert _contacts(db) == ("+84912345678", None)


def test_five_wrong_codes_use_the_code_up(
    client: FlaskClient, db: psycopg.Connection, sms_gateway: SmsGateway
) -> None:
    _post(client, "/account/phone", phone="0912345678")
    code = SIX.search(sms_gateway.received[0]["text"]).group(1)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    for _ in range(5):
        _post(client, "/account/verify", channel="phone", code=wrong)
    page = _post(client, "/account/verify", channel="phone", code=code)
    assert page.status_code == 400 and "Nhập sai quá nhiều lần" in page.get_data(as_text=True)
    assert _contacts(db) is None


def test_a_code_expires_after_ten_minutes(
    app: Flask, client: FlaskClient, db: psycopg.Connection, sms_gateway: SmsGateway
) -> None:
    from datetime import timedelta

    _post(client, "/account/phone", phone="0912345678")
    code = SIX.search(sms_gateway.received[0]["text"]).group(1)
    app.config["CLOCK"] = lambda: NOW + timedelta(minutes=10)
    page = _post(client, "/account/verify", channel="phone", code=code)
    assert page.status_code == 400 and "hết hạn" in page.get_data(as_text=True)
    assert _contacts(db) is None


def test_sending_codes_is_rate_limited_per_account_and_per_address(
    db: psycopg.Connection, db_url: str, smtp_server: SmtpServer, sms_gateway: SmsGateway
) -> None:
    add_customer(db, CODE, SERIAL)
    add_customer(db, "PB01010012346", "SN-0002")
    app = make_app(db_url, SMTP_URL=smtp_server.url, SMS_URL=sms_gateway.url,
                   CODE_SEND_LIMIT_PER_ACCOUNT="2 per hour",
                   CODE_SEND_LIMIT_PER_ADDRESS="3 per hour")  # fmt: skip
    try:
        first = app.test_client()
        sign_in(first, CODE, SERIAL)
        statuses = [_post(first, "/account/phone", phone=f"091234567{k}").status_code
                    for k in range(3)]  # fmt: skip
        assert statuses == [302, 302, 429]  # per account (phone and email count together)
        assert _post(first, "/account/email", email="a@example.vn").status_code == 429
        second = app.test_client()  # another account, same address
        sign_in(second, "PB01010012346", "SN-0002")
        assert _post(second, "/account/phone", phone="0912345679").status_code == 302
        assert _post(second, "/account/phone", phone="0912345670").status_code == 429
        other_address = app.test_client()
        sign_in(other_address, "PB01010012346", "SN-0002", REMOTE_ADDR="10.0.0.9")
        response = other_address.post(
            "/account/phone",
            data={"csrf_token": csrf_token(other_address, "/account"), "phone": "0912345670"},
            environ_base={"REMOTE_ADDR": "10.0.0.9"},
        )
        assert response.status_code == 429  # that account has used its 2
        assert len(sms_gateway.received) == 3
    finally:
        close(app)


HOSTILE = [
    ("phone", "0" * 10_000, "quá dài"),
    ("email", "a" * 10_000 + "@example.vn", "quá dài"),
    ("phone", "0912\x00345678", "ký tự điều khiển"),
    ("email", "an@example.vn\r\nBcc: victim@example.com", "ký tự điều khiển"),
    ("email", "an@example.vn\nBcc: victim@example.com", "ký tự điều khiển"),
    ("email", "an@example.vn%0d%0aBcc:x@y.z", "Phần trước @"),
    ("email", "An <an@example.vn>", "không có dấu cách"),
    ("phone", "+1 415 555 0100", "Chỉ số di động Việt Nam"),
]


@pytest.mark.parametrize(("field", "value", "message"), HOSTILE)
def test_hostile_contact_input_is_refused_clearly_and_nothing_is_sent(
    client: FlaskClient, db: psycopg.Connection, smtp_server: SmtpServer,
    sms_gateway: SmsGateway, field: str, value: str, message: str,
) -> None:  # fmt: skip
    response = _post(client, f"/account/{field}", **{field: value})
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert message in page and 'role="alert"' in page
    assert smtp_server.store.arrivals == 0 and sms_gateway.received == []
    assert smtp_server.store.rcpts == []
    assert db.execute("SELECT count(*) FROM contact_verifications").fetchone()[0] == 0
    if len(value) > 254 or not value.isprintable():
        assert value[:200] not in page  # a 10 kB paste or a control character is not echoed


def test_preferences_are_saved_and_audited_with_the_old_values(
    client: FlaskClient, db: psycopg.Connection
) -> None:
    response = _post(client, "/account/preferences", preferred_channel="email", language="en",
                     notify_bill="yes", notify_threshold="yes", threshold_kwh="250")  # fmt: skip
    assert response.status_code == 302
    row = db.execute(
        "SELECT preferred_channel, language, notify_bill, notify_threshold, notify_outage,"
        " threshold_kwh, threshold_pct FROM customer_contacts"
    ).fetchone()
    assert row == ("email", "en", True, True, False, 250, None)
    (entry,) = audit.recent(db, action="account.preferences")
    assert entry.detail["old"]["preferred_channel"] == "sms"
    assert entry.detail["new"]["threshold_kwh"] == 250
    bad = _post(client, "/account/preferences", preferred_channel="fax", language="vi",
                threshold_kwh="-5")  # fmt: skip
    assert bad.status_code == 400


def test_name_address_and_new_owner_are_requests_reviewed_by_staff(
    app: Flask, client: FlaskClient, db: psycopg.Connection
) -> None:
    assert _post(client, "/account/requests", kind="address", requested_value="5 Hai Bà Trưng",
                 note="moved").status_code == 302  # fmt: skip
    refused = _post(client, "/account/requests", kind="new_owner", requested_value="Trần Thị B")
    assert refused.status_code == 400  # the confirmation box is not ticked
    assert _post(client, "/account/requests", kind="new_owner", requested_value="Trần Thị B",
                 confirm_owner="yes").status_code == 302  # fmt: skip
    name, address = db.execute("SELECT name, address FROM customers").fetchone()
    assert (name, address) == ("Nguyễn Văn An", "12 Lê Lợi, Quận 1")  # nothing changed yet

    add_staff(db, "lan", "billing")
    add_staff(db, "minh", "engineer")
    engineer = signed_in_client(app, "minh")
    assert engineer.get("/staff/reviews").status_code == 403
    staff = signed_in_client(app, "lan")
    page = staff.get("/staff/reviews?province=Hồ Chí Minh").get_data(as_text=True)
    assert "5 Hai Bà Trưng" in page and "Trần Thị B" in page
    assert "Trần Thị B" not in staff.get("/staff/reviews?province=Bình Dương").get_data(
        as_text=True
    )
    ids = dict(db.execute("SELECT kind, id FROM account_requests").fetchall())
    token = csrf_token(staff, "/staff/reviews")
    no_reason = staff.post(f"/staff/reviews/{ids['address']}",
                           data={"csrf_token": token, "decision": "approve", "reason": " "})  # fmt: skip
    assert no_reason.status_code == 302
    assert db.execute("SELECT state FROM account_requests WHERE id = %s",
                      (ids["address"],)).fetchone()[0] == "pending"  # fmt: skip
    staff.post(f"/staff/reviews/{ids['address']}",
               data={"csrf_token": token, "decision": "reject", "reason": "no proof of address"})  # fmt: skip
    staff.post(f"/staff/reviews/{ids['new_owner']}",
               data={"csrf_token": token, "decision": "approve", "reason": "sale contract seen"})  # fmt: skip
    assert db.execute("SELECT name, address FROM customers").fetchone() == (
        "Trần Thị B", "12 Lê Lợi, Quận 1")  # fmt: skip
    (transfer,) = audit.recent(db, action="customer.transfer")
    assert (transfer.actor, transfer.detail["old"], transfer.detail["new"]) == (
        "lan", "Nguyễn Văn An", "Trần Thị B")  # fmt: skip
    reject = audit.recent(db, action="review.reject")[0]
    assert reject.detail["reason"] == "no proof of address"
    again = staff.post(f"/staff/reviews/{ids['new_owner']}",
                       data={"csrf_token": token, "decision": "reject", "reason": "x"})  # fmt: skip
    assert again.status_code == 302  # already decided: a message, no change
    assert db.execute("SELECT state FROM account_requests WHERE id = %s",
                      (ids["new_owner"],)).fetchone()[0] == "approved"  # fmt: skip
    mine = client.get("/account").get_data(as_text=True)
    assert "no proof of address" in mine and "đã từ chối" in mine


def test_ops_shows_the_outbox_state_per_kind(app: Flask, db: psycopg.Connection) -> None:
    from care import outbox

    cid = db.execute("SELECT id FROM customers").fetchone()[0]
    rows = [outbox.Notice(kind, cid, "sms", "+84912345678", "vi", "", "t", f"{kind}:{k}")
            for kind, k in [("outage", 1), ("outage", 2), ("bill_issued", 3)]]  # fmt: skip
    outbox.enqueue(db, rows, NOW)
    db.execute("UPDATE notices SET state = 'dead', last_error = 'SMS gateway answered 400: bad'"
               " WHERE dedupe_key = 'outage:2'")  # fmt: skip
    add_staff(db, "minh", "engineer")
    page = signed_in_client(app, "minh").get("/ops?lang=en").get_data(as_text=True)
    section = page[page.index('id="notices"') : page.index('id="rejected"')]
    outage = section[section.index('data-kind="outage"') :]
    assert '<td class="num" data-field="pending">1</td>' in outage
    assert '<td class="num" data-field="dead">1</td>' in outage
    assert "SMS gateway answered 400: bad" in outage
    assert "Bill issued" in section and "Planned outage" in section
