"""The embedded services: real processes on free ports, recovered after a crash."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from doxa.services.mosquitto import EmbeddedMosquitto
from doxa.services.postgres import EmbeddedPostgres


@pytest.mark.db
def test_cluster_recovers_from_a_stale_pid_file(services_dir: Path) -> None:
    pg = EmbeddedPostgres(services_dir / f"stale-{uuid.uuid4().hex[:6]}", durable=False)
    pg.start()
    try:
        pg.stop(mode="immediate")
        # A crash leaves postmaster.pid behind; make it name a pid that is not postgres.
        (pg.data_dir / "postmaster.pid").write_text("1\n" + str(pg.data_dir) + "\n")
        again = EmbeddedPostgres(pg.root, durable=False)
        again.start()
        with psycopg.connect(again.url()) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert again.port == pg.port  # the saved port is reused when free
    finally:
        pg.destroy()


@pytest.mark.db
def test_second_handle_finds_the_running_cluster(pg_cluster: EmbeddedPostgres) -> None:
    other = EmbeddedPostgres(pg_cluster.root, durable=False)
    assert other.running_pid() is not None
    assert other.port == pg_cluster.port


def _client(port: int, client_id: str, clean: bool = True) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean)
    client.connect("127.0.0.1", port)
    return client


@pytest.mark.mqtt
def test_broker_round_trip(mqtt_broker: EmbeddedMosquitto) -> None:
    got: list[bytes] = []
    done, subscribed = threading.Event(), threading.Event()
    sub = _client(mqtt_broker.port, f"sub-{uuid.uuid4().hex}")
    sub.on_message = lambda c, u, m: (got.append(m.payload), done.set())
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.loop_start()
    pub = _client(mqtt_broker.port, f"pub-{uuid.uuid4().hex}")
    pub.loop_start()
    try:
        sub.subscribe("doxa/test/+/reading", qos=1)
        assert subscribed.wait(5)
        pub.publish("doxa/test/M1/reading", b'{"x": 1}', qos=1).wait_for_publish(5)
        assert done.wait(5)
        assert got == [b'{"x": 1}']
    finally:
        for client in (pub, sub):
            client.loop_stop()
            client.disconnect()


@pytest.mark.mqtt
def test_broker_keeps_more_than_a_thousand_messages_for_an_offline_client(
    mqtt_broker: EmbeddedMosquitto,
) -> None:
    """Mosquitto's default drops QoS 1 messages past 1000 for an offline client; ours must not."""
    client_id = f"offline-{uuid.uuid4().hex}"
    topic = f"doxa/test/{uuid.uuid4().hex}/reading"
    sub = _client(mqtt_broker.port, client_id, clean=False)
    subscribed = threading.Event()
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.loop_start()
    sub.subscribe(topic, qos=1)
    assert subscribed.wait(5)
    sub.loop_stop()
    sub.disconnect()

    total = 3000
    pub = _client(mqtt_broker.port, f"pub-{uuid.uuid4().hex}")
    pub.loop_start()
    infos = [pub.publish(topic, str(i).encode(), qos=1) for i in range(total)]
    for info in infos:
        info.wait_for_publish(10)
    pub.loop_stop()
    pub.disconnect()

    received: set[int] = set()
    all_in = threading.Event()

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        received.add(int(msg.payload))
        if len(received) == total:
            all_in.set()

    back = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    back.on_message = on_message
    back.connect("127.0.0.1", mqtt_broker.port)
    back.loop_start()
    try:
        assert all_in.wait(30), f"only {len(received)} of {total} queued messages arrived"
        assert received == set(range(total))
    finally:
        back.loop_stop()
        back.disconnect()


@pytest.mark.mqtt
def test_broker_recovers_from_an_orphan_of_a_crashed_run(services_dir: Path) -> None:
    root = services_dir / f"orphan-{uuid.uuid4().hex[:6]}"
    first = EmbeddedMosquitto(root)
    first.start()
    orphan = first.proc
    assert orphan is not None
    # The owning process 'crashes': it forgets the broker, which keeps running.
    first.proc = None
    second = EmbeddedMosquitto(root)
    try:
        second.start()
        orphan.wait(5)  # the orphan was stopped
        assert second.proc is not None and second.proc.poll() is None
    finally:
        second.stop()


@pytest.mark.mqtt
def test_broker_refuses_a_packet_past_its_bound_and_passes_one_the_collector_rejects(
    mqtt_broker: EmbeddedMosquitto,
) -> None:
    """Mosquitto's default packet bound is 256 MiB, held in memory; ours is twice what the
    collector parses, so a payload between the two still reaches the collector (which records
    its rejection) and a larger one closes its sender's connection and reaches nobody."""
    from protocols.payloads import MAX_PAYLOAD_BYTES

    topic = f"doxa/test/{uuid.uuid4().hex}/reading"
    got: list[int] = []
    subscribed, small = threading.Event(), threading.Event()
    sub = _client(mqtt_broker.port, f"sub-{uuid.uuid4().hex}")
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.on_message = lambda c, u, m: (
        got.append(len(m.payload)),
        len(m.payload) < 10 and small.set(),
    )
    sub.loop_start()
    gone = threading.Event()
    pub = _client(mqtt_broker.port, f"pub-{uuid.uuid4().hex}")
    pub.on_disconnect = lambda *a: gone.set()
    pub.loop_start()
    try:
        sub.subscribe(topic, qos=1)
        assert subscribed.wait(5)
        pub.publish(topic, b"x" * (MAX_PAYLOAD_BYTES + 1), qos=1).wait_for_publish(30)
        pub.publish(topic, b"x" * (2 * MAX_PAYLOAD_BYTES + 1), qos=1)
        assert gone.wait(30)  # the broker closed the sender's connection
        pub.loop_stop()
        other = _client(mqtt_broker.port, f"pub-{uuid.uuid4().hex}")
        other.loop_start()
        other.publish(topic, b"small", qos=1).wait_for_publish(5)
        assert small.wait(10)
        other.loop_stop()
        other.disconnect()
        assert got == [MAX_PAYLOAD_BYTES + 1, 5]
    finally:
        sub.loop_stop()
        sub.disconnect()
