"""The engineers' page /ops, driven by rows inserted as the collectors write them: a collector
going late then down when its heartbeats stop, last-hour figures, gateways, stale meters,
rejected messages and yesterday's read completeness per province."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient
from test_staff_helpers import add_customer, add_meter, add_readings, add_staff, app_factory
from test_staff_helpers import signed_in_client as _signed_in

pytestmark = pytest.mark.db
VN = ZoneInfo("Asia/Ho_Chi_Minh")


@pytest.fixture
def make_app(db_url: str) -> Iterator[Callable[..., Flask]]:
    yield from app_factory(db_url)


def engineer(app: Flask, db: psycopg.Connection) -> FlaskClient:
    add_staff(db, "minh", "engineer")
    return _signed_in(app, "minh")


def row_of(page: str, attribute: str, value: str) -> str:
    match = re.search(rf'<tr {attribute}="{re.escape(value)}"[^>]*>(.*?)</tr>', page, re.S)
    assert match, f"no row {attribute}={value}"
    return match[0]


def field(row: str, name: str) -> str:
    match = re.search(rf'data-field="{name}">(.*?)</td>', row, re.S)
    assert match, f"no field {name} in {row}"
    return re.sub(r"<[^>]+>", "", match[1]).strip()


def add_collector(db: psycopg.Connection, collector_id: str, **values: object) -> None:
    db.execute(
        "INSERT INTO collectors (id, host, version, pid, started_at, last_seen, poll_interval,"
        " spool_depth) VALUES (%s, 'edge-1', '0.1.0', 4242, now() - interval '2 hours',"
        " now() - %s::interval, %s, %s)",
        (
            collector_id,
            values.get("age", "0 s"),
            values.get("poll_interval", 60),
            values.get("spool_depth", 0),
        ),
    )


def test_a_collector_goes_late_then_down_when_its_heartbeats_stop(db, make_app) -> None:
    """The site's clock is injected (``CLOCK``): the last heartbeat stays at T while the clock
    moves past the late and down thresholds. No real time passes, so nothing races."""
    beat = datetime(2025, 6, 20, 10, 0, tzinfo=VN)
    add_collector(db, "edge-a")
    db.execute(
        "UPDATE collectors SET last_seen = %s, started_at = %s WHERE id = 'edge-a'",
        (beat, beat - timedelta(hours=3)),
    )
    db.execute(
        "INSERT INTO collector_heartbeats (ts, collector_id, readings_written)"
        " VALUES (%s, 'edge-a', 10)",
        (beat,),
    )
    now = [beat]
    app = make_app(OPS_LATE_AFTER=1.0, OPS_DOWN_AFTER=2.0, CLOCK=lambda: now[0])
    client = engineer(app, db)

    def status(after: float) -> str:
        now[0] = beat + timedelta(seconds=after)
        page = client.get("/ops").get_data(as_text=True)
        return re.search(r'data-collector="edge-a" data-status="(\w+)"', page)[1]  # type: ignore[index]

    seen = [status(s) for s in (0, 0.5, 1.0, 1.001, 2.0, 2.001, 3599)]
    assert seen == ["ok", "ok", "ok", "late", "late", "down", "down"]
    (api,) = client.get("/api/v1/collectors").get_json()["collectors"]
    assert (api["status"], api["heartbeat_age_s"], api["readings_written_1h"]) == ("down", 3599, 10)
    now[0] = beat + timedelta(hours=1)  # the heartbeat has left the last hour
    (api,) = client.get("/api/v1/collectors").get_json()["collectors"]
    assert api["readings_written_1h"] == 0


def test_completeness_is_computed_once_and_kept_for_its_ttl(
    db, db_url, make_app, monkeypatch
) -> None:
    """Concurrent requests that miss the cache wait for the one computing it; the entry lives
    OPS_COMPLETENESS_TTL seconds of the site's clock."""
    from lookup_web import ops

    calls: list[int] = []
    everyone_asked = threading.Event()
    real = ops.completeness

    def counted(*args: object) -> object:
        calls.append(1)
        everyone_asked.wait(timeout=10)  # hold the computation until all threads asked
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(ops, "completeness", counted)
    now = [datetime(2025, 6, 20, 10, 0, tzinfo=VN)]
    app = make_app(OPS_COMPLETENESS_TTL=600, CLOCK=lambda: now[0])
    asked = []
    results = []

    def ask() -> None:
        with app.app_context(), psycopg.connect(db_url) as conn:  # (info.dsn drops the password)
            asked.append(1)
            if len(asked) == 8:
                everyone_asked.set()
            results.append(ops.cached_completeness(conn, "Asia/Ho_Chi_Minh"))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(results) == 8 and len(set(map(repr, results))) == 1
    assert calls == [1]
    now[0] += timedelta(seconds=599)
    ask()
    assert calls == [1]
    now[0] += timedelta(seconds=2)  # past the TTL
    ask()
    assert calls == [1, 1]


def test_last_hour_figures_and_gateways(db, make_app) -> None:
    add_collector(db, "edge-a", spool_depth=42)
    add_collector(db, "edge-b", age="5 min")
    db.execute(
        "INSERT INTO collector_heartbeats (ts, collector_id, readings_written, polls_ok,"
        " polls_failed) VALUES (now() - interval '10 min', 'edge-a', 100, 90, 10),"
        " (now() - interval '1 min', 'edge-a', 150, 95, 5),"
        " (now() - interval '2 hours', 'edge-a', 9999, 0, 9999)"
    )
    # Latencies 1..100 ms, all ok: p95 (continuous) = 95.05 ms. Gateway A: 18 of 20 polls ok.
    db.execute(
        "INSERT INTO poll_outcomes (ts, collector_id, meter_id, gateway, outcome, latency_ms)"
        " SELECT now() - g * interval '10 s', 'edge-a', 1, '10.0.0.9:502', 'ok', g"
        " FROM generate_series(1, 100) g"
    )
    db.execute(
        "INSERT INTO poll_outcomes (ts, collector_id, meter_id, gateway, outcome, detail)"
        " SELECT now() - g * interval '1 min', 'edge-b', 2, '10.0.0.7:502',"
        " CASE WHEN g <= 2 THEN 'timeout' ELSE 'ok' END,"
        " CASE WHEN g <= 2 THEN 'no answer in 3 s' END FROM generate_series(1, 20) g"
    )
    db.execute(
        "INSERT INTO poll_outcomes (ts, collector_id, meter_id, gateway, outcome)"
        " VALUES (now(), 'edge-b', 2, '10.0.0.7:502', 'backoff')"
    )
    app = make_app()
    page = engineer(app, db).get("/ops").get_data(as_text=True)
    a = row_of(page, "data-collector", "edge-a")
    assert 'data-status="ok"' in a
    assert field(a, "readings_written") == "250"
    assert field(a, "poll_success") == "92.5 %"  # 185 of 200
    assert field(a, "latency_p95") == "95 ms"
    assert field(a, "spool_depth") == "42"
    assert 'data-status="down"' in row_of(page, "data-collector", "edge-b")
    gateway = row_of(page, "data-gateway", "10.0.0.7:502")
    assert field(gateway, "success") == "90.0 %"
    assert "timeout: no answer in 3 s" in gateway
    assert field(row_of(page, "data-gateway", "10.0.0.9:502"), "success") == "100.0 %"
    assert '<meta http-equiv="refresh" content="30">' in page  # refreshes by itself

    client = _signed_in(app, "minh")
    collectors = client.get("/api/v1/collectors").get_json()["collectors"]
    first = collectors[0]
    assert first["readings_written_1h"] == 250 and first["poll_success_rate_1h"] == 0.925
    assert first["poll_latency_p95_ms_1h"] == pytest.approx(95.05)
    gateways = {g["gateway"]: g for g in client.get("/api/v1/gateways").get_json()["gateways"]}
    assert gateways["10.0.0.7:502"]["polls_1h"] == 20
    assert gateways["10.0.0.7:502"]["skipped_1h"] == 1


def test_stale_meters_are_listed_with_their_last_reading_and_error(db, make_app) -> None:
    add_collector(db, "edge-a", poll_interval=60)
    customer = add_customer(db, "PB0101000001", province="Bình Dương")
    long_ago = datetime.now(VN) - timedelta(hours=3)
    meters = {
        serial: add_meter(db, customer, serial, **kwargs)
        for serial, kwargs in {
            "FRESH": {},
            "SILENT": {},
            "NEVER": {"created_at": long_ago},
            "NEW": {},
            "MQTT-OK": {"protocol": "mqtt"},
            "MQTT-OLD": {"protocol": "mqtt"},
        }.items()
    }
    status = [
        ("FRESH", "30 s", None),
        ("SILENT", "10 min", "timeout after 3 s"),
        ("MQTT-OK", "4 min", None),  # MQTT interval 300 s here: stale after 10 min
        ("MQTT-OLD", "11 min", None),
    ]
    for serial, age, error in status:
        db.execute(
            "INSERT INTO meter_status (meter_id, last_reading_ts, last_ok_at, last_error,"
            " last_error_at, consecutive_failures) VALUES (%s, now() - %s::interval,"
            " now() - %s::interval, %s, CASE WHEN %s::text IS NOT NULL THEN now() END, %s)",
            (meters[serial], age, age, error, error, 7 if error else 0),
        )
    app = make_app(OPS_MQTT_INTERVAL=300)
    page = engineer(app, db).get("/ops").get_data(as_text=True)
    stale = set(re.findall(r'<tr data-meter="([^"]+)"', page))
    assert stale == {"SILENT", "NEVER", "MQTT-OLD"}
    silent = row_of(page, "data-meter", "SILENT")
    assert "timeout after 3 s" in field(silent, "last_error")
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", field(silent, "last_reading"))
    assert field(row_of(page, "data-meter", "NEVER"), "last_reading") == "chưa bao giờ"  # never
    assert '<p class="value" id="stale-count">3</p>' in page

    api = _signed_in(app, "minh").get("/api/v1/meters/stale").get_json()
    assert api["count"] == 3
    assert [m["serial"] for m in api["meters"]] == ["NEVER", "MQTT-OLD", "SILENT"]
    silent_json = next(m for m in api["meters"] if m["serial"] == "SILENT")
    assert silent_json["last_error"] == "timeout after 3 s"
    assert silent_json["consecutive_failures"] == 7 and silent_json["interval_s"] == 60


def test_rejected_messages_with_their_reasons(db, make_app) -> None:
    db.execute(
        "INSERT INTO rejected_messages (received_at, collector_id, source, topic, meter_serial,"
        " reason, payload) VALUES"
        " (now() - interval '2 min', 'edge-a', 'mqtt', 'doxa/meters/X9/reading', 'X9',"
        "  'unknown meter X9', '{\"ts\": 1}'),"
        " (now() - interval '1 min', 'edge-a', 'mqtt', 'tele/T1/SENSOR', 'T1',"
        "  'invalid JSON: Expecting value', '\\x00ff'::bytea)"
    )
    app = make_app()
    page = engineer(app, db).get("/ops").get_data(as_text=True)
    reasons = re.findall(r'data-field="reason">([^<]+)</td>', page)
    assert reasons == ["invalid JSON: Expecting value", "unknown meter X9"]
    assert "tele/T1/SENSOR" in page and '<p class="value" id="rejected-count">2</p>' in page
    api = _signed_in(app, "minh").get("/api/v1/rejected-messages").get_json()
    assert api["messages"][1]["payload_preview"] == '{"ts": 1}'


def test_read_completeness_per_province_for_yesterday(db, make_app) -> None:
    """Modbus meters every 6 hours (4 intervals a day), MQTT meters every 12 hours (2)."""
    yesterday = datetime.now(VN).date() - timedelta(days=1)
    midnight = datetime.combine(yesterday, datetime.min.time(), VN)
    created = midnight - timedelta(days=3)
    north = add_customer(db, "PB0101000001", province="Bắc Ninh")
    south = add_customer(db, "PE0101000002", province="Cà Mau")
    full = add_meter(db, north, "FULL", created_at=created)
    gap = add_meter(db, north, "GAP", created_at=created)
    mqtt = add_meter(db, south, "MQ", protocol="mqtt", created_at=created)
    add_meter(db, south, "BORN-TODAY")  # added after yesterday: not counted
    backfilled = add_meter(db, south, "BACKFILLED")  # added today with yesterday's history
    h = timedelta(hours=1)

    def at(meter_id: int, *hours: float) -> list[tuple[object, ...]]:
        return [
            (meter_id, midnight + x * h, 1.0 + x, None, None, None, None, "actual", "modbus")
            for x in hours
        ]

    add_readings(
        db,
        at(full, 1, 7, 13, 19.5, 24)  # 24 h is today: ignored
        + at(gap, 1, 2, 3, 13, 19)  # nothing from 06:00 to 12:00
        + at(mqtt, 5, 17)
        + at(backfilled, 2, 8, 14, 20),
    )
    app = make_app(OPS_POLL_INTERVAL=6 * 3600, OPS_MQTT_INTERVAL=12 * 3600)
    page = engineer(app, db).get("/ops").get_data(as_text=True)
    assert f"{yesterday:%Y-%m-%d}" in page
    north_row = row_of(page, "data-province", "Bắc Ninh")
    assert (field(north_row, "complete"), field(north_row, "meters")) == ("1", "2")
    south_row = row_of(page, "data-province", "Cà Mau")
    assert (field(south_row, "complete"), field(south_row, "meters")) == ("2", "2")
    api = _signed_in(app, "minh").get("/api/v1/completeness").get_json()
    assert api["day"] == yesterday.isoformat()
    assert {p["province"]: (p["complete"], p["meters"], p["ratio"]) for p in api["provinces"]} == {
        "Bắc Ninh": (1, 2, 0.5),
        "Cà Mau": (2, 2, 1.0),
    }


def test_admins_forget_a_decommissioned_collector(db, make_app) -> None:
    add_collector(db, "old-box", age="3 days")
    add_staff(db, "root", "admin")
    client = _signed_in(make_app(), "root")
    page = client.get("/ops").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)[1]  # type: ignore[index]
    response = client.post("/ops/collectors/old-box/forget", data={"csrf_token": token})
    assert response.status_code == 302 and response.headers["Location"] == "/ops"
    assert db.execute("SELECT count(*) FROM collectors").fetchone() == (0,)
    assert db.execute(
        "SELECT actor, action FROM audit_log WHERE action LIKE 'collector%'"
    ).fetchall() == [("root", "collector.forget")]
    again = client.post("/ops/collectors/old-box/forget", data={"csrf_token": token})
    assert again.status_code == 404
