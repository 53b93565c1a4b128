"""Simulated MQTT meters: N meters publishing ``native`` or ``tasmota`` payloads (or a mix) at
QoS 1 over a few connections, with faults on demand, recording exactly what they published.

What a meter publishes is a pure function of (meter, simulated time): ``truth(serial, ts)`` is
the Reading its payload at ``ts`` parses to (values rounded as a meter's firmware would: kWh to
3 decimals, W and V to 1, A to 3, Hz to 2). ``published`` lists every message with the readings
it carries and, for a message that must be rejected, the reason our own parser gives;
``expected_readings()`` is what the database must hold afterwards, each reading once.

Faults: duplicates (the same message again), out-of-order (older readings after newer ones),
malformed payloads, unknown serials, and a meter offline for a while that then publishes its
backlog as one array (native) or one message per reading (Tasmota has no arrays).

Flow control: paho refuses QoS 1 messages beyond 65,535 unacknowledged, so each connection waits
for the oldest message once ``max_unacked`` are outstanding.
"""

from __future__ import annotations

import asyncio
import json
import math
import ssl
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt

from protocols.broker_url import BrokerAddress, parse_broker_url
from protocols.errors import PayloadError
from protocols.payloads import encode_native, encode_tasmota, parse_payload
from protocols.reading import Reading
from simulators.clock import SimClock
from simulators.history import aligned_times, readings_between
from simulators.inventory import Customer, InventoryLine, customer_code, inventory_csv
from simulators.inventory import make_customer as _make_customer
from simulators.load import MeterLoad, Profile

TOPICS = {"native": "doxa/meters/{serial}/reading", "tasmota": "tele/{serial}/SENSOR"}
MALFORMED_KINDS = ("not_json", "missing_energy", "negative_energy", "bad_time", "future")


@dataclass(frozen=True)
class MqttMeter:
    serial: str
    format: str
    topic: str
    customer: Customer


@dataclass(frozen=True)
class Published:
    """One message the fleet published, and what should become of it.

    ``readings``: what the collector must store (empty for a rejected message).
    ``reason``: for a payload that must be rejected, the reason ``parse_payload`` gives.
    ``known``: False for a serial that is not in the fleet's inventory (must be rejected).
    """

    kind: str
    serial: str
    topic: str
    payload: bytes
    readings: tuple[Reading, ...] = ()
    reason: str | None = None
    known: bool = True
    wall: float = field(default_factory=time.time)

    @property
    def rejected(self) -> bool:
        return self.reason is not None or not self.known


class _Connection:
    """One paho client carrying many meters, with QoS 1 flow control."""

    def __init__(self, broker: BrokerAddress, client_id: str, max_unacked: int) -> None:
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True
        )
        self.client.max_inflight_messages_set(min(max_unacked, 65_000))
        if broker.username:
            self.client.username_pw_set(broker.username, broker.password)
        if broker.tls:
            self.client.tls_set_context(ssl.create_default_context())
        self.client.on_connect = self._on_connect
        self.broker = broker
        self.connected = threading.Event()
        self.refused: str | None = None
        self.pending: deque[mqtt.MQTTMessageInfo] = deque()
        self.max_unacked = max_unacked
        self.lock = threading.Lock()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:  # type: ignore[no-untyped-def]
        if reason_code.is_failure:
            self.refused = str(reason_code)
        self.connected.set()

    def open(self, timeout: float) -> None:
        try:
            self.client.connect(self.broker.host, self.broker.port, keepalive=30)
        except OSError as exc:
            raise ConnectionError(
                f"cannot reach the MQTT broker at {self.broker.host}:{self.broker.port}: "
                f"{exc.strerror or exc}"
            ) from exc
        self.client.loop_start()
        if not self.connected.wait(timeout) or self.refused:
            self.client.loop_stop()
            raise ConnectionError(
                f"the MQTT broker at {self.broker.host}:{self.broker.port} did not accept the "
                f"connection ({self.refused or 'no answer'})"
            )

    def publish(self, topic: str, payload: bytes, timeout: float) -> None:
        with self.lock:
            while self.pending and self.pending[0].is_published():
                self.pending.popleft()
            while len(self.pending) >= self.max_unacked:
                self.pending.popleft().wait_for_publish(timeout)
            info = self.client.publish(topic, payload, qos=1)
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                raise ConnectionError(f"publish to {topic} failed: {mqtt.error_string(info.rc)}")
            self.pending.append(info)

    def flush(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.lock:
            while self.pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.pending[0].wait_for_publish(left)
                if not self.pending[0].is_published():
                    return False
                self.pending.popleft()
        return True

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


class MqttFleet:
    """``meters`` simulated MQTT meters, deterministic under ``seed``.

    ``formats`` is cycled over the meters (``("native",)``, ``("tasmota",)`` or both for a mix).
    Meters share ``ceil(meters / meters_per_connection)`` connections. Use as a context manager
    or call :meth:`connect` and :meth:`close`.
    """

    def __init__(
        self,
        url: str,
        meters: int = 10,
        *,
        seed: int = 0,
        formats: Sequence[str] = ("native", "tasmota"),
        interval: float = 60.0,
        clock: SimClock | None = None,
        tz: ZoneInfo | None = None,
        serial_prefix: str = "MQ",
        customer_prefix: str = "PB0202",
        meters_per_connection: int = 500,
        max_unacked: int = 1000,
        topics: dict[str, str] | None = None,
        publish_timeout: float = 30.0,
        record: bool = True,
    ) -> None:
        if meters < 1:
            raise ValueError("a fleet needs at least one meter")
        unknown = [f for f in formats if f not in TOPICS]
        if unknown or not formats:
            raise ValueError(f"unknown payload format(s) {unknown} (native, tasmota)")
        if not interval > 0:
            raise ValueError("the interval must be positive")
        self.broker = parse_broker_url(url)
        self.seed = seed
        self.interval = interval
        self.clock = clock or SimClock()
        self.tz = tz or ZoneInfo("Asia/Ho_Chi_Minh")
        self.topics = {**TOPICS, **(topics or {})}
        self.publish_timeout = publish_timeout
        self.max_unacked = max_unacked
        offset_h = (self.tz.utcoffset(datetime(2024, 1, 1)) or timedelta()).total_seconds() / 3600
        self._meters: list[MqttMeter] = []
        self._loads: dict[str, MeterLoad] = {}
        for i in range(meters):
            fmt = formats[i % len(formats)]
            serial = f"{serial_prefix}-{fmt[:3].upper()}-{i + 1:05d}"
            customer = _make_customer(seed, serial, customer_code(customer_prefix, i))
            topic = self.topics[fmt].format(serial=serial)
            self._meters.append(MqttMeter(serial, fmt, topic, customer))
            self._loads[serial] = MeterLoad(Profile.seeded(seed, serial, utc_offset_h=offset_h))
        self._by_serial = {m.serial: m for m in self._meters}
        self._index = {m.serial: i for i, m in enumerate(self._meters)}
        self._per_connection = max(1, meters_per_connection)
        self._connections: list[_Connection] = []
        self._offline: dict[str, list[datetime]] = {}
        self._last: dict[str, Published] = {}
        self._lock = threading.Lock()
        # Every message, for tests that compare the database with it; a long-running simulator
        # (the CLI, the demo) passes record=False and keeps only the count.
        self.record = record
        self.published: list[Published] = []
        self.published_count = 0

    # -- the fleet ---------------------------------------------------------------------------
    @property
    def meters(self) -> list[MqttMeter]:
        return list(self._meters)

    def meter(self, serial: str) -> MqttMeter:
        try:
            return self._by_serial[serial]
        except KeyError:
            raise KeyError(f"no simulated meter {serial!r}") from None

    def inventory_csv(self) -> str:
        return inventory_csv(InventoryLine(m.customer, m.serial, "mqtt") for m in self._meters)

    def write_inventory(self, path: Path | str) -> None:
        Path(path).write_text(self.inventory_csv(), encoding="utf-8")

    # -- truth -------------------------------------------------------------------------------
    def truth(self, serial: str, ts: datetime) -> Reading:
        """Exactly the Reading the meter's payload at ``ts`` parses to."""
        meter = self.meter(serial)
        v = self._loads[serial].values(ts)
        ts = ts.astimezone(UTC)
        if meter.format == "tasmota":  # Tasmota energy monitors: no export, no frequency
            return Reading(
                serial,
                ts,
                round(v["energy_import_kwh"], 3),
                power_w=_round(v["power_w"], 1),
                voltage_v=_round(v["voltage_v"], 1),
                current_a=_round(v["current_a"], 3),
            )
        return Reading(
            serial,
            ts,
            round(v["energy_import_kwh"], 3),
            _round(v["energy_export_kwh"], 3),
            _round(v["power_w"], 1),
            _round(v["voltage_v"], 1),
            _round(v["current_a"], 3),
            _round(v["frequency_hz"], 2),
        )

    def history(
        self, serial: str, start: datetime, end: datetime, interval: float | None = None
    ) -> Iterator[Reading]:
        """The meter's readings at each multiple of ``interval`` (default: the fleet's) in
        [start, end): the same load model as the live messages."""
        self.meter(serial)
        step = interval or self.interval
        return readings_between(lambda ts: self.truth(serial, ts), start, end, step)

    def expected_readings(self) -> dict[tuple[str, datetime], Reading]:
        """What the database must hold: every reading of every accepted message, once."""
        self._require_record()
        out: dict[tuple[str, datetime], Reading] = {}
        for p in self.published:
            if not p.rejected:
                for r in p.readings:
                    out.setdefault((r.serial, r.ts), r)
        return out

    def expected_rejections(self) -> list[Published]:
        self._require_record()
        return [p for p in self.published if p.rejected]

    def _require_record(self) -> None:
        if not self.record:
            raise RuntimeError("this fleet keeps no messages (record=False)")

    # -- connections -------------------------------------------------------------------------
    def connect(self, timeout: float = 10.0) -> None:
        if self._connections:
            return
        count = math.ceil(len(self._meters) / self._per_connection)
        tag = uuid.uuid4().hex[:8]
        try:
            for k in range(count):
                conn = _Connection(self.broker, f"doxa-sim-{tag}-{k}", self.max_unacked)
                conn.open(timeout)
                self._connections.append(conn)
        except ConnectionError:
            self.close()
            raise

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until the broker has acknowledged every message; False on timeout."""
        return all(c.flush(timeout) for c in self._connections)

    def close(self) -> None:
        self.flush(self.publish_timeout)
        for conn in self._connections:
            conn.close()
        self._connections = []

    def __enter__(self) -> MqttFleet:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def connections(self) -> int:
        return len(self._connections)

    # -- publishing --------------------------------------------------------------------------
    def _connection_for(self, serial: str) -> _Connection:
        if not self._connections:
            raise RuntimeError("connect the fleet first")
        index = self._index.get(serial, 0)
        return self._connections[index // self._per_connection % len(self._connections)]

    def _send(self, message: Published) -> Published:
        self._connection_for(message.serial).publish(
            message.topic, message.payload, self.publish_timeout
        )
        with self._lock:
            self.published_count += 1
            if self.record:
                self.published.append(message)
            if message.kind in ("reading", "backlog"):
                self._last[message.serial] = message
        return message

    def _encode(self, meter: MqttMeter, readings: Sequence[Reading]) -> bytes:
        if meter.format == "native":
            return encode_native(readings[0] if len(readings) == 1 else readings, self.tz)
        return encode_tasmota(readings[0], self.tz)

    def now(self) -> datetime:
        """The clock's time to whole seconds (Tasmota times have no fractions)."""
        return self.clock.now().replace(microsecond=0)

    def publish_reading(self, serial: str, ts: datetime | None = None) -> Published:
        """Publish the meter's reading at ``ts`` (default: now), even if it is offline."""
        meter = self.meter(serial)
        reading = self.truth(serial, ts or self.now())
        return self._send(
            Published("reading", serial, meter.topic, self._encode(meter, [reading]), (reading,))
        )

    def publish_round(self, ts: datetime | None = None) -> list[Published]:
        """Every online meter publishes its reading at ``ts`` (default: now); offline meters
        remember the time for their backlog."""
        at = ts or self.now()
        out = []
        for meter in self._meters:
            if meter.serial in self._offline:
                self._offline[meter.serial].append(at)
            else:
                out.append(self.publish_reading(meter.serial, at))
        return out

    def publish_backlog(
        self, serial: str, times: Iterable[datetime], *, kind: str = "backlog"
    ) -> list[Published]:
        """Readings at ``times`` as one native array (Tasmota: one message each, in order)."""
        meter = self.meter(serial)
        readings = [self.truth(serial, ts) for ts in times]
        if not readings:
            return []
        if meter.format == "native":
            payload = encode_native(readings, self.tz)
            return [self._send(Published(kind, serial, meter.topic, payload, tuple(readings)))]
        return [
            self._send(Published(kind, serial, meter.topic, encode_tasmota(r, self.tz), (r,)))
            for r in readings
        ]

    def publish_duplicate(self, serial: str) -> Published:
        """Send the meter's last reading message again (as a meter retrying would)."""
        last = self._last.get(serial)
        if last is None:
            raise RuntimeError(f"{serial} has published nothing to duplicate")
        return self._send(Published("duplicate", serial, last.topic, last.payload, last.readings))

    def publish_out_of_order(self, serial: str, count: int = 3) -> list[Published]:
        """The meter's readings at the last ``count`` interval ticks, newest first."""
        now = self.now()
        start = now - timedelta(seconds=self.interval * count)
        ticks = list(aligned_times(start, now + timedelta(microseconds=1), self.interval))
        out = []
        for ts in reversed(ticks[-count:]):
            out.extend(self.publish_backlog(serial, [ts], kind="out_of_order"))
        return out

    def malformed_payload(self, serial: str, kind: str) -> bytes:
        """A payload of the meter's format that must be rejected (one of MALFORMED_KINDS)."""
        meter = self.meter(serial)
        good = json.loads(self._encode(meter, [self.truth(serial, self.now())]))
        energy = good["ENERGY"] if meter.format == "tasmota" else good
        energy_key = "Total" if meter.format == "tasmota" else "energy_import_kwh"
        time_key = "Time" if meter.format == "tasmota" else "ts"
        if kind == "not_json":
            return b'{"ts": 2026-11-26, energy'
        if kind == "missing_energy":
            del energy[energy_key]
        elif kind == "negative_energy":
            energy[energy_key] = -12.5
        elif kind == "bad_time":
            good[time_key] = "yesterday at noon"
        elif kind == "future":
            future = self.clock.now() + timedelta(days=1)
            good[time_key] = future.astimezone(self.tz).replace(microsecond=0).isoformat()
            if meter.format == "tasmota":
                good[time_key] = good[time_key][:19]
        else:
            raise ValueError(f"unknown malformed kind {kind!r} (one of {MALFORMED_KINDS})")
        return json.dumps(good).encode()

    def publish_malformed(self, serial: str, kind: str = "not_json") -> Published:
        meter = self.meter(serial)
        payload = self.malformed_payload(serial, kind)
        try:
            parse_payload(meter.format, serial, payload, tz=self.tz, now=self.clock.now())
        except PayloadError as exc:
            reason = exc.reason
        else:  # pragma: no cover - each kind is built to be rejected
            raise AssertionError(f"malformed payload {kind} parsed")
        return self._send(Published(f"malformed:{kind}", serial, meter.topic, payload,
                                    reason=reason))  # fmt: skip

    def publish_unknown(self, serial: str | None = None, fmt: str = "native") -> Published:
        """A valid reading from a serial that is not in the fleet's inventory."""
        unknown = serial or f"UNKNOWN-{uuid.uuid4().hex[:8]}"
        if unknown in self._by_serial:
            raise ValueError(f"{unknown} is a known meter")
        ts = self.now()
        reading = Reading(unknown, ts.astimezone(UTC), 42.0, power_w=100.0)
        payload = (
            encode_native(reading, self.tz) if fmt == "native" else encode_tasmota(reading, self.tz)
        )
        topic = self.topics[fmt].format(serial=unknown)
        return self._send(Published("unknown", unknown, topic, payload, (reading,), known=False))

    def go_offline(self, serial: str) -> None:
        """The meter stops publishing in rounds; the rounds it misses make its backlog."""
        self.meter(serial)
        self._offline.setdefault(serial, [])

    def come_online(self, serial: str) -> list[Published]:
        """The meter is back and publishes the readings it missed while offline."""
        return self.publish_backlog(serial, self._offline.pop(serial, []))

    @property
    def offline(self) -> frozenset[str]:
        return frozenset(self._offline)

    # -- running -----------------------------------------------------------------------------
    async def run(
        self,
        stop: asyncio.Event,
        rounds: int | None = None,
        publish: Callable[[datetime], object] | None = None,
    ) -> int:
        """Publish a round at every multiple of ``interval`` of simulated time until ``stop`` is
        set (or ``rounds`` rounds are done); returns the number of rounds published.
        ``publish(ts)`` replaces :meth:`publish_round` (e.g. to add faults to each round)."""
        publish_round = publish or self.publish_round
        done = 0
        # The first round is the tick just passed (published at once), then every tick.
        nxt = math.floor(self.clock.now().timestamp() / self.interval) * self.interval
        while not stop.is_set() and (rounds is None or done < rounds):
            wait = self.clock.wall_seconds(nxt - self.clock.now().timestamp())
            if wait > 0:
                try:
                    await asyncio.wait_for(stop.wait(), timeout=wait)
                    break
                except TimeoutError:
                    pass
            ts = datetime.fromtimestamp(nxt, UTC)
            await asyncio.to_thread(publish_round, ts)
            done += 1
            nxt += self.interval
        return done
