"""Hostile MQTT input through the real broker, collector and database (issue 20): one bad
message is rejected alone with a reason, impossible values and times are refused, rejections are
cut, rate-bound and expire, nothing non-finite is stored or sent."""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import paho.mqtt.client as paho
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from test_collector_support import (
    InProcessCollector,
    LoopThread,
    count,
    import_mqtt_meters,
    set_installed_at,
    stored,
    test_config,
    wait_for,
)

from collector import Collector

pytestmark = [pytest.mark.db, pytest.mark.mqtt]


@pytest.fixture
def loop() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.close()


def publish(mqtt_url: str, messages: list[tuple[str, bytes]]) -> None:
    """Publish every (topic, payload) at QoS 1 on one connection, in order, and wait for each."""
    host, port = mqtt_url.removeprefix("mqtt://").rsplit(":", 1)
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"hostile-{uuid.uuid4().hex[:8]}")
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect(host, int(port))
    client.loop_start()
    try:
        infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(20)
            assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


def native(ts: datetime, kwh: Any, **extra: Any) -> bytes:
    return json.dumps({"ts": ts.isoformat(), "energy_import_kwh": kwh, **extra}).encode()


def topic(serial: str) -> str:
    return f"doxa/meters/{serial}/reading"


def started(collector: Collector) -> Collector:
    assert collector.mqtt is not None
    assert collector.mqtt.connected.wait(15), "the collector did not subscribe"
    return collector


def collector_config(db_url: str, mqtt_url: str, home: Path, **changes: Any) -> Any:
    return test_config(
        db_url,
        home,
        collector_id=f"t-{uuid.uuid4().hex[:8]}",
        mqtt_url=mqtt_url,
        polling=False,
        batch_size=10_000,  # one batch: everything published within the interval
        batch_interval=1.0,
        **changes,
    )


def rejections(db: psycopg.Connection) -> list[tuple[str | None, str | None, str]]:
    return db.execute(
        "SELECT topic, meter_serial, reason FROM rejected_messages ORDER BY id"
    ).fetchall()  # type: ignore[return-value]


NOW = datetime.now(UTC).replace(microsecond=0)
VN = ZoneInfo("Asia/Ho_Chi_Minh")


def test_a_message_nested_988_levels_deep_is_rejected_alone_and_its_batch_is_stored(
    loop: LoopThread, mqtt_url: str, db_url: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    """Finding 2: it raised RecursionError in the flusher, which dropped the whole batch."""
    import_mqtt_meters(db_url, ["DEEP-A", "DEEP-B"])
    deep = b'{"ts": "%s", "energy_import_kwh": %s1%s}' % (
        NOW.isoformat().encode(),
        b"[" * 988,
        b"]" * 988,
    )
    wide = b'{"ts": "%s", "energy_import_kwh": 1, "x": %s}' % (
        NOW.isoformat().encode(),
        b"[{" * 600 + b"}]" * 600,
    )
    with InProcessCollector(loop, collector_config(db_url, mqtt_url, tmp_path)) as collector:
        started(collector)
        publish(
            mqtt_url,
            [
                (topic("DEEP-A"), native(NOW - timedelta(minutes=2), 10.0)),
                (topic("DEEP-B"), deep),
                (topic("DEEP-B"), wide),
                (topic("DEEP-B"), native(NOW - timedelta(minutes=1), 20.0)),
                (topic("DEEP-A"), native(NOW, 10.5)),
            ],
        )
        wait_for(
            lambda: (
                count(db, "SELECT count(*) FROM readings") == 3
                and count(db, "SELECT count(*) FROM rejected_messages") == 2
            ),
            timeout=15,
            what="the three good readings and the two rejections",
        )
    assert [(s, e) for s, _ts, e, *_ in stored(db)] == [
        ("DEEP-A", 10.0),
        ("DEEP-A", 10.5),
        ("DEEP-B", 20.0),
    ]
    for _topic, serial, reason in rejections(db):
        assert serial == "DEEP-B"
        assert "nested too deeply (more than 32 levels" in reason
    assert collector.stats.snapshot().get("flusher_errors", 0) == 0


def test_long_unique_topics_are_cut_bounded_and_rate_limited(
    loop: LoopThread, mqtt_url: str, db_url: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    """Finding 3: 60,000-character topics were cached, stored and shown whole."""
    import_mqtt_meters(db_url, ["LONG-OK"])
    hostile = [(topic(f"{i:05d}" + "x" * 60_000), native(NOW, 1.0)) for i in range(70)] + [
        (f"tele/{'y' * 300}-{i}/SENSOR", b"{}") for i in range(5)
    ]
    config = collector_config(db_url, mqtt_url, tmp_path)  # at most 60 a minute per prefix
    with InProcessCollector(loop, config) as collector:
        started(collector)
        publish(mqtt_url, [*hostile, (topic("LONG-OK"), native(NOW, 5.0))])
        wait_for(
            lambda: (
                count(db, "SELECT count(*) FROM readings") == 1
                and collector.stats.snapshot().get("mqtt_rejected", 0) == len(hostile)
            ),
            timeout=20,
            what="the good reading and every hostile message counted",
        )
    rows = rejections(db)
    # 60 under "doxa" (the other 10 counted, not stored) and the 5 under "tele".
    assert len(rows) == 60 + 5
    for stored_topic, serial, reason in rows:
        assert stored_topic is not None and len(stored_topic) <= 256
        assert serial is None or len(serial) <= 64
        assert len(reason) <= 500
        assert "more than the 256 allowed" in reason
    payloads = db.execute("SELECT max(length(payload)) FROM rejected_messages").fetchone()
    assert payloads is not None and payloads[0] <= 16 * 1024
    assert collector.mqtt is not None
    entries, chars = collector.mqtt.router.cached
    assert entries <= 1 and chars < 100  # only the good topic's route was kept

    # The engineers' page reads a cut list, whatever is in the table.
    from lookup_web import ops

    db.execute(
        "INSERT INTO rejected_messages (source, topic, meter_serial, reason, payload)"
        " VALUES ('mqtt', %s, %s, %s, %s)",
        ("t/" + "z" * 70_000, "s" * 1000, "r" * 70_000, b"p" * 70_000),
    )
    shown = ops.rejected_messages(db, 50)
    assert len(shown) == 50
    assert all(len(m.topic or "") <= 120 and len(m.reason) <= 300 for m in shown)
    assert all(len(m.meter_serial or "") <= 64 for m in shown)


def test_rejected_messages_older_than_the_retention_are_deleted(
    loop: LoopThread, mqtt_url: str, db_url: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    """Finding 3: rejected_messages had no retention."""
    db.execute(
        "INSERT INTO rejected_messages (received_at, source, topic, reason)"
        " SELECT now() - make_interval(days => d), 'mqtt', 'old/' || d, 'old'"
        " FROM generate_series(1, 30) AS d"
    )
    config = collector_config(db_url, mqtt_url, tmp_path, retention_interval=0.5)  # 14 days
    with InProcessCollector(loop, config):
        wait_for(
            lambda: count(db, "SELECT count(*) FROM rejected_messages") == 13,
            timeout=15,
            what="rows 14 days old and older deleted",
        )
    assert [t for (t,) in db.execute("SELECT topic FROM rejected_messages ORDER BY id")] == [
        f"old/{d}" for d in range(1, 14)
    ]
    # The deletion left its trace: who, how many, which span of arrival times.
    audits = db.execute(
        "SELECT actor, row_count, detail->>'retention_days', (detail->>'oldest')::timestamptz,"
        " (detail->>'newest')::timestamptz FROM audit_log WHERE action = 'rejected.retention'"
    ).fetchall()
    assert sum(a[1] for a in audits) == 17
    assert {(a[0], a[2]) for a in audits} == {(f"collector:{config.collector_id}", "14")}
    oldest = min(a[3] for a in audits)
    newest = max(a[4] for a in audits)
    assert (newest - oldest) == timedelta(days=30 - 14)


def test_impossible_values_and_times_are_rejected_with_a_reason(
    loop: LoopThread, mqtt_url: str, db_url: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    """Findings 4 (register 1.7e308, power beyond any rating) and 6 (years 1 and 1900, before
    the meter was installed); Tasmota's three-phase Power sum (finding 5)."""
    import_mqtt_meters(db_url, ["ABS-1", "ABS-2", "tasmota-1"])
    installed = NOW - timedelta(days=30)
    set_installed_at(db, "ABS-2", installed)
    messages = [
        (topic("ABS-1"), native(NOW - timedelta(minutes=5), 1.7e308)),
        (topic("ABS-1"), native(NOW - timedelta(minutes=4), 1e9 + 1)),
        (topic("ABS-1"), native(NOW - timedelta(minutes=3), 5.0, energy_export_kwh=2e9)),
        (topic("ABS-1"), native(NOW - timedelta(minutes=2), 5.0, power_w=-2e6)),
        (topic("ABS-1"), native(datetime(1, 1, 1, tzinfo=UTC), 5.0)),
        (topic("ABS-1"), native(datetime(1900, 1, 1, tzinfo=UTC), 5.0)),
        (topic("ABS-1"), native(NOW - timedelta(days=401), 5.0)),
        (topic("ABS-2"), native(installed - timedelta(minutes=1), 5.0)),
        (
            "tele/tasmota-1/SENSOR",
            json.dumps(
                {
                    "Time": NOW.astimezone(VN).replace(tzinfo=None).isoformat(),
                    "ENERGY": {"Total": 3.0, "Power": [1.7e308, 1.7e308, 1.7e308]},
                }
            ).encode(),
        ),
        # These are possible, and stored:
        (topic("ABS-1"), native(NOW - timedelta(days=399), 1.0, power_w=-900_000.0)),
        (topic("ABS-1"), native(NOW, 1e9, energy_export_kwh=1e9)),
        (topic("ABS-2"), native(installed, 4.0)),
    ]
    with InProcessCollector(loop, collector_config(db_url, mqtt_url, tmp_path)) as collector:
        started(collector)
        publish(mqtt_url, messages)
        wait_for(
            lambda: (
                count(db, "SELECT count(*) FROM rejected_messages") == 9
                and count(db, "SELECT count(*) FROM readings") == 3
            ),
            timeout=15,
            what="nine rejections and three readings",
        )
    reasons = [reason for _t, _s, reason in rejections(db)]
    assert reasons[0] == (
        "energy_import_kwh 1.7e+308 is above the largest register accepted (1000000000 kWh)"
    )
    assert reasons[1].startswith("energy_import_kwh 1000000001 is above the largest register")
    assert reasons[2].startswith("energy_export_kwh 2000000000 is above the largest register")
    assert reasons[3] == "power_w -2000000 is beyond the largest power accepted (1000000 W)"
    assert "0001-01-01T00:00:00+00:00 is more than 400 days old" in reasons[4]
    assert "1900-01-01T00:00:00+00:00 is more than 400 days old" in reasons[5]
    assert "is more than 400 days old (older history goes through `doxa backfill`)" in reasons[6]
    assert f"is before the meter was installed ({installed.isoformat()})" in reasons[7]
    assert reasons[8] == "the sum of ENERGY.Power is not a finite number"
    values = [v for row in stored(db) for v in row[2:] if v is not None]
    assert all(math.isfinite(v) for v in values)
    # No chunk was made for year 1 or 1900.
    assert count(db, "SELECT count(*) FROM readings WHERE ts < '2000-01-01'") == 0


def test_metrics_listen_on_127_0_0_1_by_default(
    loop: LoopThread, mqtt_url: str, db_url: str, tmp_path: Path
) -> None:
    config = collector_config(db_url, mqtt_url, tmp_path, metrics_port=0)
    with InProcessCollector(loop, config) as collector:
        assert collector._metrics is not None
        assert collector._metrics.server_address[0] == "127.0.0.1"
