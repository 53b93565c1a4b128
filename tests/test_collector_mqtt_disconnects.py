"""The broker goes away 20 times in a row during a QoS 1 stream of 5,000 messages: nothing is
lost and nothing is stored twice. Every cut lands while the collector holds messages it has not
acknowledged yet (its writer is slowed by the writer's test hook), so acknowledgements race
reconnects: a PUBACK of an old connection must never reach a new one (collector/mqtt.py)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as paho
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from test_collector_support import (
    InProcessCollector,
    LoopThread,
    count,
    import_mqtt_meters,
    test_config,
    wait_for,
)

from collector.units import Unit
from doxa.services.mosquitto import EmbeddedMosquitto
from protocols.broker_url import parse_broker_url

pytestmark = [pytest.mark.db, pytest.mark.mqtt, pytest.mark.slow]

METERS = 50
CUTS = 20
PER_CUT = 250  # 20 × 250 = 5,000 messages
T0 = datetime(2026, 10, 1, tzinfo=UTC)


@pytest.fixture
def loop() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.close()


def message(i: int) -> tuple[str, bytes, tuple[str, datetime, float]]:
    serial = f"DC{i % METERS:03d}"
    ts = T0 + timedelta(minutes=i // METERS)
    energy = 1000.0 + i / 4
    body = {"ts": ts.isoformat(), "energy_import_kwh": energy, "power_w": 500.0}
    return f"doxa/meters/{serial}/reading", json.dumps(body).encode(), (serial, ts, energy)


def publish(url: str, numbers: range) -> None:
    """Publish at QoS 1 and wait until the broker has every message."""
    address = parse_broker_url(url)
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"dc-pub-{uuid.uuid4().hex[:6]}")
    client.connect(address.host, address.port)
    client.loop_start()
    try:
        infos = [client.publish(*message(i)[:2], qos=1) for i in numbers]
        for info in infos:
            info.wait_for_publish(15)
            assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


def test_twenty_broker_disconnects_during_a_qos1_stream_lose_and_duplicate_nothing(
    loop: LoopThread, db_url: str, private_broker: EmbeddedMosquitto, tmp_path: Path
) -> None:
    import_mqtt_meters(db_url, [f"DC{i:03d}" for i in range(METERS)])
    config = test_config(
        db_url,
        tmp_path,
        collector_id=f"dc-{uuid.uuid4().hex[:8]}",
        mqtt_url=private_broker.url,
        polling=False,
        mqtt_reconnect_min_delay=0.1,
    )

    def slow(_units: Sequence[Unit]) -> None:
        time.sleep(0.1)  # acknowledgements lag: each cut finds messages not yet acknowledged

    with InProcessCollector(loop, config) as collector:
        assert collector.mqtt is not None and collector.mqtt.connected.wait(15)
        collector.writer.fault_hook = slow
        for cut in range(CUTS):
            received = collector.stats.snapshot().get("mqtt_received", 0)
            publish(private_broker.url, range(cut * PER_CUT, (cut + 1) * PER_CUT))
            wait_for(
                lambda r=received: collector.stats.snapshot().get("mqtt_received", 0) > r,
                what="the collector receiving this part of the stream",
                interval=0.005,
            )
            private_broker.stop()  # the broker saves its sessions and queues on SIGTERM
            wait_for(lambda: not collector.mqtt.connected.is_set(), what="the disconnect")
            private_broker.start()
            assert collector.mqtt.connected.wait(15), f"no reconnect after cut {cut + 1}"
        with psycopg.connect(db_url, autocommit=True) as db:
            wait_for(
                lambda: count(db, "SELECT count(*) FROM readings") >= CUTS * PER_CUT,
                timeout=90,
                what="all 5,000 readings stored",
            )
            time.sleep(1.0)  # late redeliveries, if any, would show up as extra rows now
        snapshot = collector.stats.snapshot()

    assert snapshot.get("mqtt_disconnects", 0) >= CUTS
    assert snapshot.get("duplicates", 0) > 0  # the cuts did hit unacknowledged messages
    with psycopg.connect(db_url, autocommit=True) as db:
        rows = db.execute(
            "SELECT m.serial, r.ts, r.energy_import_kwh FROM readings r"
            " JOIN meters m ON m.id = r.meter_id ORDER BY 1, 2"
        ).fetchall()
        assert count(db, "SELECT count(*) FROM rejected_messages") == 0
    expected = sorted(message(i)[2] for i in range(CUTS * PER_CUT))
    assert len(rows) == len(expected) == 5000
    assert rows == expected
