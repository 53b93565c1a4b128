"""Collector hardening (issue 17): a batch the flusher took is never lost, whatever raises; a
disk that fills under the spool (segment rollover included) stops the acknowledgements instead
of losing anything; a writer that keeps failing stops the collector with exit 1 and leaves the
unacknowledged messages to the broker."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterator, Sequence
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

from collector import Collector, CollectorError
from collector.units import Unit
from doxa.services.postgres import EmbeddedPostgres
from simulators.modbus import ModbusFleet
from simulators.mqtt import MqttFleet

pytestmark = [pytest.mark.db, pytest.mark.mqtt, pytest.mark.slow]


@pytest.fixture
def loop() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.close()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB ext4 file system of this test's own, loop-mounted (the test runs as root)."""
    image, mount = tmp_path / "disk.img", tmp_path / "disk"
    mount.mkdir()
    with image.open("wb") as fh:
        fh.truncate(8 * 1024 * 1024)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True, capture_output=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(mount)], check=True, capture_output=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False, capture_output=True)
        image.unlink(missing_ok=True)


def fill(disk: Path, leave: int) -> Path:
    """Fill ``disk`` until about ``leave`` bytes are free; returns the filler file."""
    filler = disk / "filler"
    free = shutil.disk_usage(disk).free
    with filler.open("wb") as fh:
        fh.write(b"\0" * max(0, free - leave))
        fh.flush()
    return filler


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


class FailOnce:
    """A writer fault: the first batch holding both sources raises inside its transaction."""

    def __init__(self) -> None:
        self.failed: list[int] = []

    def __call__(self, units: Sequence[Unit]) -> None:
        if not self.failed and {u.source for u in units} == {"mqtt", "modbus"}:
            self.failed.append(len(units))
            raise RuntimeError("injected writer fault")


def test_an_exception_in_the_writer_for_one_batch_loses_no_reading(
    loop: LoopThread, db_url: str, mqtt_url: str, tmp_path: Path
) -> None:
    modbus = ModbusFleet(meters=4, gateways=2, seed=31)
    loop.run(modbus.start())
    mqtt = MqttFleet(mqtt_url, meters=6, seed=32, formats=("native", "tasmota"), interval=60)
    import_csv(db_url, modbus.inventory_csv())
    import_csv(db_url, mqtt.inventory_csv())
    config = test_config(
        db_url, tmp_path, collector_id=f"w-{uuid.uuid4().hex[:8]}", mqtt_url=mqtt_url
    )
    fault = FailOnce()
    try:
        with InProcessCollector(loop, config) as collector, mqtt:
            assert collector.mqtt is not None and collector.mqtt.connected.wait(15)
            collector.writer.fault_hook = fault
            publisher = Publisher(mqtt)
            publisher.start()
            wait_for(lambda: fault.failed, what="the injected fault")
            polls = collector.stats.snapshot().get("polls_ok", 0)
            wait_for(
                lambda: collector.stats.snapshot().get("polls_ok", 0) >= polls + 8,
                what="polling going on after the fault",
            )
            publisher.finish()
            expected = expected_rows(mqtt)
            with psycopg.connect(db_url, autocommit=True) as db:
                wait_for(
                    lambda: (
                        count(db, "SELECT count(*) FROM readings WHERE source = 'mqtt'")
                        >= len(expected)
                    ),
                    what="every MQTT reading stored",
                )
            wait_for(lambda: collector.spool.depth == 0, what="the spool replayed")
            snapshot = collector.stats.snapshot()
            requeued = collector.stats.batches_requeued._value.get()
    finally:
        loop.run(modbus.stop())

    assert fault.failed and fault.failed[0] > 1
    assert snapshot.get("batches_requeued") == 1 and requeued == 1
    assert snapshot.get("writer_errors") == 1
    with psycopg.connect(db_url, autocommit=True) as db:
        mqtt_serials = {m.serial for m in mqtt.meters}
        assert [r for r in stored(db) if r[0] in mqtt_serials] == expected
        # Modbus: one stored reading per successful poll, the failed batch's ones included.
        per_meter = db.execute(
            "SELECT m.serial, (SELECT count(*) FROM readings r WHERE r.meter_id = m.id),"
            " (SELECT count(*) FROM poll_outcomes o WHERE o.meter_id = m.id AND o.outcome = 'ok')"
            " FROM meters m WHERE m.protocol = 'modbus'"
        ).fetchall()
        assert all(readings == ok and ok >= 2 for _s, readings, ok in per_meter), per_meter


def test_a_writer_that_keeps_failing_exits_1_and_leaves_messages_to_the_broker(
    loop: LoopThread, db_url: str, mqtt_url: str, tmp_path: Path
) -> None:
    mqtt = MqttFleet(mqtt_url, meters=5, seed=33, formats=("native",), interval=60)
    import_csv(db_url, mqtt.inventory_csv())
    config = test_config(
        db_url,
        tmp_path,
        collector_id=f"x-{uuid.uuid4().hex[:8]}",
        mqtt_url=mqtt_url,
        polling=False,
        fatal_after=3,
        spool_max_bytes=1,  # nothing fits: the messages stay with the broker, unacknowledged
    )
    first = Collector(config)

    def always(units: Sequence[Unit]) -> None:
        raise RuntimeError("the writer is broken")

    first.writer.fault_hook = always

    async def run_until_fatal() -> str:
        stop = asyncio.Event()
        try:
            await asyncio.wait_for(first.run(stop), 60)
        except CollectorError as exc:
            return str(exc)
        return "no error"

    with mqtt:
        start = mqtt.now().replace(second=0) - timedelta(days=1)
        future = asyncio.run_coroutine_threadsafe(run_until_fatal(), loop.loop)
        wait_for(lambda: first.mqtt is not None and first.mqtt.connected.is_set())
        for k in range(10):
            mqtt.publish_round(start + timedelta(minutes=k))
        assert mqtt.flush()
        cause = future.result(60)
        assert cause.startswith("the writer failed 3 times in a row (RuntimeError: the writer")
        assert "\n" not in cause
        assert first.pipeline.fatal == cause
        with psycopg.connect(db_url, autocommit=True) as db:
            assert count(db, "SELECT count(*) FROM readings") == 0

        # The next run (same id, writer healthy) gets every message from the broker.
        healthy = test_config(
            db_url, tmp_path, collector_id=config.collector_id, mqtt_url=mqtt_url, polling=False
        )
        with InProcessCollector(loop, healthy), psycopg.connect(db_url, autocommit=True) as db:
            wait_for(
                lambda: count(db, "SELECT count(*) FROM readings") >= 50,
                what="the broker's copies stored by the next run",
            )
    with psycopg.connect(db_url, autocommit=True) as db:
        assert stored(db) == expected_rows(mqtt)


def test_a_spool_on_a_full_disk_stops_acknowledging_and_loses_nothing_once_space_returns(
    loop: LoopThread, private_pg: EmbeddedPostgres, mqtt_url: str, small_disk: Path
) -> None:
    url = private_pg.url()
    mqtt = MqttFleet(mqtt_url, meters=10, seed=34, formats=("native", "tasmota"), interval=60)
    import_csv(url, mqtt.inventory_csv())
    config = test_config(
        url,
        small_disk,
        collector_id=f"d-{uuid.uuid4().hex[:8]}",
        mqtt_url=mqtt_url,
        polling=False,
        spool_segment_bytes=16 * 1024,  # many rollovers, one of them on the full disk
    )
    with InProcessCollector(loop, config) as collector, mqtt:
        assert collector.mqtt is not None and collector.mqtt.connected.wait(15)
        private_pg.stop()
        filler = fill(small_disk, leave=256 * 1024)
        publisher = Publisher(mqtt, pause=0.005)
        publisher.start()
        wait_for(
            lambda: (
                collector.stats.snapshot().get("spool_write_errors", 0) >= 1
                and collector.pipeline.pending > 100
            ),
            timeout=60,
            what="the disk full under the spool and messages waiting unacknowledged",
        )
        assert collector.stats.spool_full._value.get() == 1
        assert collector.stats.spool_write_errors._value.get() >= 1
        segments = len(list((small_disk / "spool").glob("*.spool")))
        assert segments > 3

        filler.unlink()  # space returns; the database is still down
        wait_for(
            lambda: collector.stats.spool_full._value.get() == 0,
            what="the spool accepting again",
        )
        private_pg.start()
        publisher.finish()
        expected = expected_rows(mqtt)
        with psycopg.connect(url, autocommit=True) as db:
            wait_for(
                lambda: count(db, "SELECT count(*) FROM readings") >= len(expected),
                timeout=90,
                what="every reading stored once the database is back",
            )
        wait_for(lambda: collector.spool.depth == 0, what="the spool replayed")
        assert collector.stats.database_up._value.get() == 1
    assert list((small_disk / "spool").glob("*.corrupt")) == []
    with psycopg.connect(url, autocommit=True) as db:
        assert stored(db) == expected


def metrics(port: int) -> dict[str, float]:
    import urllib.request

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


def test_database_up_tells_the_truth_from_start_up(
    loop: LoopThread, private_pg: EmbeddedPostgres, mqtt_url: str, tmp_path: Path
) -> None:
    url = private_pg.url()
    mqtt = MqttFleet(mqtt_url, meters=3, seed=35, formats=("native",), interval=60)
    import_csv(url, mqtt.inventory_csv())
    private_pg.stop()
    config = test_config(
        url,
        tmp_path,
        collector_id=f"u-{uuid.uuid4().hex[:8]}",
        mqtt_url=mqtt_url,
        polling=False,
        metrics_port=0,
    )
    with InProcessCollector(loop, config) as collector, mqtt:
        assert collector.metrics_port is not None
        before = metrics(collector.metrics_port)
        assert before["doxa_collector_database_up"] == 0  # started with the database down
        assert before["doxa_collector_batches_requeued_total"] == 0
        assert before["doxa_collector_spool_write_errors_total"] == 0
        private_pg.start()
        assert collector.mqtt is not None and collector.mqtt.connected.wait(15)
        mqtt.publish_round(mqtt.now().replace(second=0) - timedelta(hours=1))
        assert mqtt.flush()
        with psycopg.connect(url, autocommit=True) as db:
            wait_for(lambda: count(db, "SELECT count(*) FROM readings") == 3, what="stored")
        wait_for(
            lambda: metrics(collector.metrics_port or 0)["doxa_collector_database_up"] == 1,
            what="database_up 1 once a write went through",
        )
