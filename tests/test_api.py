"""The JSON API: per-user tokens (made on the staff page or with ``doxa users token``), the same
readings as the exports, paging, JSON errors, and an OpenAPI document listing every route."""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from test_staff_helpers import (
    add_customer,
    add_meter,
    add_readings,
    add_staff,
    app_factory,
    csrf_token,
    signed_in_client,
)

pytestmark = pytest.mark.db
VN = ZoneInfo("Asia/Ho_Chi_Minh")


@pytest.fixture
def make_app(db_url: str) -> Iterator[Callable[..., Flask]]:
    yield from app_factory(db_url)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_tokens_are_shown_once_work_and_can_be_revoked(db, make_app) -> None:
    add_staff(db, "minh", "engineer")
    app = make_app()
    staff = signed_in_client(app, "minh")
    made = staff.post(
        "/staff/tokens", data={"csrf_token": csrf_token(staff, "/staff/tokens"), "name": "cron"}
    )
    assert made.status_code == 200
    token = re.search(r"<code>(doxa_[A-Za-z0-9_-]+)</code>", made.get_data(as_text=True))[1]  # type: ignore[index]
    listing = staff.get("/staff/tokens").get_data(as_text=True)
    assert "cron" in listing and token not in listing  # shown once only
    stored = db.execute("SELECT token_sha256, prefix FROM api_tokens").fetchone()
    assert (
        stored is not None
        and token.encode() not in bytes(stored[0])
        and token.startswith(stored[1])
    )

    api = app.test_client()
    response = api.get("/api/v1/collectors", headers=bearer(token))
    assert response.status_code == 200 and response.get_json() == {
        "collectors": [],
        "thresholds": {"late_after_s": 15.0, "down_after_s": 60.0},
    }
    assert db.execute("SELECT last_used_at IS NOT NULL FROM api_tokens").fetchone() == (True,)

    token_id = db.execute("SELECT id FROM api_tokens").fetchone()[0]  # type: ignore[index]
    revoke = staff.post(
        f"/staff/tokens/{token_id}/revoke", data={"csrf_token": csrf_token(staff, "/staff/tokens")}
    )
    assert revoke.status_code == 302
    refused = api.get("/api/v1/collectors", headers=bearer(token))
    assert refused.status_code == 401
    assert refused.get_json()["error"].startswith("a valid API token")
    assert refused.headers["WWW-Authenticate"] == 'Bearer realm="doxa"'
    actions = db.execute("SELECT action FROM audit_log WHERE action LIKE 'token.%' ORDER BY id")
    assert [a for (a,) in actions] == ["token.create", "token.revoke"]


def test_requests_without_valid_credentials_get_json_401(db, make_app) -> None:
    app = make_app()
    client = app.test_client()
    for headers in ({}, bearer("doxa_not-a-token"), {"Authorization": "Basic dXNlcjpwdw=="}):
        response = client.get("/api/v1/meters/stale", headers=headers)
        assert response.status_code == 401 and response.is_json
    with client.session_transaction() as session:
        session["customer_id"] = 1
    assert client.get("/api/v1/meters/stale").status_code == 401
    # A deactivated user's token stops working.
    user = add_staff(db, "lan", "billing")
    from schema import users

    token = users.create_token(db, user.id)
    assert client.get("/api/v1/meters/stale", headers=bearer(token)).status_code == 200
    db.execute("UPDATE staff_users SET active = false")
    assert client.get("/api/v1/meters/stale", headers=bearer(token)).status_code == 401


def test_readings_are_the_database_rows_paged(doxa, db_url, db, make_app, monkeypatch) -> None:
    meter = add_meter(db, add_customer(db, "PB0101000001"), "RD-1")
    start = datetime(2025, 5, 1, tzinfo=VN)
    rows = [
        (
            meter,
            start + i * timedelta(minutes=30),
            100 + i * 0.25,
            0.0,
            900.5,
            230.1,
            3.9,
            "actual",
            "modbus",
        )
        for i in range(48 * 2 + 1)  # two local days and the first instant of the third
    ]
    rows[5] = (meter, rows[5][1], 101.25, None, None, None, None, "estimated", "backfill")
    add_readings(db, rows)
    monkeypatch.setattr("sys.stdin", io.StringIO("long-enough-pass\n"))
    assert (
        doxa("users", "add", "lan", "--role", "billing", env={"DOXA_DATABASE_URL": db_url}).code
        == 0
    )
    made = doxa("users", "token", "lan", "--name", "script", env={"DOXA_DATABASE_URL": db_url})
    assert made.code == 0, made.err
    token = made.out.strip()

    client = make_app().test_client()
    url = "/api/v1/meters/RD-1/readings?from=2025-05-01&to=2025-05-02&limit=40"
    got = []
    pages = 0
    while url:
        page = client.get(url, headers=bearer(token))
        assert page.status_code == 200, page.get_data(as_text=True)
        body = page.get_json()
        assert body["meter_serial"] == "RD-1" and body["customer_code"] == "PB0101000001"
        got += body["readings"]
        url = body["next"]
        pages += 1
    assert pages == 3 and len(got) == 96
    assert got[0] == {
        "ts": "2025-05-01T00:00:00+07:00",
        "energy_import_kwh": 100.0,
        "energy_export_kwh": 0.0,
        "power_w": 900.5,
        "voltage_v": 230.1,
        "current_a": 3.9,
        "frequency_hz": None,
        "quality": "actual",
    }
    assert got[5]["quality"] == "estimated" and got[5]["power_w"] is None
    assert got[-1]["ts"] == "2025-05-02T23:30:00+07:00"
    # The same times and values as the CSV export.
    csv_out = doxa(
        "export", "readings", "--from", "2025-05-01", "--to", "2025-05-02",
        env={"DOXA_DATABASE_URL": db_url},
    ).out.splitlines()[1:]  # fmt: skip
    assert [line.split(",")[2] for line in csv_out] == [r["ts"] for r in got]
    assert [float(line.split(",")[3]) for line in csv_out] == [r["energy_import_kwh"] for r in got]


def test_readings_errors_are_json(db, make_app) -> None:
    add_meter(db, add_customer(db, "PB0101000001"), "RD-1")
    add_staff(db, "lan", "billing")
    client = signed_in_client(make_app(), "lan")  # a staff session works as well as a token
    cases = {
        "/api/v1/meters/NOPE/readings?from=2025-05-01&to=2025-05-01": (404, "no meter 'NOPE'"),
        "/api/v1/meters/RD-1/readings?to=2025-05-01": (400, "from is required"),
        "/api/v1/meters/RD-1/readings?from=2025-5-1&to=2025-05-01": (400, "from must be a date"),
        "/api/v1/meters/RD-1/readings?from=2025-05-02&to=2025-05-01": (400, "to is before from"),
        "/api/v1/meters/RD-1/readings?from=2025-05-01&to=2025-05-01&limit=0": (400, "limit"),
        "/api/v1/meters/RD-1/readings?from=2025-05-01&to=2025-05-01&after=x": (400, "after"),
    }
    for url, (status, message) in cases.items():
        response = client.get(url)
        assert response.status_code == status, url
        assert message in response.get_json()["error"], url


def test_openapi_document_describes_every_route(make_app) -> None:
    app = make_app()
    response = app.test_client().get("/api/v1/openapi.json")
    assert response.status_code == 200
    document = response.get_json()
    assert document["openapi"].startswith("3.1")
    documented = set(document["paths"])
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("api."):
            path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule.removeprefix("/api/v1"))
            assert path in documented, f"{rule.rule} is not in openapi.json"
            assert "get" in document["paths"][path]
    for path, item in document["paths"].items():
        for parameter in item["get"].get("parameters", []):
            if parameter["in"] == "path":
                assert "{" + parameter["name"] + "}" in path
        for answer in item["get"]["responses"].values():
            ref = (
                answer.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref")
            )
            if ref:
                assert (
                    ref.removeprefix("#/components/schemas/") in document["components"]["schemas"]
                )


def test_openapi_data_file_matches_the_code() -> None:
    """``lookup_web/openapi.json`` is data; it must say what the code does: the paging limit's
    range and the reading fields the readings route returns."""
    import exports
    from lookup_web import api

    document = api.openapi_document()
    limits = [
        p["schema"]
        for item in document["paths"].values()
        for p in item["get"].get("parameters", [])
        if p["name"] == "limit"
    ]
    assert limits and all(
        s == {"type": "integer", "minimum": 1, "maximum": api.MAX_LIMIT} for s in limits
    )
    reading = document["components"]["schemas"]["Readings"]["properties"]["readings"]["items"]
    assert list(reading["properties"]) == ["ts", *api.READING_FIELDS]
    quality = reading["properties"]["quality"]["enum"]
    assert quality == ["actual", "estimated", "edited"]
    # The days the readings route accepts, and its 400 for anything else.
    route = document["paths"]["/meters/{serial}/readings"]["get"]
    days = {p["name"]: p.get("description", "") for p in route["parameters"]}
    for name in ("from", "to", "after"):
        assert str(exports.FIRST_DAY) in days[name] and str(exports.LAST_DAY) in days[name], name
    assert {"400", "404"} <= set(route["responses"])
