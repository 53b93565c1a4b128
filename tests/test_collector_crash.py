"""``doxa collect`` as a real process: SIGKILL it while meters keep publishing at QoS 1, restart
it, and every message is stored exactly once; SIGTERM stops it cleanly with status 0."""

from __future__ import annotations

import signal
import threading
import uuid
from datetime import timedelta
from pathlib import Path

import paho.mqtt.client as paho
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from test_collector_support import (
    count,
    doxa_env,
    import_csv,
    start_doxa_collect,
    stored,
    wait_for,
)

from protocols.broker_url import parse_broker_url
from simulators.mqtt import MqttFleet

pytestmark = [pytest.mark.db, pytest.mark.mqtt, pytest.mark.slow]

FILTERS = ("doxa/meters/+/reading", "tele/+/SENSOR")


def create_session(mqtt_url: str, client_id: str) -> None:
    """Make the broker hold a persistent session for ``client_id`` with the collector's
    subscriptions, as a collector that ran before would have left it: from now on the broker
    keeps every message for it."""
    address = parse_broker_url(mqtt_url)
    subscribed = threading.Event()
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=False,
        protocol=paho.MQTTv311,
    )
    client.on_subscribe = lambda *_args: subscribed.set()
    client.connect(address.host, address.port)
    client.loop_start()
    client.subscribe([(f, 1) for f in FILTERS])
    assert subscribed.wait(10)
    client.disconnect()
    client.loop_stop()


class Publisher(threading.Thread):
    """Publishes rounds of every meter, one simulated second apart, until stopped."""

    def __init__(self, fleet: MqttFleet) -> None:
        super().__init__(daemon=True)
        self.fleet = fleet
        self.rounds = 0
        self.stopping = threading.Event()
        self.start_ts = fleet.now() - timedelta(days=1)

    def run(self) -> None:
        while not self.stopping.is_set():
            self.fleet.publish_round(self.start_ts + timedelta(seconds=self.rounds))
            self.rounds += 1
            self.stopping.wait(0.01)

    def wait_rounds(self, more: int) -> None:
        target = self.rounds + more
        wait_for(lambda: self.rounds >= target, what=f"{more} more rounds published")


def test_sigkill_while_publishing_then_restart_stores_every_message_once(
    mqtt_url: str, db_url: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    fleet = MqttFleet(mqtt_url, meters=20, seed=9, formats=("native", "tasmota"), interval=1)
    import_csv(db_url, fleet.inventory_csv())
    collector_id = f"crash-{uuid.uuid4().hex[:8]}"
    create_session(mqtt_url, collector_id)
    env = doxa_env(db_url, mqtt_url, tmp_path / "home")
    log = tmp_path / "collector.log"
    args = ("--collector-id", collector_id, "--interval", "1")

    first = start_doxa_collect(env, log, *args)
    try:
        with fleet:
            publisher = Publisher(fleet)
            publisher.start()
            wait_for(lambda: count(db, "SELECT count(*) FROM readings") > 200, what="ingesting")
            first.send_signal(signal.SIGKILL)
            assert first.wait(10) == -signal.SIGKILL
            at_kill = count(db, "SELECT count(*) FROM readings")
            publisher.wait_rounds(40)  # meters go on publishing while the collector is dead

            second = start_doxa_collect(env, log, *args)
            try:
                publisher.wait_rounds(40)
                publisher.stopping.set()
                publisher.join(30)
                assert fleet.flush()
                expected = sorted(
                    (r.serial, r.ts, r.energy_import_kwh, r.energy_export_kwh, r.power_w,
                     r.voltage_v, r.current_a, r.frequency_hz)
                    for r in fleet.expected_readings().values()
                )  # fmt: skip
                wait_for(
                    lambda: count(db, "SELECT count(*) FROM readings") >= len(expected),
                    timeout=60,
                    what="every published reading stored",
                )
                second.send_signal(signal.SIGTERM)
                assert second.wait(15) == 0  # a graceful stop, within a few seconds
            finally:
                if second.poll() is None:
                    second.kill()
                    second.wait()
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()

    output = log.read_text(errors="replace")
    assert "Traceback" not in output
    assert at_kill < len(expected)  # the kill really happened in the middle of the stream
    assert len(fleet.published) == 20 * publisher.rounds
    assert stored(db) == expected  # every message published, once, equal to what was sent
    row = db.execute(
        "SELECT pid, counters->>'mqtt_received' FROM collectors WHERE id = %s", (collector_id,)
    ).fetchone()
    assert row is not None and row[0] == second.pid
