"""The service desk on the site, against the real database: outages from the staff page on the
right customers' pages (and gone once cancelled), the public schedule and API without customer
data, requests filed by customers with their deadline, overdue flags flipping at the deadline on
an injected clock, rate limits, and hostile text shown escaped or refused — never a 500."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient
from test_staff_helpers import add_staff, app_factory, csrf_token, signed_in_client
from test_web_customer_data import sign_in

pytestmark = pytest.mark.db
ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
FRIDAY = datetime(2026, 8, 28, 15, 30, tzinfo=ZONE)
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


class Clock:
    """The site's injected "now", moved by the test."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(FRIDAY)


@pytest.fixture
def make_app(db_url: str, clock: Clock) -> Iterator[Callable[..., Flask]]:
    factory = app_factory(db_url)
    build = next(factory)

    def with_clock(**config: Any) -> Flask:
        return build(CLOCK=clock, SECRET_KEY="test-secret", **config)

    yield with_clock
    next(factory, None)  # closes the apps' pools


def add_customer(db: psycopg.Connection, code: str, serial: str, province: str) -> int:
    row = db.execute(
        "INSERT INTO customers (code, name, province, reading_day) VALUES (%s, %s, %s, 15)"
        " RETURNING id",
        (code, f"Khách {code}", province),
    ).fetchone()
    assert row
    db.execute(
        "INSERT INTO meters (serial, customer_id, protocol) VALUES (%s, %s, 'mqtt')",
        (serial, row[0]),
    )
    return int(row[0])


def customer_client(app: Flask, code: str, serial: str) -> FlaskClient:
    client = app.test_client()
    assert sign_in(client, code, serial).status_code == 302
    return client


@pytest.fixture
def site(db: psycopg.Connection) -> dict[str, int]:
    return {
        "bd": add_customer(db, "PB0101000001", "SN-BD-1", "Bình Dương"),
        "bd2": add_customer(db, "PB0102000001", "SN-BD-2", "Bình Dương"),
        "dn": add_customer(db, "PB0303000001", "SN-DN-1", "Đồng Nai"),
    }


def _post(client: FlaskClient, url: str, form_url: str, data: dict[str, str]) -> Any:
    return client.post(url, data={"csrf_token": csrf_token(client, form_url), **data})


def test_an_outage_shows_on_the_page_of_its_area_only_and_goes_when_cancelled(
    db, site, make_app, clock
) -> None:
    app = make_app()
    add_staff(db, "thu", "engineer")
    staff = signed_in_client(app, "thu")
    r = _post(
        staff,
        "/staff/outages",
        "/staff/outages",
        {
            "province": "Bình Dương",
            "customer_prefix": "",
            "customer_codes": "",
            "starts_at": "2026-08-31T08:00",
            "ends_at": "2026-08-31T16:30",
            "reason": "Bảo trì đường dây 22kV " + HOSTILE,
        },
    )
    assert r.status_code == 302, r.get_data(as_text=True)[:2000]
    outage_id = db.execute("SELECT max(id) FROM planned_outages").fetchone()[0]  # type: ignore[index]

    there = customer_client(app, "PB0101000001", "SN-BD-1").get("/meters/SN-BD-1")
    elsewhere = customer_client(app, "PB0303000001", "SN-DN-1").get("/meters/SN-DN-1")
    page = there.get_data(as_text=True)
    assert there.status_code == 200 and f'data-outage="{outage_id}"' in page
    assert "31/08/2026 08:00 – 31/08/2026 16:30" in page
    assert "<script>" not in page and "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page
    assert 'data-outage="' not in elsewhere.get_data(as_text=True)

    public = app.test_client().get("/outages?province=Bình Dương&lang=en")
    text = public.get_data(as_text=True)
    assert public.status_code == 200 and f'data-outage="{outage_id}"' in text
    assert "Whole province" in text and "PB0101000001" not in text and "<script>" not in text
    assert "script-src 'none'" in public.headers["Content-Security-Policy"]
    assert app.test_client().get("/outages?province=Nowhere").status_code == 404
    api = app.test_client().get("/api/v1/outages?province=Bình Dương").get_json()
    assert api == {
        "outages": [
            {
                "id": outage_id,
                "province": "Bình Dương",
                "customer_prefix": None,
                "scope": "province",
                "start": "2026-08-31T08:00:00+07:00",
                "end": "2026-08-31T16:30:00+07:00",
                "reason": "Bảo trì đường dây 22kV " + HOSTILE,
                "state": "planned",
            }
        ]
    }
    assert app.test_client().get("/api/v1/outages?province=Đồng Nai").get_json() == {"outages": []}

    # Narrowed to one branch by the edit form, then cancelled.
    r = _post(
        staff,
        f"/staff/outages/{outage_id}",
        f"/staff/outages/{outage_id}",
        {
            "province": "Bình Dương",
            "customer_prefix": "pb0102",
            "customer_codes": "",
            "starts_at": "2026-08-31T08:00",
            "ends_at": "2026-08-31T16:30",
            "reason": "Bảo trì",
        },
    )
    assert r.status_code == 302
    assert 'data-outage="' not in customer_client(app, "PB0101000001", "SN-BD-1").get(
        "/meters/SN-BD-1"
    ).get_data(as_text=True)
    bd2 = customer_client(app, "PB0102000001", "SN-BD-2")
    assert f'data-outage="{outage_id}"' in bd2.get("/meters/SN-BD-2").get_data(as_text=True)
    r = _post(
        staff, f"/staff/outages/{outage_id}/cancel", f"/staff/outages/{outage_id}", {"note": ""}
    )
    assert r.status_code == 400  # a cancellation needs a note
    r = _post(
        staff, f"/staff/outages/{outage_id}/cancel", f"/staff/outages/{outage_id}", {"note": "Hoãn"}
    )
    assert r.status_code == 302
    assert 'data-outage="' not in bd2.get("/meters/SN-BD-2").get_data(as_text=True)
    assert app.test_client().get("/api/v1/outages").get_json() == {"outages": []}
    actions = [row[0] for row in db.execute("SELECT action FROM audit_log WHERE actor = 'thu'")]
    assert actions == ["login", "outage.add", "outage.edit", "outage.cancel"]

    assert "đã hủy" in staff.get(f"/staff/outages/{outage_id}").get_data(as_text=True)


def test_an_outage_leaves_the_customer_page_when_it_ends(db, site, make_app, clock) -> None:
    from servicedesk import outage_store
    from servicedesk.outages import Area

    start = FRIDAY + timedelta(hours=1)
    outage_store.add(
        db, Area("Đồng Nai"), start, start + timedelta(hours=2), "Thay cáp", "t", FRIDAY
    )
    app = make_app()
    client = customer_client(app, "PB0303000001", "SN-DN-1")
    clock.now = start + timedelta(hours=1)  # ongoing: still shown, marked so
    page = client.get("/meters/SN-DN-1").get_data(as_text=True)
    assert 'data-outage="1"' in page and "đang diễn ra" in page
    clock.now = start + timedelta(hours=2)
    assert 'data-outage="' not in client.get("/meters/SN-DN-1").get_data(as_text=True)


def test_outage_form_errors_are_messages(db, site, make_app) -> None:
    app = make_app()
    add_staff(db, "thu", "engineer")
    staff = signed_in_client(app, "thu")
    base = {
        "province": "Bình Dương",
        "customer_prefix": "",
        "customer_codes": "",
        "starts_at": "2026-08-31T08:00",
        "ends_at": "2026-08-31T16:30",
        "reason": "Bảo trì",
    }
    for change, message in [
        ({"ends_at": "2026-08-31T07:00"}, "thời điểm kết thúc phải sau thời điểm bắt đầu"),
        ({"starts_at": "soon"}, "không phải thời điểm hợp lệ: soon"),
        ({"customer_codes": "PB0303000001"}, "không có khách hàng PB0303000001 ở Bình Dương"),
        ({"customer_prefix": "PB01", "customer_codes": "PB0101000001"}, "không nhập cả hai"),
        ({"reason": "x\x00y"}, "Không được dùng ký tự điều khiển"),
        ({"reason": "x" * 501}, "Tối đa 500 ký tự."),
        ({"province": "Nowhere"}, "Not a valid choice"),
    ]:
        r = _post(staff, "/staff/outages", "/staff/outages", {**base, **change})
        assert r.status_code == 400, change
        assert message in r.get_data(as_text=True), (change, r.get_data(as_text=True)[-3000:])
    big = _post(staff, "/staff/outages", "/staff/outages", {**base, "reason": "x" * 100_000})
    assert big.status_code == 413 and "quá lớn" in big.get_data(as_text=True)
    assert db.execute("SELECT count(*) FROM planned_outages").fetchone() == (0,)


def _file(client: FlaskClient, **data: str) -> Any:
    form = {"kind": "new_supply", "description": "Xin lắp công tơ", "contact_phone": "0912 345 678"}
    return _post(client, "/requests", "/requests", {**form, **data})


def test_a_request_is_filed_with_its_deadline_and_flagged_overdue_at_it(
    db, site, make_app, clock
) -> None:
    app = make_app()
    customer = customer_client(app, "PB0101000001", "SN-BD-1")
    r = _file(customer, description=HOSTILE + "\nDòng hai")
    assert r.status_code == 302
    request_id = int(r.headers["Location"].rsplit("/", 1)[1])
    page = customer.get(f"/requests/{request_id}").get_data(as_text=True)
    # Filed Friday 28 Aug 2026; 3 working days past Tue 1 / Wed 2 Sep (holidays): due by the
    # end of Fri 4 Sep, shown as Sat 5 Sep 00:00.
    assert "05/09/2026 00:00" in page and "3 ngày làm việc" in page
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert 'data-state="received"' in page and 'data-flag="overdue"' not in page
    stored = db.execute("SELECT description FROM service_requests").fetchone()
    assert stored == (HOSTILE + "\nDòng hai",)  # stored as given

    # The customer's meter page shows it; another customer cannot open it.
    meter = customer.get("/meters/SN-BD-1").get_data(as_text=True)
    assert f'data-request="{request_id}"' in meter
    other = customer_client(app, "PB0303000001", "SN-DN-1")
    assert other.get(f"/requests/{request_id}").status_code == 404

    add_staff(db, "lan", "billing")
    staff = signed_in_client(app, "lan")

    def overdue_ids() -> list[str]:
        page = staff.get("/staff/requests?overdue=yes").get_data(as_text=True)
        return re.findall(r'data-request="(\d+)" data-overdue', page)

    clock.now = datetime(2026, 9, 5, tzinfo=ZONE) - timedelta(microseconds=1)
    assert overdue_ids() == []
    assert 'data-flag="overdue"' not in customer.get(f"/requests/{request_id}").get_data(
        as_text=True
    )
    clock.now = datetime(2026, 9, 5, tzinfo=ZONE)
    assert overdue_ids() == [str(request_id)]
    assert 'data-flag="overdue"' in customer.get(f"/requests/{request_id}").get_data(as_text=True)
    filtered = staff.get("/staff/requests?province=Đồng Nai").get_data(as_text=True)
    assert "data-request=" not in filtered
    by_kind = staff.get("/staff/requests?kind=complaint").get_data(as_text=True)
    assert "data-request=" not in by_kind

    # Staff move it on, each step with a note; done late, it is late on the on-time page.
    url = f"/staff/requests/{request_id}"
    assert _post(staff, url, url, {"state": "done", "note": "x"}).status_code == 400
    assert _post(staff, url, url, {"state": "in_progress", "note": ""}).status_code == 400
    assert (
        _post(staff, url, url, {"state": "in_progress", "note": "Cử thợ " + HOSTILE}).status_code
        == 302
    )
    assert _post(staff, url, url, {"state": "done", "note": "Đã lắp"}).status_code == 302
    page = customer.get(f"/requests/{request_id}").get_data(as_text=True)
    assert (
        'data-state="done"' in page
        and 'data-flag="late"' in page
        and "Cử thợ &lt;script&gt;" in page
    )
    shares = staff.get("/staff/requests/on-time?from=2026-09&to=2026-09").get_data(as_text=True)
    assert 'data-province="Bình Dương"' in shares and "0,0 %" in shares and "0 of 1" not in shares


def test_hostile_request_text_is_refused_with_a_message(db, site, make_app) -> None:
    app = make_app()
    customer = customer_client(app, "PB0101000001", "SN-BD-1")
    for data, message in [
        ({"description": "a\x00b"}, "Không được dùng ký tự điều khiển"),
        ({"description": "x" * 60_000}, "Tối đa 2000 ký tự."),
        ({"description": "   "}, "Bắt buộc phải nhập."),
        ({"contact_phone": "<script>"}, "Số điện thoại"),
        ({"kind": "teleport"}, "Not a valid choice"),
    ]:
        r = _file(customer, **data)
        assert r.status_code == 400, data
        body = r.get_data(as_text=True)
        assert message in body or message == "Not a valid choice", (data, body[-2000:])
        assert "<script>" not in body
    big = _file(customer, description="x" * 100_000)
    assert big.status_code == 413 and "quá lớn" in big.get_data(as_text=True)
    assert db.execute("SELECT count(*) FROM service_requests").fetchone() == (0,)


def test_filing_is_rate_limited_per_customer(db, site, make_app) -> None:
    app = make_app(
        REQUEST_LIMIT_PER_CUSTOMER="2 per hour", REQUEST_LIMIT_PER_ADDRESS="100 per hour"
    )
    one = customer_client(app, "PB0101000001", "SN-BD-1")
    # A refused form does not use up one of the customer's filings.
    assert _file(one, description="").status_code == 400
    assert [_file(one).status_code for _ in range(3)] == [302, 302, 429]
    # Another customer from the same address still may.
    assert _file(customer_client(app, "PB0303000001", "SN-DN-1")).status_code == 302
    assert db.execute("SELECT count(*) FROM service_requests").fetchone() == (3,)


def test_filing_is_rate_limited_per_address(db, site, make_app) -> None:
    app = make_app(
        REQUEST_LIMIT_PER_CUSTOMER="100 per hour", REQUEST_LIMIT_PER_ADDRESS="2 per hour"
    )
    assert _file(customer_client(app, "PB0101000001", "SN-BD-1")).status_code == 302
    two = customer_client(app, "PB0303000001", "SN-DN-1")
    assert _file(two, description="").status_code == 400  # every attempt counts here
    r = _file(two)
    assert r.status_code == 429 and "thử quá nhiều lần" in r.get_data(as_text=True)
    # From another address it goes through.
    three = customer_client(app, "PB0102000001", "SN-BD-2")
    token = csrf_token(three, "/requests")
    r = three.post(
        "/requests",
        data={
            "csrf_token": token,
            "kind": "complaint",
            "description": "x",
            "contact_phone": "0912345678",
        },
        environ_base={"REMOTE_ADDR": "10.9.9.9"},
    )
    assert r.status_code == 302
    assert db.execute("SELECT count(*) FROM service_requests").fetchone() == (2,)
