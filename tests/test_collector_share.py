"""Two ``doxa collect`` processes side by side (contract §14): they share one MQTT stream
(``DOXA_MQTT_SHARE_GROUP`` → ``$share/GROUP/…``) and split the Modbus gateways by the
inventory's ``collector_id``. One is SIGKILLed mid-stream and restarted with the same id: every
reading published is stored exactly once, and each gateway is polled only by its collector."""

from __future__ import annotations

import signal
import threading
import uuid
from pathlib import Path

import paho.mqtt.client as paho
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from test_collector_crash import FILTERS, Publisher
from test_collector_support import (
    HEADER,
    LoopThread,
    count,
    doxa_env,
    import_csv,
    inventory_line,
    start_doxa_collect,
    stored,
    wait_for,
)

from protocols.broker_url import parse_broker_url
from simulators.modbus import ModbusFleet
from simulators.mqtt import MqttFleet

pytestmark = [pytest.mark.db, pytest.mark.mqtt, pytest.mark.slow]

GROUP = "doxa-test"


def create_shared_session(mqtt_url: str, client_id: str) -> None:
    """A persistent session for ``client_id`` subscribed to the shared filters, as a collector
    that ran before would have left it: the broker shares messages with it from now on."""
    address = parse_broker_url(mqtt_url)
    subscribed = threading.Event()
    client = paho.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False,
        protocol=paho.MQTTv311,
    )  # fmt: skip
    client.on_subscribe = lambda *_args: subscribed.set()
    client.connect(address.host, address.port)
    client.loop_start()
    client.subscribe([(f"$share/{GROUP}/{f}", 1) for f in FILTERS])
    assert subscribed.wait(10)
    client.disconnect()
    client.loop_stop()


def test_two_collectors_share_mqtt_and_split_gateways_one_killed_and_restarted(
    mqtt_url: str, db_url: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:6]
    ids = (f"share-a-{tag}", f"share-b-{tag}")
    loop = LoopThread()
    modbus = ModbusFleet(meters=4, gateways=2, seed=3, serial_prefix="SH", models=("sdm120",))
    loop.run(modbus.start())
    try:
        fleet = MqttFleet(mqtt_url, meters=20, seed=21, formats=("native", "tasmota"), interval=1)
        # MQTT meters belong to nobody; each gateway's meters name the collector that polls it.
        lines = [
            inventory_line(m.serial, 500 + k, "modbus", m.model, m.host, m.port, m.unit_id,
                           ids[m.gateway])
            for k, m in enumerate(modbus.meters)
        ]  # fmt: skip
        import_csv(db_url, fleet.inventory_csv())
        import_csv(db_url, "\n".join([HEADER, *lines]) + "\n")
        for cid in ids:
            create_shared_session(mqtt_url, cid)
        env = doxa_env(db_url, mqtt_url, tmp_path / "home", DOXA_MQTT_SHARE_GROUP=GROUP)
        logs = [tmp_path / f"{cid}.log" for cid in ids]
        argv = [("--collector-id", cid, "--interval", "1") for cid in ids]

        a = start_doxa_collect(env, logs[0], *argv[0])
        b = start_doxa_collect(env, logs[1], *argv[1])
        restarted = None
        try:
            with fleet:
                publisher = Publisher(fleet)
                publisher.start()
                wait_for(lambda: count(db, "SELECT count(*) FROM readings") > 200, what="ingest")
                a.send_signal(signal.SIGKILL)
                assert a.wait(10) == -signal.SIGKILL
                at_kill = count(db, "SELECT count(*) FROM readings r JOIN meters m"
                                " ON m.id = r.meter_id WHERE m.protocol = 'mqtt'")  # fmt: skip
                publisher.wait_rounds(40)  # the stream goes on; half of it is queued for A
                restarted = start_doxa_collect(env, logs[0], *argv[0])
                publisher.wait_rounds(40)
                publisher.stopping.set()
                publisher.join(30)
                assert fleet.flush()
                expected = sorted(
                    (r.serial, r.ts, r.energy_import_kwh, r.energy_export_kwh, r.power_w,
                     r.voltage_v, r.current_a, r.frequency_hz)
                    for r in fleet.expected_readings().values()
                )  # fmt: skip
                mqtt_rows = (
                    "SELECT count(*) FROM readings r JOIN meters m ON m.id = r.meter_id"
                    " WHERE m.protocol = 'mqtt'"
                )
                wait_for(
                    lambda: count(db, mqtt_rows) >= len(expected),
                    timeout=60,
                    what="every published reading stored",
                )
                # Both gateways polled again after the restart.
                wait_for(
                    lambda: (
                        count(
                            db,
                            "SELECT count(DISTINCT collector_id) FROM poll_outcomes"
                            " WHERE outcome = 'ok' AND ts > now() - interval '3 seconds'",
                        )
                        == 2
                    ),
                    timeout=30,
                    what="both collectors polling",
                )
            for proc in (restarted, b):
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(15) == 0
        finally:
            for proc in (a, b, restarted):
                if proc is not None and proc.poll() is None:
                    proc.kill()
                    proc.wait()
    finally:
        loop.run(modbus.stop())
        loop.close()

    for log in logs:
        assert "Traceback" not in log.read_text(errors="replace")
    assert at_kill < len(expected)  # the kill really was mid-stream
    mqtt_serials = {m.serial for m in fleet.meters}
    got = [row for row in stored(db) if row[0] in mqtt_serials]
    assert got == expected  # every MQTT reading published, once, as sent
    # Each collector received a share of the stream (the broker split it between them).
    received = dict(
        db.execute(
            "SELECT collector_id, sum(mqtt_received) FROM collector_heartbeats"
            " GROUP BY collector_id"
        ).fetchall()
    )
    assert all(received.get(cid, 0) > 0 for cid in ids), received
    # Each gateway was polled only by the collector its meters name.
    polled = db.execute(
        "SELECT DISTINCT gateway, collector_id FROM poll_outcomes ORDER BY 1, 2"
    ).fetchall()
    gateways = {f"{g.host}:{g.port}": ids[g.index] for g in modbus.gateways}
    assert sorted(polled) == sorted(gateways.items())
    # Modbus readings are stored once per meter and instant (one collector per gateway).
    assert (
        count(
            db,
            "SELECT count(*) FROM (SELECT meter_id, ts FROM readings GROUP BY 1, 2"
            " HAVING count(*) > 1) d",
        )
        == 0
    )
    modbus_rows = count(
        db,
        "SELECT count(*) FROM readings r JOIN meters m ON m.id = r.meter_id"
        " WHERE m.protocol = 'modbus'",
    )
    assert modbus_rows > 0
