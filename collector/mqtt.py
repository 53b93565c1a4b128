"""MQTT intake: a paho-mqtt 2 client with a persistent session and manual acknowledgement.

* Client id = collector id and ``clean_session=False``: the broker keeps the subscriptions and
  queues QoS 1 messages while the collector is down; a restart with the same id resumes them.
* ``manual_ack=True``: a message is acknowledged by the pipeline only once it is durable (database
  or spool). Unacknowledged messages are delivered again after a reconnect.
* Subscriptions are (re)made on every connect, QoS 1, optionally as ``$share/GROUP/filter`` so
  several collectors split one stream.
* paho reconnects by itself (1 s doubling to 30 s); the network runs in paho's own thread.

Acknowledgements go through paho's public API only (``Client.ack(mid, qos)``, paho-mqtt 2.x).
Each carries the connection generation of its message, bumped under a lock on every disconnect,
before every (re)connect and on every connect: a message received on an earlier connection is
never acknowledged on a later one, where its packet id may name another message. The flusher
checks the generation and queues the PUBACKs holding the same lock, and paho drops its queue of
outgoing packets when it reconnects, after ``on_disconnect``/``on_pre_connect`` have run, so a
check and its PUBACKs can never straddle a reconnect. The broker sends such a message again
(``dup`` set) and that copy is acknowledged once durable; it is stored once because writes are
idempotent.
"""

from __future__ import annotations

import logging
import ssl
import threading
from collections.abc import Sequence
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from collector.metrics import Stats
from collector.pipeline import Pipeline
from collector.topics import TopicRouter
from protocols.broker_url import parse_broker_url

log = logging.getLogger(__name__)


class MqttIntake:
    """Feeds the pipeline from the broker; acknowledges what the pipeline made durable."""

    def __init__(
        self,
        *,
        url: str,
        client_id: str,
        subscriptions: tuple[tuple[str, str], ...],
        share_group: str,
        pipeline: Pipeline,
        stats: Stats,
        keepalive: int = 30,
        reconnect_min_delay: float = 1.0,
    ) -> None:
        self.address = parse_broker_url(url)
        self.client_id = client_id
        self.subscriptions = subscriptions
        self.share_group = share_group
        self.pipeline = pipeline
        self.stats = stats
        self.keepalive = keepalive
        self.router = TopicRouter(subscriptions)
        self.connected = threading.Event()
        self._generation = 0
        self._generation_lock = threading.Lock()  # generation checks and acks vs. reconnects
        self._accepting = True
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=False,
            protocol=paho.MQTTv311,
            manual_ack=True,
        )
        if self.address.username is not None:
            client.username_pw_set(self.address.username, self.address.password)
        if self.address.tls:
            client.tls_set(cert_reqs=ssl.CERT_REQUIRED)
        client.reconnect_delay_set(reconnect_min_delay, 30)  # type: ignore[arg-type]
        client.on_pre_connect = self._on_pre_connect
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        self.client = client

    def topic_filters(self) -> list[str]:
        prefix = f"$share/{self.share_group}/" if self.share_group else ""
        return [prefix + topic for topic, _fmt in self.subscriptions]

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background (paho retries until the broker answers)."""
        self.client.connect_async(self.address.host, self.address.port, self.keepalive)
        self.client.loop_start()

    def stop_intake(self) -> None:
        """Stop handing messages to the pipeline (graceful stop): later ones stay unacked and the
        broker delivers them to the next session."""
        self._accepting = False

    def stop(self) -> None:
        """Disconnect (after the pipeline has flushed and acked) and end paho's thread."""
        self.client.disconnect()
        self.client.loop_stop()

    # -- paho callbacks (paho's thread) ---------------------------------------------------------

    def _next_generation(self) -> None:
        with self._generation_lock:
            self._generation += 1

    def _on_pre_connect(self, _client: paho.Client, _userdata: Any) -> None:
        self._next_generation()

    def _on_connect(
        self, client: paho.Client, _userdata: Any, flags: Any, reason_code: Any, _props: Any
    ) -> None:
        self._next_generation()
        if reason_code.is_failure:
            log.error("MQTT broker refused the connection: %s", reason_code)
            return
        result, _mid = client.subscribe([(f, 1) for f in self.topic_filters()])
        if result != MQTTErrorCode.MQTT_ERR_SUCCESS:
            log.error("MQTT subscribe failed: %s", paho.error_string(result))
        log.info(
            "connected to MQTT broker %s:%d as %s (session %s)",
            self.address.host,
            self.address.port,
            self.client_id,
            "resumed" if flags.session_present else "new",
        )

    def _on_subscribe(
        self, _client: paho.Client, _userdata: Any, _mid: int, reason_codes: Any, _props: Any
    ) -> None:
        refused = [str(rc) for rc in reason_codes if rc.is_failure]
        if refused:
            log.error("MQTT broker refused subscriptions: %s", ", ".join(refused))
        else:
            self.connected.set()
            self.stats.mqtt_subscribed.set(1)

    def _on_disconnect(
        self, _client: paho.Client, _userdata: Any, _flags: Any, reason_code: Any, _props: Any
    ) -> None:
        self.connected.clear()
        self.stats.mqtt_subscribed.set(0)
        self._next_generation()  # acks of this connection's messages must not reach the next one
        self.stats.add(mqtt_disconnects=1)
        if self._accepting:
            log.warning("MQTT connection lost (%s); reconnecting", reason_code)

    def _on_message(self, _client: paho.Client, _userdata: Any, msg: paho.MQTTMessage) -> None:
        if not self._accepting:
            return
        token = (msg.mid, msg.qos, self._generation)
        try:
            try:
                topic = msg.topic
            except UnicodeDecodeError:
                self.pipeline.submit_message(
                    repr(msg._topic),
                    None,
                    None,
                    bytes(msg.payload),
                    token,
                    "the topic is not UTF-8",
                )
                return
            route = self.router.route(topic)
            self.pipeline.submit_message(
                topic, route.serial, route.fmt, bytes(msg.payload), token, route.reason
            )
        except Exception:  # paho's thread must survive anything; the message stays unacked
            log.exception("could not take an MQTT message; the broker will deliver it again")

    # -- acknowledgement (the flusher thread) ---------------------------------------------------

    def ack(self, tokens: Sequence[tuple[int, int, int]]) -> None:
        """Acknowledge a durable batch's messages, in arrival order, through ``Client.ack`` (only
        those received on the current connection; QoS 0 needs none)."""
        ack = self.client.ack
        with self._generation_lock:
            generation = self._generation
            for mid, qos, gen in tokens:
                if gen == generation and qos:
                    ack(mid, qos)
