"""DOXA_MQTT_URL → broker address (shared by the collector and the MQTT simulator)."""

from __future__ import annotations

import pytest

from protocols.broker_url import BrokerAddress, BrokerUrlError, parse_broker_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://127.0.0.1:1883", BrokerAddress("127.0.0.1", 1883)),
        ("mqtt://broker.example", BrokerAddress("broker.example", 1883)),
        ("mqtts://broker.example", BrokerAddress("broker.example", 8883, tls=True)),
        (
            "mqtts://doxa:p%40ss%3Aword@broker.example:8884",
            BrokerAddress("broker.example", 8884, True, "doxa", "p@ss:word"),
        ),
    ],
)
def test_urls(url: str, expected: BrokerAddress) -> None:
    assert parse_broker_url(url) == expected


@pytest.mark.parametrize(
    "url", ["http://broker:1883", "mqtt://", "broker:1883", "mqtt://host:99999", "mqtt://h:x"]
)
def test_bad_urls_say_why(url: str) -> None:
    with pytest.raises(BrokerUrlError, match="MQTT URL"):
        parse_broker_url(url)
