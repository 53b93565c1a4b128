"""The MQTT simulator through the real broker: what a subscriber receives parses to the truth,
every fault appears as specified, many meters share few connections, nothing is lost."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
import pytest

from protocols.broker_url import parse_broker_url
from protocols.errors import PayloadError
from protocols.payloads import parse_payload
from protocols.reading import Reading
from simulators.clock import SimClock
from simulators.mqtt import MALFORMED_KINDS, MqttFleet

pytestmark = pytest.mark.mqtt

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
T0 = datetime(2026, 11, 26, 3, 15, tzinfo=UTC)
TOPICS = [("doxa/meters/+/reading", 1), ("tele/+/SENSOR", 1)]


class Subscriber:
    """A bare paho QoS 1 subscriber collecting (topic, payload) in arrival order."""

    def __init__(self, url: str) -> None:
        broker = parse_broker_url(url)
        self.messages: list[tuple[str, bytes]] = []
        self.qos: set[int] = set()
        self.lock = threading.Lock()
        ready = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex[:8]}"
        )
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(TOPICS)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: ready.set()
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert ready.wait(10), "subscription not acknowledged"

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((msg.topic, msg.payload))
            self.qos.add(msg.qos)

    def wait_for(self, count: int, timeout: float = 20.0) -> list[tuple[str, bytes]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.messages) >= count:
                    return list(self.messages)
            time.sleep(0.02)
        raise AssertionError(f"received {len(self.messages)} of {count} messages")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def subscriber(mqtt_url: str) -> Iterator[Subscriber]:
    sub = Subscriber(mqtt_url)
    yield sub
    sub.close()


def parsed(topic: str, payload: bytes, now: datetime) -> list[Reading]:
    parts = topic.split("/")
    fmt, serial = ("native", parts[2]) if parts[0] == "doxa" else ("tasmota", parts[1])
    return parse_payload(fmt, serial, payload, tz=TZ, now=now)


def test_messages_through_the_broker_parse_to_the_truth(
    mqtt_url: str, subscriber: Subscriber
) -> None:
    clock = SimClock.fixed(T0)
    with MqttFleet(mqtt_url, meters=6, seed=5, clock=clock, interval=900) as fleet:
        native = [m.serial for m in fleet.meters if m.format == "native"]
        tasmota = [m.serial for m in fleet.meters if m.format == "tasmota"]
        assert len(native) == len(tasmota) == 3
        fleet.publish_round()
        fleet.publish_duplicate(native[0])
        fleet.publish_duplicate(tasmota[0])
        fleet.publish_out_of_order(native[1])
        fleet.publish_out_of_order(tasmota[1])
        for kind in MALFORMED_KINDS:
            fleet.publish_malformed(native[2], kind)
            fleet.publish_malformed(tasmota[2], kind)
        unknown = [fleet.publish_unknown(fmt="native"), fleet.publish_unknown(fmt="tasmota")]
        fleet.go_offline(native[0])
        fleet.go_offline(tasmota[0])
        for _ in range(3):
            clock.advance(900)
            fleet.publish_round()
        backlog = fleet.come_online(native[0]) + fleet.come_online(tasmota[0])
        assert fleet.flush()
        assert fleet.connections == 1

    received = subscriber.wait_for(len(fleet.published))
    assert len(received) == len(fleet.published)
    # QoS 1 from one connection: the broker keeps the order; compare message by message
    for (topic, payload), published in zip(received, fleet.published, strict=True):
        assert (topic, payload) == (published.topic, published.payload)
        if published.reason is not None:
            with pytest.raises(PayloadError) as info:
                parsed(topic, payload, T0)  # the time they were published at
            assert info.value.reason == published.reason
            continue
        readings = parsed(topic, payload, clock.now())
        assert readings == list(published.readings)
        if published.known:
            assert readings == [fleet.truth(r.serial, r.ts) for r in readings]

    kinds = [p.kind for p in fleet.published]
    assert kinds.count("duplicate") == 2 and kinds.count("out_of_order") == 6
    out_of_order = [p.readings[0].ts for p in fleet.published if p.kind == "out_of_order"][:3]
    assert out_of_order == sorted(out_of_order, reverse=True)  # newest first
    # the offline native meter's backlog is one array of the three rounds it missed
    assert len(backlog) == 1 + 3
    assert [r.ts for r in backlog[0].readings] == [
        T0 + timedelta(seconds=900 * k) for k in (1, 2, 3)
    ]
    assert all(len(p.readings) == 1 for p in backlog[1:])  # Tasmota: one message per reading
    assert all(p.rejected and not p.known for p in unknown)
    assert {p.kind for p in fleet.expected_rejections()} == {
        *(f"malformed:{k}" for k in MALFORMED_KINDS),
        "unknown",
    }
    expected = fleet.expected_readings()
    # 6 meters × 4 rounds, plus 2 older out-of-order readings of 2 meters; duplicates count once
    assert len(expected) == 6 * 4 + 2 * 2
    assert all(r == fleet.truth(serial, ts) for (serial, ts), r in expected.items())


def test_many_meters_share_few_connections_and_nothing_is_lost(
    mqtt_url: str, subscriber: Subscriber
) -> None:
    clock = SimClock.fixed(T0)
    with MqttFleet(mqtt_url, meters=1200, seed=1, clock=clock, formats=("native",),
                   meters_per_connection=500, max_unacked=50) as fleet:  # fmt: skip
        assert fleet.connections == 3
        fleet.publish_round()
        clock.advance(60)
        fleet.publish_round()
        assert fleet.flush()
    received = subscriber.wait_for(2400)
    assert sorted(received) == sorted((p.topic, p.payload) for p in fleet.published)
    assert len({p.serial for p in fleet.published}) == 1200
    assert subscriber.qos == {1}  # published at QoS 1 (a QoS 0 message would arrive as 0)


def test_run_publishes_rounds_at_the_interval_in_accelerated_time(
    mqtt_url: str, subscriber: Subscriber
) -> None:
    clock = SimClock(T0, speed=600)  # ten simulated minutes per second
    with MqttFleet(
        mqtt_url, meters=2, seed=2, clock=clock, interval=60, formats=("tasmota",)
    ) as fleet:
        rounds = asyncio.run(fleet.run(asyncio.Event(), rounds=3))
        assert fleet.flush()
    assert rounds == 3
    times = sorted({p.readings[0].ts for p in fleet.published})
    assert times == [T0, T0 + timedelta(minutes=1), T0 + timedelta(minutes=2)]
    received = subscriber.wait_for(6)
    for topic, payload in received:
        (reading,) = parsed(topic, payload, clock.now())
        assert reading == fleet.truth(reading.serial, reading.ts)


def test_unreachable_broker_is_one_clear_error() -> None:
    from doxa.services._proc import free_port

    fleet = MqttFleet(f"mqtt://127.0.0.1:{free_port()}", meters=1)
    with pytest.raises(ConnectionError, match=r"cannot reach the MQTT broker at 127\.0\.0\.1"):
        fleet.connect(timeout=2)
    with pytest.raises(ValueError, match="MQTT URL must look like mqtt://host:port"):
        MqttFleet("http://example", meters=1)


def test_a_fleet_that_does_not_record_keeps_only_the_count(
    mqtt_url: str, subscriber: Subscriber
) -> None:
    """The CLI and the demo run for days: they keep a count, not every message."""
    clock = SimClock.fixed(T0)
    with MqttFleet(mqtt_url, meters=4, seed=6, clock=clock, interval=900, record=False) as fleet:
        for _ in range(3):
            fleet.publish_round()
            clock.advance(900)
        fleet.publish_duplicate(fleet.meters[0].serial)  # needs only each meter's last message
        assert fleet.flush()
    assert fleet.published_count == 4 * 3 + 1
    assert fleet.published == []
    assert len(subscriber.wait_for(fleet.published_count)) == fleet.published_count
    with pytest.raises(RuntimeError, match="record=False"):
        fleet.expected_readings()
