"""The authorization matrix over every staff, ops and API route: anonymous, a customer's session,
billing, engineer, an engineer given the billing role, admin — each sees exactly what it should.

A new route fails ``test_every_route_is_in_the_matrix`` until it is added here."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient
from test_staff_helpers import (
    PASSWORD,
    add_bill,
    add_customer,
    add_meter,
    add_staff,
    app_factory,
    csrf_token,
    signed_in_client,
)

from schema import users
from servicedesk import outage_store, request_store
from servicedesk.outages import Area

pytestmark = pytest.mark.db

IDENTITIES = ("anonymous", "customer", "billing", "engineer", "engineer+billing", "admin")
STAFF = IDENTITIES[2:]
# Expected outcome per identity: "ok" (served), "login" (sent to the sign-in page), "401"
# (API: no credentials), "403" (signed in, role missing).
PAGE = {"anonymous": "login", "customer": "login"}
API = {"anonymous": "401", "customer": "401"}


def _all(outcome: str, **others: str) -> dict[str, str]:
    return {identity: others.get(identity.replace("+", "_"), outcome) for identity in IDENTITIES}


@dataclass(frozen=True)
class Case:
    method: str
    rule: str
    expected: dict[str, str]
    path: Callable[[dict[str, int]], str] | None = None  # for rules with parameters
    form: dict[str, str] | None = None


EXPORT_DAY = {"date_from": "2025-05-01", "date_to": "2025-05-01", "fmt": "csv", "province": ""}
PERIOD = {"period": "2025-05", "fmt": "csv", "province": ""}
OUTAGE = {
    "province": "Bình Dương",
    "customer_prefix": "",
    "customer_codes": "",
    "starts_at": "2099-01-05T08:00",
    "ends_at": "2099-01-05T16:00",
    "reason": "Bảo trì",
}

CASES = [
    Case("GET", "/staff/login", _all("ok")),
    Case("POST", "/staff/login", _all("ok"), form={"username": "x", "password": "wrong-one"}),
    Case("GET", "/staff/", _all("ok", **PAGE)),
    Case("GET", "/staff/exports", _all("ok", **PAGE)),
    Case(
        "POST",
        "/staff/exports/readings",
        _all("ok", **PAGE),
        form={f"readings-{k}": v for k, v in EXPORT_DAY.items()},
    ),
    Case(
        "POST",
        "/staff/exports/closing-indices",
        _all("ok", **PAGE, engineer="403"),
        form={f"closing-{k}": v for k, v in PERIOD.items()},
    ),
    Case(
        "POST",
        "/staff/exports/bills",
        _all("ok", **PAGE, engineer="403"),
        form={f"bills-{k}": v for k, v in PERIOD.items()},
    ),
    Case("GET", "/staff/tokens", _all("ok", **PAGE)),
    Case("POST", "/staff/tokens", _all("ok", **PAGE), form={"name": "matrix"}),
    Case(
        "POST",
        "/staff/tokens/<int:token_id>/revoke",
        _all("ok", **PAGE),
        path=lambda ids: f"/staff/tokens/{ids['token']}/revoke",
        form={},
    ),
    Case("GET", "/staff/password", _all("ok", **PAGE)),
    Case(
        "POST",
        "/staff/password",
        _all("ok", **PAGE),
        form={"current": PASSWORD, "new": PASSWORD, "again": PASSWORD},  # a new session after
    ),
    Case(
        "GET",
        "/staff/audit",
        _all("403", **PAGE, admin="ok"),
    ),
    Case("GET", "/staff/reviews", _all("ok", **PAGE, engineer="403")),
    Case(
        "POST",
        "/staff/reviews/<int:request_id>",
        _all("ok", **PAGE, engineer="403"),
        path=lambda ids: "/staff/reviews/999999",
        form={"decision": "reject", "reason": "matrix"},
    ),
    Case("GET", "/staff/exceptions", _all("ok", **PAGE, engineer="403")),
    Case(
        "GET",
        "/staff/exceptions/<int:exception_id>",
        _all("ok", **PAGE, engineer="403"),
        path=lambda ids: f"/staff/exceptions/{ids['exception']}",
    ),
    Case(
        "POST",
        "/staff/exceptions/<int:exception_id>/<action>",
        _all("ok", **PAGE, engineer="403"),
        path=lambda ids: f"/staff/exceptions/{ids['exception']}/accept",
        form={"reason": "matrix"},
    ),
    Case(
        "POST",
        "/staff/exceptions/accept",
        _all("ok", **PAGE, engineer="403"),
        form={"rule": "gap", "province": "Bình Dương", "reason": "matrix"},
    ),
    Case("GET", "/ops", _all("ok", **PAGE)),
    Case(
        "POST",
        "/ops/collectors/<collector_id>/forget",
        _all("403", **PAGE, admin="ok"),
        path=lambda ids: "/ops/collectors/old-collector/forget",
        form={},
    ),
    Case(
        "GET",
        "/api/v1/meters/<serial>/readings",
        _all("ok", **API),
        path=lambda ids: "/api/v1/meters/MX-1/readings?from=2025-05-01&to=2025-05-01",
    ),
    Case("GET", "/api/v1/collectors", _all("ok", **API)),
    Case("GET", "/api/v1/gateways", _all("ok", **API)),
    Case("GET", "/api/v1/metrics", _all("ok", **API)),
    Case("GET", "/api/v1/meters/stale", _all("ok", **API)),
    Case("GET", "/api/v1/rejected-messages", _all("ok", **API)),
    Case("GET", "/api/v1/completeness", _all("ok", **API)),
    Case("GET", "/api/v1/openapi.json", _all("ok")),
    # Service desk (issue 16): outages for engineers and admins, requests for every staff user.
    Case("GET", "/staff/outages", _all("ok", **PAGE, billing="403")),
    Case("POST", "/staff/outages", _all("ok", **PAGE, billing="403"), form=OUTAGE),
    Case(
        "GET",
        "/staff/outages/<int:outage_id>",
        _all("ok", **PAGE, billing="403"),
        path=lambda ids: f"/staff/outages/{ids['outage']}",
    ),
    Case(
        "POST",
        "/staff/outages/<int:outage_id>",
        _all("ok", **PAGE, billing="403"),
        path=lambda ids: f"/staff/outages/{ids['outage']}",
        form={**OUTAGE, "reason": "Đổi giờ"},
    ),
    Case(
        "POST",
        "/staff/outages/<int:outage_id>/cancel",
        _all("ok", **PAGE, billing="403"),
        path=lambda ids: f"/staff/outages/{ids['outage']}/cancel",
        form={"note": "Hoãn"},
    ),
    Case("GET", "/staff/requests", _all("ok", **PAGE)),
    Case("GET", "/staff/requests/on-time", _all("ok", **PAGE)),
    Case(
        "GET",
        "/staff/requests/<int:request_id>",
        _all("ok", **PAGE),
        path=lambda ids: f"/staff/requests/{ids['request']}",
    ),
    Case(
        "POST",
        "/staff/requests/<int:request_id>",
        _all("ok", **PAGE),
        path=lambda ids: f"/staff/requests/{ids['request']}",
        form={"state": "in_progress", "note": "Đang xử lý"},
    ),
    Case("GET", "/api/v1/outages", _all("ok")),
    # Bill and meter lifecycle (issue 13): billing staff and admins.
    Case("GET", "/staff/bills", _all("ok", **PAGE, engineer="403")),
    Case(
        "GET",
        "/staff/bills/<int:bill_id>",
        _all("ok", **PAGE, engineer="403"),
        path=lambda ids: f"/staff/bills/{ids['bill']}",
    ),
    Case(
        "POST",
        "/staff/bills/<int:bill_id>/release",
        _all("ok", **PAGE, engineer="403"),
        path=lambda ids: "/staff/bills/999999/release",
        form={"reason": "matrix"},
    ),
    Case(
        "POST",
        "/staff/bills/<int:bill_id>/correct",
        _all("ok", **PAGE, engineer="403"),
        path=lambda ids: "/staff/bills/999999/correct",
        form={"reason": "matrix"},
    ),
    Case("GET", "/staff/meters", _all("ok", **PAGE, engineer="403")),
    Case("POST", "/staff/meters/replace", _all("ok", **PAGE, engineer="403"), form={}),
    Case("POST", "/staff/meters/decommission", _all("ok", **PAGE, engineer="403"), form={}),
    Case("POST", "/staff/customers/transfer", _all("ok", **PAGE, engineer="403"), form={}),
    # Last: signing out ends the session the other cases use.
    Case("POST", "/staff/logout", _all("ok", **PAGE), form={}),
]


@pytest.fixture
def make_app(db_url: str) -> Iterator[Callable[..., Flask]]:
    yield from app_factory(db_url)


def test_every_route_is_in_the_matrix(make_app) -> None:
    app = make_app()
    covered = {(case.method, case.rule) for case in CASES}
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(("/staff", "/ops", "/api")):
            continue
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert (method, rule.rule) in covered, f"{method} {rule.rule} is not in the matrix"


def _outcome(response) -> str:  # type: ignore[no-untyped-def]
    status = response.status_code
    location = response.headers.get("Location", "")
    if status == 302 and location.startswith("/staff/login?next="):
        return "login"
    if status in (401, 403):
        return str(status)
    assert status < 400, (status, response.get_data(as_text=True)[:300])
    return "ok"


def _client(app: Flask, db: psycopg.Connection, identity: str, customer_id: int) -> FlaskClient:
    if identity == "anonymous":
        return app.test_client()
    if identity == "customer":
        client = app.test_client()
        with client.session_transaction() as session:
            session["customer_id"] = customer_id  # what the customers' pages keep
        return client
    roles = identity.split("+")
    add_staff(db, identity.replace("+", "_"), *roles)
    return signed_in_client(app, identity.replace("+", "_"))


@pytest.mark.parametrize("identity", IDENTITIES)
def test_each_identity_sees_exactly_what_it_should(db, make_app, identity: str) -> None:
    customer = add_customer(db, "PB0101000001")
    meter = add_meter(db, customer, "MX-1")
    add_bill(db, customer, meter, "2025-05", date(2025, 4, 15), date(2025, 5, 15), "1", "2", 1, 1)
    db.execute(
        "INSERT INTO collectors (id, host, version, started_at, last_seen)"
        " VALUES ('old-collector', 'h', '1', now(), now())"
    )
    app = make_app()
    client = _client(app, db, identity, customer)
    ids = {"token": 0, **_service_desk(db, customer)}
    ids["bill"] = db.execute("SELECT max(id) FROM bills").fetchone()[0]  # type: ignore[index]
    ids["exception"] = db.execute(
        "INSERT INTO reading_exceptions (meter_id, rule, ts_from, ts_to, reason)"
        " VALUES (%s, 'gap', now(), now(), 'matrix') RETURNING id",
        (meter,),
    ).fetchone()[0]  # type: ignore[index]
    if identity in STAFF:
        user = users.authenticate(db, identity.replace("+", "_"), "correct horse battery")
        assert user is not None
        users.create_token(db, user.id, "to revoke")
        ids["token"] = db.execute("SELECT max(id) FROM api_tokens").fetchone()[0]  # type: ignore[index]
    seen = {}
    for case in CASES:
        path = case.path(ids) if case.path else case.rule
        if case.method == "GET":
            response = client.get(path)
        else:
            token = csrf_token(client, "/staff/tokens" if identity in STAFF else "/staff/login")
            response = client.post(path, data={"csrf_token": token, **(case.form or {})})
        seen[f"{case.method} {case.rule}"] = _outcome(response)
    expected = {f"{case.method} {case.rule}": case.expected[identity] for case in CASES}
    assert seen == expected


def _service_desk(db: psycopg.Connection, customer: int) -> dict[str, int]:
    """An outage and a service request for the service-desk routes."""
    now = datetime.now(UTC)
    start = datetime(2099, 1, 1, 8, tzinfo=UTC)
    area = Area("Bình Dương")
    outage = outage_store.add(db, area, start, start + timedelta(hours=8), "Bảo trì", "t", now)
    zone = ZoneInfo("Asia/Ho_Chi_Minh")
    made = request_store.file(db, customer, "complaint", "Mất điện", "0912345678", now, zone)
    return {"outage": outage.id, "request": made.id}


def test_only_admins_see_the_ops_actions(db, make_app) -> None:
    db.execute(
        "INSERT INTO collectors (id, host, version, started_at, last_seen)"
        " VALUES ('c1', 'h', '1', now(), now())"
    )
    app = make_app()
    for identity in STAFF:
        client = _client(app, db, identity, 0)
        page = client.get("/ops").get_data(as_text=True)
        shows_forget = "/ops/collectors/c1/forget" in page
        assert shows_forget == (identity == "admin"), identity
        exports = client.get("/staff/exports").get_data(as_text=True)
        shows_bills = 'action="/staff/exports/bills"' in exports
        assert shows_bills == (identity != "engineer"), identity
