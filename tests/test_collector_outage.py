"""PostgreSQL stops while the collector ingests: it keeps polling and accepting MQTT, spools,
and when the database returns every reading is stored exactly once. A full spool stops the
acknowledgements instead of losing anything; a spool left behind is replayed by the next run."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
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

from doxa.services.postgres import EmbeddedPostgres
from simulators.modbus import ModbusFleet
from simulators.mqtt import MqttFleet

pytestmark = [pytest.mark.db, pytest.mark.mqtt, pytest.mark.slow]


@pytest.fixture
def loop() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.close()


class Publisher(threading.Thread):
    """Publishes rounds of every meter, one simulated minute apart, until stopped."""

    def __init__(self, fleet: MqttFleet, pause: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.fleet = fleet
        self.pause = pause
        self.rounds = 0
        self.stopping = threading.Event()
        self.start_ts = fleet.now().replace(second=0) - timedelta(days=3)

    def run(self) -> None:
        while not self.stopping.is_set():
            self.fleet.publish_round(self.start_ts + timedelta(minutes=self.rounds))
            self.rounds += 1
            self.stopping.wait(self.pause)

    def finish(self) -> None:
        self.stopping.set()
        self.join(30)
        assert self.fleet.flush()


def expected_rows(fleet: MqttFleet) -> list[tuple]:
    return sorted(
        (r.serial, r.ts, r.energy_import_kwh, r.energy_export_kwh, r.power_w, r.voltage_v,
         r.current_a, r.frequency_hz)
        for r in fleet.expected_readings().values()
    )  # fmt: skip


def test_a_database_outage_loses_nothing_and_duplicates_nothing(
    loop: LoopThread, private_pg: EmbeddedPostgres, mqtt_url: str, tmp_path: Path
) -> None:
    url = private_pg.url()
    modbus = ModbusFleet(meters=4, gateways=2, seed=21)
    loop.run(modbus.start())
    mqtt = MqttFleet(mqtt_url, meters=6, seed=22, formats=("native", "tasmota"), interval=60)
    import_csv(url, modbus.inventory_csv())
    import_csv(url, mqtt.inventory_csv())
    config = test_config(url, tmp_path, collector_id=f"o-{uuid.uuid4().hex[:8]}", mqtt_url=mqtt_url)
    try:
        with InProcessCollector(loop, config) as collector, mqtt:
            assert collector.mqtt is not None and collector.mqtt.connected.wait(15)
            publisher = Publisher(mqtt)
            publisher.start()
            with psycopg.connect(url, autocommit=True) as db:
                wait_for(lambda: count(db, "SELECT count(*) FROM readings") > 50, what="ingesting")

            private_pg.stop()
            polls = collector.stats.snapshot().get("polls_ok", 0)
            rounds = publisher.rounds
            wait_for(
                lambda: (
                    collector.stats.snapshot().get("polls_ok", 0) >= polls + 12
                    and publisher.rounds >= rounds + 30
                    and collector.spool.depth > 100
                ),
                what="polling and MQTT going on into the spool during the outage",
            )
            assert collector.stats.database_up._value.get() == 0

            private_pg.start()
            publisher.finish()
            with psycopg.connect(url, autocommit=True) as db:
                expected = expected_rows(mqtt)
                wait_for(
                    lambda: (
                        count(db, "SELECT count(*) FROM readings WHERE source = 'mqtt'")
                        >= len(expected)
                    ),
                    what="every MQTT reading stored after the outage",
                )
            wait_for(lambda: collector.spool.depth == 0, what="the spool replayed")
            spooled = collector.stats.snapshot().get("batches_spooled", 0)
    finally:
        loop.run(modbus.stop())

    assert spooled > 0
    assert list((tmp_path / "spool").glob("*.spool")) == []
    with psycopg.connect(url, autocommit=True) as db:
        mqtt_serials = {m.serial for m in mqtt.meters}
        assert [r for r in stored(db) if r[0] in mqtt_serials] == expected
        # Modbus: one stored reading per successful poll, none lost during the outage.
        per_meter = db.execute(
            "SELECT m.serial, (SELECT count(*) FROM readings r WHERE r.meter_id = m.id),"
            " (SELECT count(*) FROM poll_outcomes o WHERE o.meter_id = m.id AND o.outcome = 'ok')"
            " FROM meters m WHERE m.protocol = 'modbus'"
        ).fetchall()
        assert all(readings == ok and ok >= 3 for _serial, readings, ok in per_meter), per_meter
        for meter in modbus.meters:
            served = {
                (s.measurement.energy_import_kwh, s.measurement.voltage_v)
                for s in modbus.served(meter.serial)
            }
            for row in stored(db, meter.serial):
                assert (row[2], row[5]) in served


def test_a_full_spool_stops_acknowledging_and_still_loses_nothing(
    loop: LoopThread, private_pg: EmbeddedPostgres, mqtt_url: str, tmp_path: Path
) -> None:
    url = private_pg.url()
    mqtt = MqttFleet(mqtt_url, meters=10, seed=23, formats=("native",), interval=60)
    import_csv(url, mqtt.inventory_csv())
    config = test_config(
        url,
        tmp_path,
        collector_id=f"f-{uuid.uuid4().hex[:8]}",
        mqtt_url=mqtt_url,
        polling=False,
        spool_max_bytes=40_000,  # about a hundred messages
    )
    with InProcessCollector(loop, config) as collector, mqtt:
        assert collector.mqtt is not None and collector.mqtt.connected.wait(15)
        private_pg.stop()
        publisher = Publisher(mqtt, pause=0.005)
        publisher.start()
        wait_for(
            lambda: (
                collector.stats.snapshot().get("spool_full_events", 0) >= 1
                and collector.pipeline.pending > 100
            ),
            what="the spool full and messages waiting unacknowledged",
        )
        assert collector.stats.spool_full._value.get() == 1
        private_pg.start()
        publisher.finish()
        expected = expected_rows(mqtt)
        with psycopg.connect(url, autocommit=True) as db:
            wait_for(
                lambda: count(db, "SELECT count(*) FROM readings") >= len(expected),
                timeout=60,
                what="every reading stored once the database is back",
            )
        assert collector.stats.spool_full._value.get() == 0
    with psycopg.connect(url, autocommit=True) as db:
        assert stored(db) == expected


def test_a_spool_left_by_a_stopped_collector_is_replayed_by_the_next_run(
    loop: LoopThread, private_pg: EmbeddedPostgres, mqtt_url: str, tmp_path: Path
) -> None:
    url = private_pg.url()
    mqtt = MqttFleet(mqtt_url, meters=5, seed=24, formats=("native", "tasmota"), interval=60)
    import_csv(url, mqtt.inventory_csv())
    config = test_config(
        url, tmp_path, collector_id=f"r-{uuid.uuid4().hex[:8]}", mqtt_url=mqtt_url, polling=False
    )
    with mqtt:
        with InProcessCollector(loop, config) as first:
            assert first.mqtt is not None and first.mqtt.connected.wait(15)
            private_pg.stop()
            start = mqtt.now().replace(second=0) - timedelta(days=1)
            for k in range(20):
                mqtt.publish_round(start + timedelta(minutes=k))
            assert mqtt.flush()
            wait_for(lambda: first.spool.depth == 100, what="all 100 messages in the spool")
        assert list((tmp_path / "spool").glob("*.spool"))  # left behind, fsync'd and acked

        private_pg.start()
        with InProcessCollector(loop, config) as second:
            wait_for(lambda: second.spool.depth == 0, what="the old spool replayed")
            assert second.mqtt is not None and second.mqtt.connected.wait(15)
    # They had been acknowledged: the broker did not send them again (the stop flushed and
    # counted everything the second run received).
    assert second.stats.snapshot().get("mqtt_received", 0) == 0
    with psycopg.connect(url, autocommit=True) as db:
        assert stored(db) == expected_rows(mqtt)
