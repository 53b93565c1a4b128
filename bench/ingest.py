"""Ingestion benchmark: each collector path beside its raw ceiling, measured in the same run.

* **Writer** — raw binary ``COPY`` straight into the hypertable vs. the collector's idempotent
  write path in its batch sizes (``COPY`` under a savepoint, falling back to staging ``COPY`` +
  ``INSERT … ON CONFLICT DO NOTHING`` when a batch holds stored readings), the fallback alone, and
  the alternatives considered (``INSERT … SELECT FROM unnest(…)``, ``executemany``).
* **MQTT** — one paho QoS 1 publisher to a bare paho subscriber vs. the same publisher to
  ``doxa collect``, timed from the first publish until the last reading is committed; rows
  counted against messages published (zero loss is checked, not assumed). Then the collector's
  own capacity: the same messages queued at the broker while it is stopped, drained into a fresh
  database (no publisher competing for the CPU).
* **Modbus** — a bare pymodbus loop (one client per gateway, all gateways at once) vs.
  ``doxa collect`` polling the same simulated gateways; then again with every meter answering
  after 50 ms (an RS-485 bus), where the ceiling is gateways ÷ latency per meter.

Every process that matters runs on its own (publisher, subscriber, simulators, collector) so the
figures are not bent by one Python interpreter's lock; helpers are forked (no threads run in this
process when they are). Run ``python -m bench.ingest [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

REPO = Path(__file__).resolve().parents[1]
DOXA = Path(sys.executable).parent / "doxa"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    ceiling: float | None = None
    target: float | None = None
    note: str = ""

    def row(self) -> str:
        ratio = "" if not self.ceiling else f"{self.value / self.ceiling:.0%}"
        ceiling = "" if self.ceiling is None else f"{self.ceiling:,.0f}"
        target = "" if self.target is None else f"≥ {self.target:.0%}"
        return (
            f"| {self.name} | {self.value:,.0f} {self.unit} | {ceiling} | {ratio} | {target} |"
            f" {self.note} |"
        )


# -- environment ---------------------------------------------------------------------------------


@contextmanager
def services() -> Iterator[tuple[Any, Any]]:
    """A durable TimescaleDB cluster and our Mosquitto (its production configuration)."""
    from doxa.services.mosquitto import EmbeddedMosquitto
    from doxa.services.postgres import EmbeddedPostgres

    root = Path(tempfile.mkdtemp(prefix="doxa-bench-"))
    root.chmod(0o755)
    pg = EmbeddedPostgres(root / "pg", durable=True, database="postgres")
    broker = EmbeddedMosquitto(root / "mqtt")
    try:
        pg.start()
        broker.start()
        yield pg, broker
    finally:
        broker.stop()
        pg.destroy()
        shutil.rmtree(root, ignore_errors=True)


def fresh_database(pg: Any, name: str) -> str:
    from schema.migrate import migrate

    pg.ensure_database(name)
    url = str(pg.url(name))
    migrate(url)
    return url


def add_meters(
    url: str, serials: list[str], modbus: Sequence[tuple[str, str, int, int]] = ()
) -> None:
    """Customers and meters straight in SQL (the benchmark is not about the import)."""
    with psycopg.connect(url) as conn:
        with conn.cursor() as cur:
            for i, serial in enumerate(serials):
                code = f"PB9999{i:07d}"
                cur.execute(
                    "INSERT INTO customers (code, name, reading_day) VALUES (%s, %s, 5)"
                    " RETURNING id",
                    (code, f"Bench {i}"),
                )
                (cid,) = cur.fetchone()  # type: ignore[misc]
                row = next((m for m in modbus if m[0] == serial), None)
                if row is None:
                    cur.execute(
                        "INSERT INTO meters (serial, customer_id, protocol)"
                        " VALUES (%s, %s, 'mqtt')",
                        (serial, cid),
                    )
                else:
                    cur.execute(
                        "INSERT INTO meters (serial, customer_id, protocol, model, host, port,"
                        " unit_id) VALUES (%s, %s, 'modbus', 'sdm120', %s, %s, %s)",
                        (serial, cid, row[1], row[2], row[3]),
                    )
        conn.execute("UPDATE inventory_version SET version = version + 1")


def count_rows(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM readings").fetchone()
        return int(row[0]) if row else 0


def doxa_env(db_url: str, mqtt_url: str, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOXA_")}
    env.update(DOXA_DATABASE_URL=db_url, DOXA_MQTT_URL=mqtt_url, DOXA_HOME=str(home))
    return env


@contextmanager
def doxa_collect(env: dict[str, str], *args: str) -> Iterator[subprocess.Popen[bytes]]:
    Path(env["DOXA_HOME"]).mkdir(parents=True, exist_ok=True)
    log = open(Path(env["DOXA_HOME"]) / "collector.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen(
        [str(DOXA), "collect", *args], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO
    )
    log.close()
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_until(predicate: Callable[[], bool], timeout: float, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False


# -- writer --------------------------------------------------------------------------------------


def bench_writer(pg: Any, rows: int) -> list[Figure]:
    from collector.units import Unit
    from collector.writer import Writer
    from protocols.reading import Reading

    url = fresh_database(pg, "bench_writer")
    meters = 1000
    serials = [f"W{i:05d}" for i in range(meters)]
    add_meters(url, serials)
    with psycopg.connect(url) as conn:
        ids: dict[str, int] = dict(conn.execute("SELECT serial, id FROM meters").fetchall())
    readings = [
        Reading(serials[i % meters], T0 + timedelta(minutes=i // meters), 100.0 + i, 0.0, 850.0,
                229.8, 3.9, 50.0)
        for i in range(rows)
    ]  # fmt: skip

    def truncate() -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("TRUNCATE readings, meter_status")

    def raw_copy() -> float:
        truncate()
        started = time.perf_counter()
        with (
            psycopg.connect(url) as conn,
            conn.cursor() as cur,
            cur.copy(
                "COPY readings (meter_id, ts, energy_import_kwh, energy_export_kwh, power_w,"
                " voltage_v, current_a, frequency_hz, source) FROM STDIN (FORMAT BINARY)"
            ) as copy,
        ):
            copy.set_types(["int4", "timestamptz"] + ["float8"] * 6 + ["text"])
            for r in readings:
                copy.write_row((ids[r.serial], r.ts, r.energy_import_kwh,
                                r.energy_export_kwh, r.power_w, r.voltage_v, r.current_a,
                                r.frequency_hz, "mqtt"))  # fmt: skip
        return rows / (time.perf_counter() - started)

    def collector_path(batch: int, fast_path: bool = True, fresh: bool = True) -> float:
        if fresh:
            truncate()
        writer = Writer(url, "bench", fast_path=fast_path)
        units = [Unit("mqtt", (r,), None, r.serial) for r in readings]
        started = time.perf_counter()
        for i in range(0, rows, batch):
            writer.write(units[i : i + batch])
        elapsed = time.perf_counter() - started
        writer.close()
        assert count_rows(url) == rows
        return rows / elapsed

    def unnest_path(batch: int) -> float:
        truncate()
        started = time.perf_counter()
        with psycopg.connect(url) as conn:
            for i in range(0, rows, batch):
                part = readings[i : i + batch]
                with conn.transaction():
                    conn.execute(
                        "INSERT INTO readings (meter_id, ts, energy_import_kwh, energy_export_kwh,"
                        " power_w, voltage_v, current_a, frequency_hz, source)"
                        " SELECT m.id, u.ts, u.e, u.x, u.p, u.v, u.c, u.f, 'mqtt' FROM"
                        " unnest(%s::text[], %s::timestamptz[], %s::float8[], %s::float8[],"
                        " %s::float8[], %s::float8[], %s::float8[], %s::float8[])"
                        " AS u(serial, ts, e, x, p, v, c, f) JOIN meters m ON m.serial = u.serial"
                        " ON CONFLICT (meter_id, ts) DO NOTHING",
                        [[r.serial for r in part], [r.ts for r in part],
                         [r.energy_import_kwh for r in part], [r.energy_export_kwh for r in part],
                         [r.power_w for r in part], [r.voltage_v for r in part],
                         [r.current_a for r in part], [r.frequency_hz for r in part]],
                    )  # fmt: skip
        return rows / (time.perf_counter() - started)

    def executemany_path(batch: int) -> float:
        truncate()
        n = min(rows, 20_000)
        started = time.perf_counter()
        with psycopg.connect(url) as conn, conn.cursor() as cur:
            for i in range(0, n, batch):
                with conn.transaction():
                    cur.executemany(
                        "INSERT INTO readings (meter_id, ts, energy_import_kwh, source)"
                        " VALUES (%s, %s, %s, 'mqtt') ON CONFLICT (meter_id, ts) DO NOTHING",
                        [
                            (ids[r.serial], r.ts, r.energy_import_kwh)
                            for r in readings[i : i + batch]
                        ],
                    )
        return n / (time.perf_counter() - started)

    ceiling = raw_copy()
    ours = {batch: collector_path(batch) for batch in (1000, 5000)}
    staging = collector_path(1000, fast_path=False)
    replay = collector_path(1000, fresh=False)  # every reading already stored: all duplicates
    unnest = unnest_path(1000)
    many = executemany_path(1000)
    ceiling = max(ceiling, raw_copy())  # best of two: the ceiling is not flattered
    return [
        Figure("raw binary COPY into `readings` (one transaction)", ceiling, "rows/s"),
        Figure(
            "collector writer, batches of 1,000",
            ours[1000],
            "rows/s",
            ceiling,
            0.40,
            "new readings: one COPY into `readings` per batch",
        ),
        Figure(
            "collector writer, batches of 5,000",
            ours[5000],
            "rows/s",
            ceiling,
            0.40,
            "the largest batch the collector takes (when it falls behind)",
        ),
        Figure(
            "collector writer, 1,000, every reading already stored",
            replay,
            "rows/s",
            ceiling,
            None,
            "a replay: staging COPY + INSERT … ON CONFLICT DO NOTHING",
        ),
        Figure(
            "alternative: always staging COPY + ON CONFLICT, 1,000",
            staging,
            "rows/s",
            ceiling,
            None,
            "the first design; kept as the fallback",
        ),
        Figure(
            "alternative: INSERT … SELECT FROM unnest(arrays) ON CONFLICT, 1,000",
            unnest,
            "rows/s",
            ceiling,
            None,
            "not chosen",
        ),
        Figure(
            "alternative: executemany ON CONFLICT, 1,000",
            many,
            "rows/s",
            ceiling,
            None,
            "not chosen",
        ),
    ]


# -- MQTT ----------------------------------------------------------------------------------------


def _payloads(n: int, meters: int) -> list[tuple[str, bytes]]:
    out = []
    for i in range(n):
        serial = f"Q{i % meters:05d}"
        ts = (T0 + timedelta(minutes=i // meters)).isoformat()
        body = {"ts": ts, "energy_import_kwh": 100.0 + i, "power_w": 850.0, "voltage_v": 229.8}
        out.append((f"doxa/meters/{serial}/reading", json.dumps(body).encode()))
    return out


def _publisher(url: str, n: int, meters: int, ready: Any, go: Any, result: Any) -> None:
    """Publish n QoS 1 messages as fast as the broker takes them (flow control: at most 5,000
    unacknowledged), then report (start, end) wall times."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    from protocols.broker_url import parse_broker_url

    address = parse_broker_url(url)
    messages = _payloads(n, meters)
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{uuid.uuid4().hex[:6]}")
    # Flow control here, not in paho: paho rescans its whole queue on every acknowledgement
    # once it holds more than its in-flight limit, which makes a large backlog quadratic.
    client.max_inflight_messages_set(0)
    client.connect(address.host, address.port)
    client.loop_start()
    ready.set()
    go.wait()
    pending: deque[Any] = deque()
    started = time.time()
    for topic, payload in messages:
        pending.append(client.publish(topic, payload, qos=1))
        if len(pending) >= 5_000:
            pending.popleft().wait_for_publish(60)
    while pending:
        pending.popleft().wait_for_publish(60)
    result.put((started, time.time()))
    client.disconnect()
    client.loop_stop()


def _bare_subscriber(url: str, n: int, ready: Any, result: Any) -> None:
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    from protocols.broker_url import parse_broker_url

    address = parse_broker_url(url)
    received = 0
    done = threading.Event()

    def on_message(_c: Any, _u: Any, _m: Any) -> None:
        nonlocal received
        received += 1
        if received == n:
            done.set()

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-sub-{uuid.uuid4().hex[:6]}")
    client.on_message = on_message
    subscribed = threading.Event()
    client.on_subscribe = lambda *_a: subscribed.set()
    client.connect(address.host, address.port)
    client.loop_start()
    client.subscribe("doxa/meters/+/reading", qos=1)
    subscribed.wait(10)
    ready.set()
    done.wait(300)
    result.put((time.time(), received))
    client.disconnect()
    client.loop_stop()


def _start_publisher(url: str, n: int, meters: int) -> tuple[Any, Any, Any]:
    ctx = mp.get_context("fork")
    ready, go, result = ctx.Event(), ctx.Event(), ctx.Queue()
    proc = ctx.Process(target=_publisher, args=(url, n, meters, ready, go, result))
    proc.start()
    if not ready.wait(60):
        raise RuntimeError("publisher did not start")
    return proc, go, result


def _bare(broker: Any, n: int, meters: int) -> tuple[float, int]:
    """The ceiling: the publisher to a bare paho subscriber; (msg/s, messages received)."""
    ctx = mp.get_context("fork")
    sub_ready, sub_result = ctx.Event(), ctx.Queue()
    sub = ctx.Process(target=_bare_subscriber, args=(broker.url, n, sub_ready, sub_result))
    sub.start()
    sub_ready.wait(30)
    pub, go, pub_result = _start_publisher(broker.url, n, meters)
    go.set()
    started, _published = pub_result.get(timeout=600)
    finished, received = sub_result.get(timeout=600)
    pub.join(30)
    sub.join(30)
    return n / (finished - started), received


def bench_mqtt(pg: Any, broker: Any, n: int, home: Path) -> list[Figure]:
    meters = 1000
    # The ceiling is measured before and after the collector, and the better run kept: on a
    # small machine it varies from run to run, and the ratio must not be flattered by a slow one.
    first, received = _bare(broker, n, meters)

    # The collector: same publisher, published → committed.
    url = fresh_database(pg, "bench_mqtt")
    add_meters(url, [f"Q{i:05d}" for i in range(meters)])
    collector_id = f"bench-{uuid.uuid4().hex[:6]}"
    env = doxa_env(url, broker.url, home / "mqtt")
    with doxa_collect(env, "--collector-id", collector_id):
        with psycopg.connect(url, autocommit=True) as conn:
            ok = wait_until(
                lambda: (
                    conn.execute(
                        "SELECT 1 FROM collectors WHERE id = %s", (collector_id,)
                    ).fetchone()
                    is not None
                ),
                30,
            )
        if not ok:
            raise RuntimeError("the collector did not start; see its log under " + str(home))
        time.sleep(1.0)  # let it subscribe
        pub, go, pub_result = _start_publisher(broker.url, n, meters)
        go.set()
        with psycopg.connect(url, autocommit=True) as conn:

            def all_rows() -> bool:
                row = conn.execute("SELECT count(*) FROM readings").fetchone()
                return bool(row and row[0] >= n)

            wait_until(all_rows, 600, step=0.01)
            committed = time.time()
        started, published = pub_result.get(timeout=60)
        pub.join(30)
    rows = count_rows(url)
    with psycopg.connect(url) as conn:
        distinct = conn.execute("SELECT count(DISTINCT (meter_id, ts)) FROM readings").fetchone()
    ours = n / (committed - started)
    loss = "zero loss" if rows == n == (distinct[0] if distinct else -1) else f"{rows} rows"
    drained, drain_rows = _drain(pg, broker, n, meters, env, collector_id)
    _forget_session(broker.url, collector_id)  # (or the broker would queue the next run for it)
    second, received_again = _bare(broker, n, meters)
    bare = max(first, second)
    return [
        Figure(
            "MQTT QoS 1: publisher → bare paho subscriber",
            bare,
            "msg/s",
            note=f"best of two runs ({first:,.0f} before the collector's, {second:,.0f} after);"
            f" {min(received, received_again):,} of {n:,} received",
        ),
        Figure(
            "MQTT QoS 1: publisher → `doxa collect` → committed",
            ours,
            "readings/s",
            bare,
            0.80,
            f"{n:,} published, {rows:,} rows stored ({loss}); meanwhile the publisher sent"
            f" {n / (published - started):,.0f} msg/s",
        ),
        Figure(
            "MQTT: `doxa collect` draining a backlog queued at the broker",
            drained,
            "readings/s",
            note=f"the collector's own capacity (no publisher running): {n:,} queued, "
            f"{drain_rows:,} rows stored",
        ),
    ]


def _forget_session(url: str, client_id: str) -> None:
    """End the broker's persistent session of ``client_id`` (a clean connect and disconnect)."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    from protocols.broker_url import parse_broker_url

    address = parse_broker_url(url)
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    connected = threading.Event()
    client.on_connect = lambda *_a: connected.set()
    client.connect(address.host, address.port)
    client.loop_start()
    connected.wait(10)
    client.disconnect()
    client.loop_stop()


def _drain(
    pg: Any, broker: Any, n: int, meters: int, env: dict[str, str], collector_id: str
) -> tuple[float, int]:
    """The collector's capacity without a publisher beside it: n messages published while it is
    stopped (its persistent session queues them), then drained into a fresh database; timed from
    the first committed row to the last (start-up excluded)."""
    url = fresh_database(pg, "bench_mqtt_drain")
    add_meters(url, [f"Q{i:05d}" for i in range(meters)])
    pub, go, pub_result = _start_publisher(broker.url, n, meters)
    go.set()
    pub_result.get(timeout=600)
    pub.join(30)
    with (
        doxa_collect({**env, "DOXA_DATABASE_URL": url}, "--collector-id", collector_id),
        psycopg.connect(url, autocommit=True) as conn,
    ):

        def stored() -> int:
            row = conn.execute("SELECT count(*) FROM readings").fetchone()
            return int(row[0]) if row else 0

        if not wait_until(lambda: stored() > 0, 60, step=0.005):
            raise RuntimeError("the collector did not drain its backlog")
        first, t1 = stored(), time.monotonic()
        wait_until(lambda: stored() >= n, 600, step=0.005)
        t2 = time.monotonic()
    return (n - first) / (t2 - t1), count_rows(url)


# -- Modbus --------------------------------------------------------------------------------------


def _simulator(gateways: int, meters: int, delay: float, ports: Any, stop: Any) -> None:
    from simulators.modbus import ModbusFleet

    async def main() -> None:
        fleet = ModbusFleet(meters=meters, gateways=gateways, seed=1, models=("sdm120",))
        if delay:
            fleet.set_delay_all(delay)
        await fleet.start()
        ports.put([(m.serial, m.host, m.port, m.unit_id) for m in fleet.meters])
        while not stop.is_set():
            await asyncio.sleep(0.1)
        await fleet.stop()

    asyncio.run(main())


@contextmanager
def simulator(
    gateways: int, meters: int, delay: float
) -> Iterator[list[tuple[str, str, int, int]]]:
    ctx = mp.get_context("fork")
    ports, stop = ctx.Queue(), ctx.Event()
    proc = ctx.Process(target=_simulator, args=(gateways, meters, delay, ports, stop))
    proc.start()
    try:
        yield ports.get(timeout=60)
    finally:
        stop.set()
        proc.join(30)


def _bare_modbus(meters: list[tuple[str, str, int, int]], seconds: float, result: Any) -> None:
    """One pymodbus client per gateway, reading each meter's planned requests in turn."""
    from pymodbus.client import AsyncModbusTcpClient

    from protocols.modbus import get_model

    model = get_model("sdm120")

    async def gateway(host: str, port: int, units: list[int], deadline: float) -> int:
        client = AsyncModbusTcpClient(host, port=port, timeout=2, retries=0)
        await client.connect()
        done = 0
        while time.monotonic() < deadline:
            for unit in units:
                for r in model.requests:
                    await client.read_input_registers(r.address, count=r.count, device_id=unit)
                done += 1
        client.close()
        return done

    async def main() -> None:
        by_gateway: dict[tuple[str, int], list[int]] = {}
        for _serial, host, port, unit in meters:
            by_gateway.setdefault((host, port), []).append(unit)
        deadline = time.monotonic() + seconds
        started = time.monotonic()
        counts = await asyncio.gather(
            *(gateway(h, p, u, deadline) for (h, p), u in by_gateway.items())
        )
        result.put(sum(counts) / (time.monotonic() - started))

    asyncio.run(main())


def _metric(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def bench_modbus(
    pg: Any, broker: Any, home: Path, gateways: int, per_gateway: int, delay: float, seconds: float
) -> tuple[float, float, int]:
    """(bare meters/s, collector meters/s, requests per meter)."""
    from doxa.services._proc import free_port
    from protocols.modbus import get_model

    ctx = mp.get_context("fork")
    with simulator(gateways, gateways * per_gateway, delay) as meters:
        result = ctx.Queue()
        bare_proc = ctx.Process(target=_bare_modbus, args=(meters, seconds, result))
        bare_proc.start()
        bare = float(result.get(timeout=seconds + 60))
        bare_proc.join(30)

        url = fresh_database(pg, f"bench_modbus_{int(delay * 1000)}")
        add_meters(url, [m[0] for m in meters], modbus=meters)
        port = free_port()
        env = doxa_env(url, broker.url, home / f"modbus-{int(delay * 1000)}")
        ok = 'doxa_collector_polls_total{outcome="ok"}'
        with doxa_collect(
            env, "--collector-id", "bench-modbus", "--interval", "0.01", "--metrics-port", str(port)
        ):

            def polling() -> bool:
                try:
                    return _metric(port, ok) > 0
                except OSError:
                    return False

            if not wait_until(polling, 60, step=0.1):
                raise RuntimeError("the collector is not polling; see its log under " + str(home))
            time.sleep(1.0)  # warm up
            first, t1 = _metric(port, ok), time.monotonic()
            time.sleep(seconds)
            last, t2 = _metric(port, ok), time.monotonic()
    return bare, (last - first) / (t2 - t1), len(get_model("sdm120").requests)


# -- report --------------------------------------------------------------------------------------


def run(quick: bool = False) -> str:
    """Run every measurement; returns the Markdown section (and prints progress to stderr)."""
    n_rows = 50_000 if quick else 200_000
    n_msgs = 20_000 if quick else 100_000
    seconds = 4.0 if quick else 10.0
    figures: list[Figure] = []
    with services() as (pg, broker):
        home = Path(tempfile.mkdtemp(prefix="doxa-bench-home-"))
        try:
            print("writer…", file=sys.stderr)
            figures += bench_writer(pg, n_rows)
            print("MQTT…", file=sys.stderr)
            figures += bench_mqtt(pg, broker, n_msgs, home)
            print("Modbus…", file=sys.stderr)
            bare, ours, requests = bench_modbus(pg, broker, home, 10, 20, 0.0, seconds)
            figures += [
                Figure("Modbus: bare pymodbus loop, 10 gateways × 20 meters", bare, "meters/s"),
                Figure("Modbus: `doxa collect`, same gateways", ours, "meters/s", bare, 0.50),
            ]
            slow_bare, slow_ours, _ = bench_modbus(pg, broker, home, 20, 5, 0.05, seconds)
            ideal = 20 / (0.05 * requests)
            figures += [
                Figure(
                    f"Modbus, 50 ms answers: gateways ÷ latency (20 ÷ ({requests} × 50 ms))",
                    ideal,
                    "meters/s",
                ),
                Figure("Modbus, 50 ms answers: bare pymodbus loop", slow_bare, "meters/s", ideal),
                Figure("Modbus, 50 ms answers: `doxa collect`", slow_ours, "meters/s", ideal, 0.80),
            ]
        finally:
            shutil.rmtree(home, ignore_errors=True)
    return report(figures, quick)


def report(figures: list[Figure], quick: bool) -> str:
    machine = f"{os.cpu_count()} vCPU {platform.processor() or platform.machine()}"
    try:
        model = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
        machine = f"{os.cpu_count()} vCPU {model}"
    except (OSError, StopIteration):
        pass
    lines = [
        "## Ingestion (`bench/ingest.py`)",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine}, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
        f"{' (quick run)' if quick else ''}. Ceilings measured in the same run.",
        "",
        "| path | figure | ceiling | ratio | target | note |",
        "|---|---|---|---|---|---|",
        *(f.row() for f in figures),
        "",
        "Method: the writer's ceiling is one binary `COPY` of every row in one transaction (best"
        " of two); the collector's writer commits each batch (its `COPY`, the `meter_status`"
        " upsert, fsync). The MQTT ceiling is the better of two bare-subscriber runs, one before"
        " and one after the collector's; the collector is timed from the first publish to the"
        " last row committed, with the publisher, broker, PostgreSQL and collector sharing the"
        " machine. The backlog figure is the collector alone, without a publisher beside it.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller, faster run")
    args = parser.parse_args(argv)
    print(run(quick=args.quick))


if __name__ == "__main__":
    main()
