"""/ops's stale meters from the indexed cadence state of migration 1310: right at once after a
settings change, for never-read meters, deactivated and moved meters, and for the writer's own
upserts; and equal, over a mixed fleet and several settings, to the definition computed by a
join of every meter (what the page did before)."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from flask import Flask
from test_staff_helpers import add_customer, add_meter, add_staff, app_factory
from test_staff_helpers import signed_in_client as _signed_in

from collector.units import Unit
from collector.writer import Writer
from lookup_web.ops import Thresholds, stale_meters
from protocols.reading import Reading
from schema.rollup import INTERVAL_JOINS, INTERVAL_SQL

pytestmark = pytest.mark.db
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@pytest.fixture
def make_app(db_url: str) -> Iterator[Callable[..., Flask]]:
    yield from app_factory(db_url)


def thresholds(mqtt: float = 300, poll: float = 60) -> Thresholds:
    return Thresholds(15, 60, poll, mqtt)


def heard(db: psycopg.Connection, meter: int, ago: timedelta) -> None:
    db.execute(
        "INSERT INTO meter_status (meter_id, last_reading_ts) VALUES (%s, %s)"
        " ON CONFLICT (meter_id) DO UPDATE SET last_reading_ts = EXCLUDED.last_reading_ts",
        (meter, NOW - ago),
    )


def stale(db: psycopg.Connection, limit: int = 100, **kw: float) -> tuple[int, list[str]]:
    total, rows = stale_meters(db, thresholds(**kw), limit, NOW)
    return total, [r.serial for r in rows]


def add_collector(db: psycopg.Connection, cid: str, poll_interval: float | None) -> None:
    db.execute(
        "INSERT INTO collectors (id, host, version, pid, started_at, last_seen, poll_interval)"
        " VALUES (%s, 'h', '0', 1, %s, %s, %s)",
        (cid, NOW - timedelta(hours=1), NOW - timedelta(seconds=5), poll_interval),
    )


def test_a_settings_change_applies_at_once(db, make_app) -> None:
    customer = add_customer(db, "PB0101000001")
    for serial, minutes in (("M4", 4), ("M11", 11), ("M25", 25)):
        heard(db, add_meter(db, customer, serial, protocol="mqtt"), timedelta(minutes=minutes))
    assert stale(db, mqtt=300) == (2, ["M25", "M11"])
    assert stale(db, mqtt=900) == (0, [])  # stale after 30 minutes now
    assert stale(db, mqtt=100) == (3, ["M25", "M11", "M4"])

    add_staff(db, "minh", "engineer")
    for interval, count in ((300, 2), (900, 0), (100, 3)):
        app = make_app(OPS_MQTT_INTERVAL=interval, CLOCK=lambda: NOW)
        api = _signed_in(app, "minh").get("/api/v1/meters/stale").get_json()
        assert api["count"] == count


def test_a_collectors_poll_interval_applies_to_its_meters_at_once(db) -> None:
    customer = add_customer(db, "PB0101000001")
    add_collector(db, "edge-a", 60)
    mine = add_meter(db, customer, "MINE", collector_id="edge-a")
    shared = add_meter(db, customer, "SHARED")
    for meter in (mine, shared):
        heard(db, meter, timedelta(minutes=5))
    assert stale(db) == (2, ["MINE", "SHARED"])  # 5 min > 2 × 60 s
    db.execute("UPDATE collectors SET poll_interval = 600 WHERE id = 'edge-a'")
    # edge-a now polls every 10 min: its meter and the shared one (the shortest interval of the
    # collectors seen in the last day) are fine.
    assert stale(db) == (0, [])
    add_collector(db, "edge-b", 30)
    assert stale(db) == (1, ["SHARED"])
    db.execute("DELETE FROM collectors WHERE id = 'edge-a'")  # forgotten: the shared rule
    assert stale(db) == (2, ["MINE", "SHARED"])


def test_never_read_meters_count_from_when_they_were_added(db) -> None:
    customer = add_customer(db, "PB0101000001")
    add_meter(db, customer, "OLD", protocol="mqtt", created_at=NOW - timedelta(hours=2))
    add_meter(db, customer, "OLDER", protocol="mqtt", created_at=NOW - timedelta(hours=3))
    add_meter(db, customer, "NEW", protocol="mqtt", created_at=NOW - timedelta(minutes=1))
    failing = add_meter(db, customer, "FAILING", created_at=NOW - timedelta(hours=1))
    # A Modbus meter polled but never answering has a status row without a reading.
    db.execute(
        "INSERT INTO meter_status (meter_id, last_error, last_error_at, consecutive_failures)"
        " VALUES (%s, 'timeout', %s, 9)",
        (failing, NOW),
    )
    read = add_meter(db, customer, "READ", protocol="mqtt", created_at=NOW - timedelta(days=9))
    heard(db, read, timedelta(hours=5))
    assert stale(db) == (4, ["OLDER", "OLD", "FAILING", "READ"])  # never read first
    assert stale(db, limit=2) == (4, ["OLDER", "OLD"])
    assert stale(db, limit=0) == (4, [])

    heard(db, failing, timedelta(seconds=10))  # its first reading
    assert db.execute("SELECT ever_read FROM meters WHERE id = %s", (failing,)).fetchone() == (
        True,
    )
    assert stale(db) == (3, ["OLDER", "OLD", "READ"])
    db.execute("DELETE FROM meter_status WHERE meter_id = %s", (read,))
    assert stale(db) == (3, ["READ", "OLDER", "OLD"])  # never read again, added 9 days ago
    db.execute("TRUNCATE meter_status")
    assert stale(db) == (4, ["READ", "OLDER", "OLD", "FAILING"])


def test_deactivated_and_moved_meters(db) -> None:
    customer = add_customer(db, "PB0101000001")
    add_collector(db, "edge-a", 600)
    add_collector(db, "edge-b", 60)  # meters of no collector: the shortest interval, 60 s
    gone = add_meter(db, customer, "GONE", protocol="mqtt")
    never = add_meter(db, customer, "NEVER", protocol="mqtt", created_at=NOW - timedelta(hours=1))
    moved = add_meter(db, customer, "MOVED")
    for meter in (gone, moved):
        heard(db, meter, timedelta(minutes=15))
    assert stale(db) == (3, ["NEVER", "GONE", "MOVED"])
    db.execute("UPDATE meters SET active = false WHERE id IN (%s, %s)", (gone, never))
    assert stale(db) == (1, ["MOVED"])
    db.execute("UPDATE meters SET collector_id = 'edge-a' WHERE id = %s", (moved,))
    assert stale(db) == (0, [])  # edge-a polls every 10 min: stale after 20
    db.execute("UPDATE meters SET active = true WHERE id = %s", (gone,))
    assert stale(db) == (1, ["GONE"])


def test_the_writers_upserts_keep_the_state(db, db_url) -> None:
    customer = add_customer(db, "PB0101000001")
    a = add_meter(db, customer, "WA", protocol="mqtt", created_at=NOW - timedelta(days=1))
    add_meter(db, customer, "WB", protocol="mqtt", created_at=NOW - timedelta(days=1))
    assert stale(db) == (2, ["WA", "WB"])
    writer = Writer(db_url, "c1")
    at = NOW - timedelta(minutes=20)
    reading = Reading("WA", at, 10.0, 0.0, 850.0, 229.8, 3.9, 50.0)
    writer.write([Unit("mqtt", (reading,), "doxa/meters/WA/reading", "WA", b"{}")])
    writer.close()
    assert db.execute(
        "SELECT s.cadence, s.active, m.ever_read FROM meter_status s"
        " JOIN meters m ON m.id = s.meter_id WHERE s.meter_id = %s",
        (a,),
    ).fetchone() == ("mqtt", True, True)
    assert stale(db) == (2, ["WB", "WA"])
    assert stale(db, mqtt=900) == (1, ["WB"])


_DEFINITION = f"""
SELECT m.serial FROM meters m LEFT JOIN meter_status s ON s.meter_id = m.id {INTERVAL_JOINS}
 WHERE m.active AND coalesce(s.last_reading_ts, m.created_at)
       < %(now)s::timestamptz - 2 * ({INTERVAL_SQL}) * interval '1 second'
 ORDER BY s.last_reading_ts IS NOT NULL, coalesce(s.last_reading_ts, m.created_at), m.id"""


def test_equal_to_the_definition_over_a_mixed_fleet(db) -> None:
    rng = random.Random(19)
    customer = add_customer(db, "PB0101000001")
    add_collector(db, "edge-a", 60)
    add_collector(db, "edge-b", 900)
    for k in range(300):
        protocol = rng.choice(["mqtt", "modbus"])
        meter = add_meter(
            db,
            customer,
            f"R{k:03d}",
            protocol=protocol,
            gateway=(f"10.0.{k // 200}.1", 502),
            unit_id=k % 200 + 1,
            collector_id=rng.choice([None, "edge-a", "edge-b", "gone"]),
            created_at=NOW - timedelta(minutes=rng.randint(0, 120)),
        )
        if rng.random() < 0.7:
            heard(db, meter, timedelta(minutes=rng.randint(0, 60)))
        if rng.random() < 0.1:
            db.execute("UPDATE meters SET active = false WHERE id = %s", (meter,))
    for mqtt, poll in ((300, 60), (60, 600), (1800, 30)):
        expected = [
            r[0]
            for r in db.execute(_DEFINITION, {"now": NOW, "mqtt": mqtt, "poll": poll}).fetchall()
        ]
        assert stale(db, limit=1000, mqtt=mqtt, poll=poll) == (len(expected), expected)
        assert stale(db, limit=7, mqtt=mqtt, poll=poll) == (len(expected), expected[:7])
