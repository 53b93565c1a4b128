"""The collector's MQTT client reads the socket in 64 KiB chunks (collector/mqtt.py): packets of
every size, cut anywhere by the chunk boundaries, still arrive whole and in order."""

from __future__ import annotations

import threading
import uuid

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from collector.mqtt import Client, _ChunkedReadClient
from protocols.broker_url import parse_broker_url

pytestmark = pytest.mark.mqtt

# Around the limits of MQTT's length bytes (127/128, 16383/16384) and of the 64 KiB chunk.
SIZES = (0, 1, 60, 127, 128, 16_383, 16_384, 65_535, 65_536, 70_000, 200_000)


def test_packets_of_every_size_arrive_whole_and_in_order(mqtt_url: str) -> None:
    assert Client is _ChunkedReadClient  # the installed paho has what the chunked reader needs
    address = parse_broker_url(mqtt_url)
    topic = f"t/reads/{uuid.uuid4().hex[:8]}"
    sent = [bytes([i % 251]) * SIZES[i % len(SIZES)] + str(i).encode() for i in range(400)]
    received: list[bytes] = []
    done, subscribed = threading.Event(), threading.Event()

    def on_message(_c: paho.Client, _u: object, msg: paho.MQTTMessage) -> None:
        received.append(msg.payload)
        if len(received) == len(sent):
            done.set()

    sub = Client(CallbackAPIVersion.VERSION2, client_id=f"reads-{uuid.uuid4().hex[:6]}")
    sub.on_message = on_message
    sub.on_subscribe = lambda *_a: subscribed.set()
    sub.connect(address.host, address.port)
    sub.loop_start()
    pub = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"reads-pub-{uuid.uuid4().hex[:6]}")
    try:
        sub.subscribe(topic, qos=1)
        assert subscribed.wait(10)
        pub.connect(address.host, address.port)
        pub.loop_start()
        infos = [pub.publish(topic, payload, qos=1) for payload in sent]
        for info in infos:
            info.wait_for_publish(10)
        assert done.wait(30), f"{len(received)} of {len(sent)} received"
    finally:
        pub.disconnect()
        pub.loop_stop()
        sub.disconnect()
        sub.loop_stop()
    assert received == sent
