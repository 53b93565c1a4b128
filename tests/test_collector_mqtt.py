"""MQTT ingestion through the real broker: every reading once, equal to the truth; bad messages
rejected with their reason; shared subscriptions split the stream; a graceful stop flushes."""

from __future__ import annotations

import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from test_collector_support import (
    InProcessCollector,
    LoopThread,
    count,
    import_csv,
    stored,
    test_config,
    wait_for,
)

from collector import Collector
from simulators.mqtt import MALFORMED_KINDS, MqttFleet, Published

pytestmark = [pytest.mark.db, pytest.mark.mqtt]


@pytest.fixture
def loop() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.close()


def expected_rows(fleet: MqttFleet) -> list[tuple]:
    return sorted(
        (r.serial, r.ts, r.energy_import_kwh, r.energy_export_kwh, r.power_w, r.voltage_v,
         r.current_a, r.frequency_hz)
        for r in fleet.expected_readings().values()
    )  # fmt: skip


def rejection_reason(p: Published) -> str:
    return p.reason if p.reason is not None else f"unknown meter serial {p.serial!r}"


def metric(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in /metrics")


def started(collector: Collector) -> Collector:
    assert collector.mqtt is not None
    assert collector.mqtt.connected.wait(15), "the collector did not subscribe"
    return collector


def test_native_and_tasmota_with_faults_are_stored_once_and_bad_messages_rejected(
    loop: LoopThread, mqtt_url: str, db_url: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    fleet = MqttFleet(mqtt_url, meters=6, seed=3, formats=("native", "tasmota"), interval=60)
    import_csv(db_url, fleet.inventory_csv())
    config = test_config(
        db_url,
        tmp_path,
        collector_id=f"t-{uuid.uuid4().hex[:8]}",
        mqtt_url=mqtt_url,
        polling=False,
        metrics_port=0,
    )
    with InProcessCollector(loop, config) as collector, fleet:
        started(collector)
        now = fleet.now().replace(second=0)
        native = [m.serial for m in fleet.meters if m.format == "native"]
        tasmota = [m.serial for m in fleet.meters if m.format == "tasmota"]
        fleet.go_offline(native[0])
        for k in range(5, 0, -1):
            fleet.publish_round(now - timedelta(minutes=k))
        fleet.come_online(native[0])  # its backlog: one array of five readings
        fleet.publish_duplicate(native[1])
        fleet.publish_duplicate(tasmota[0])
        fleet.publish_out_of_order(native[2])
        fleet.publish_out_of_order(tasmota[1])
        for kind in MALFORMED_KINDS:
            fleet.publish_malformed(native[1], kind)
            fleet.publish_malformed(tasmota[2], kind)
        fleet.publish_unknown(fmt="native")
        fleet.publish_unknown(fmt="tasmota")
        assert fleet.flush()
        expected = expected_rows(fleet)
        rejections = fleet.expected_rejections()
        wait_for(
            lambda: (
                count(db, "SELECT count(*) FROM readings") >= len(expected)
                and count(db, "SELECT count(*) FROM rejected_messages") >= len(rejections)
            ),
            what="every reading and rejection",
        )
        port = collector.metrics_port
        assert port is not None
        wait_for(lambda: metric(port, "doxa_collector_readings_written_total") == len(expected))
        wait_for(
            lambda: (
                metric(port, 'doxa_collector_mqtt_messages_total{outcome="rejected"}')
                == len(rejections)
            )
        )
        assert metric(port, "doxa_collector_spool_depth") == 0
        assert metric(port, "doxa_collector_batch_write_seconds_count") >= 1

    assert any(len(p.readings) == 5 for p in fleet.published)  # the array really was one message
    assert stored(db) == expected  # once each, equal to the truth (Tasmota: no export, no Hz)
    rows = db.execute(
        "SELECT topic, meter_serial, reason, payload, collector_id, source FROM rejected_messages"
    ).fetchall()
    assert sorted(r[:4] for r in rows) == sorted(
        (p.topic, p.serial, rejection_reason(p), p.payload) for p in rejections
    )
    assert {r[4:] for r in rows} == {(config.collector_id, "mqtt")}
    beats = db.execute(
        "SELECT sum(mqtt_received), sum(mqtt_rejected), sum(readings_written)"
        " FROM collector_heartbeats WHERE collector_id = %s",
        (config.collector_id,),
    ).fetchone()
    assert beats == (len(fleet.published), len(rejections), len(expected))


def test_a_shared_subscription_splits_the_stream_between_collectors(
    loop: LoopThread, mqtt_url: str, db_url: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    fleet = MqttFleet(mqtt_url, meters=10, seed=4, formats=("native",), interval=60)
    import_csv(db_url, fleet.inventory_csv())
    group = f"g{uuid.uuid4().hex[:6]}"
    configs = [
        test_config(
            db_url,
            tmp_path / name,
            collector_id=f"{name}-{group}",
            mqtt_url=mqtt_url,
            share_group=group,
            polling=False,
        )
        for name in ("a", "b")
    ]
    with (
        InProcessCollector(loop, configs[0]) as a,
        InProcessCollector(loop, configs[1]) as b,
        fleet,
    ):
        started(a), started(b)
        start = fleet.now().replace(second=0) - timedelta(hours=1)
        for k in range(20):
            fleet.publish_round(start + timedelta(minutes=k))
        assert fleet.flush()
        wait_for(lambda: count(db, "SELECT count(*) FROM readings") >= 200)
        received = [c.stats.snapshot().get("mqtt_received", 0) for c in (a, b)]
    assert stored(db) == expected_rows(fleet)
    assert sum(received) == 200 and min(received) > 0, received  # split, each message once


def test_a_graceful_stop_flushes_and_acknowledges_what_was_received(
    loop: LoopThread, mqtt_url: str, db_url: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    fleet = MqttFleet(mqtt_url, meters=4, seed=5, formats=("native", "tasmota"), interval=60)
    import_csv(db_url, fleet.inventory_csv())
    # Batches that would wait half a minute: only the stop's flush writes them in time.
    config = test_config(
        db_url,
        tmp_path,
        collector_id=f"t-{uuid.uuid4().hex[:8]}",
        mqtt_url=mqtt_url,
        polling=False,
        batch_interval=30.0,
        batch_size=100_000,
    )
    with fleet:
        with InProcessCollector(loop, config) as collector:
            started(collector)
            start = fleet.now().replace(second=0) - timedelta(hours=2)
            for k in range(25):
                fleet.publish_round(start + timedelta(minutes=k))
            assert fleet.flush()
            wait_for(lambda: collector.pipeline.pending == 100, what="100 messages taken in")
            assert count(db, "SELECT count(*) FROM readings") == 0
        assert stored(db) == expected_rows(fleet)  # written by the stop

        # They were acknowledged too: the next session of this id gets only what is new (the
        # broker would send unacknowledged messages first, ahead of the new one).
        with InProcessCollector(loop, replace(config, batch_interval=0.05)) as again:
            started(again)
            fleet.publish_reading(fleet.meters[0].serial, start + timedelta(hours=1))
            assert fleet.flush()
            wait_for(lambda: count(db, "SELECT count(*) FROM readings") == 101)
            assert again.stats.snapshot()["mqtt_received"] == 1
    assert stored(db) == expected_rows(fleet)


def test_the_collector_reconnects_and_subscribes_again_after_the_broker_dies(
    loop: LoopThread, private_broker, db_url: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    fleet = MqttFleet(private_broker.url, meters=3, seed=6, formats=("native", "tasmota"))
    import_csv(db_url, fleet.inventory_csv())
    config = test_config(
        db_url, tmp_path, collector_id="reconnect", mqtt_url=private_broker.url, polling=False
    )
    start = fleet.now().replace(second=0) - timedelta(hours=1)
    with InProcessCollector(loop, config) as collector:
        started(collector)
        with fleet:
            fleet.publish_round(start)
        wait_for(lambda: count(db, "SELECT count(*) FROM readings") == 3)

        # SIGKILL before any autosave: the broker comes back without the collector's session,
        # so only a collector that subscribes again on reconnect gets the next messages.
        private_broker.kill()
        wait_for(lambda: collector.stats.snapshot().get("mqtt_disconnects", 0) >= 1)
        private_broker.start()
        started(collector)
        with fleet:
            fleet.publish_round(start + timedelta(minutes=1))
        wait_for(lambda: count(db, "SELECT count(*) FROM readings") == 6, what="after reconnect")
    assert stored(db) == expected_rows(fleet)
