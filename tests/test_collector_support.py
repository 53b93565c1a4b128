"""Helpers shared by the collector tests (no tests here): an event loop in a thread that runs
simulators and in-process collectors, bounded waits, inventory set-up, database look-ups."""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import psycopg

from collector import Collector, CollectorConfig
from protocols.modbus.models import MODEL_NAMES
from schema.inventory import import_inventory, parse_inventory

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[1]
DOXA = REPO / ".venv" / "bin" / "doxa"

HEADER = (
    "customer_code,customer_name,address,province,tariff_group,reading_day,meter_serial,"
    "protocol,model,host,port,unit_id,multiplier,collector_id"
)


class LoopThread:
    """An asyncio loop in a daemon thread; ``run(coro)`` runs a coroutine there and waits."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="test-loop", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def wait_for(
    predicate: Callable[[], T], timeout: float = 30, interval: float = 0.1, what: str = ""
) -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(interval)


def test_config(db_url: str, home: Path, **changes: Any) -> CollectorConfig:
    """A collector configuration with short intervals for tests."""
    base = CollectorConfig(
        collector_id="test-collector",
        database_url=db_url,
        spool_dir=home / "spool",
        mqtt_url=None,
        poll_interval=1.0,
        batch_interval=0.05,
        heartbeat_interval=0.5,
        inventory_interval=0.5,
        db_retry_interval=0.3,
        modbus_timeout=0.25,
        backoff_after=2,
        backoff_max_cycles=2,
        stop_grace=3,
    )
    return replace(base, **changes)


test_config.__test__ = False  # type: ignore[attr-defined]  # not a test, despite its name


class InProcessCollector:
    """A :class:`Collector` started and stopped on a :class:`LoopThread`."""

    def __init__(self, loop: LoopThread, config: CollectorConfig) -> None:
        self.loop = loop
        self.collector = Collector(config)

    def __enter__(self) -> Collector:
        self.loop.run(self.collector.start())
        return self.collector

    def __exit__(self, *exc: object) -> None:
        self.loop.run(self.collector.stop())


def inventory_line(
    serial: str,
    index: int,
    protocol: str = "mqtt",
    model: str = "",
    host: str = "",
    port: int | str = "",
    unit_id: int | str = "",
    collector_id: str = "",
) -> str:
    code = f"PB0101{index:07d}"
    return (
        f"{code},Customer {index},Addr {index},Bình Dương,residential,5,{serial},{protocol},"
        f"{model},{host},{port},{unit_id},,{collector_id}"
    )


def import_csv(db_url: str, csv_text: str) -> None:
    with psycopg.connect(db_url) as conn:
        rows = parse_inventory(csv_text, tariff_groups={"residential"}, models=MODEL_NAMES)
        import_inventory(conn, rows)


def import_mqtt_meters(db_url: str, serials: Iterable[str], start: int = 1) -> None:
    lines = [inventory_line(s, start + i) for i, s in enumerate(serials)]
    import_csv(db_url, "\n".join([HEADER, *lines]) + "\n")


def stored(
    db: psycopg.Connection, serial: str | None = None
) -> list[
    tuple[str, Any, float, float | None, float | None, float | None, float | None, float | None]
]:
    """(serial, ts, energy_import, export, power, voltage, current, frequency) ordered."""
    query = (
        "SELECT m.serial, r.ts, r.energy_import_kwh, r.energy_export_kwh, r.power_w, r.voltage_v,"
        " r.current_a, r.frequency_hz FROM readings r JOIN meters m ON m.id = r.meter_id"
    )
    if serial is None:
        return db.execute(query + " ORDER BY m.serial, r.ts").fetchall()  # type: ignore[return-value]
    return db.execute(query + " WHERE m.serial = %s ORDER BY r.ts", (serial,)).fetchall()  # type: ignore[return-value]


def count(db: psycopg.Connection, sql: str, *params: Any) -> int:
    row = db.execute(sql, params).fetchone()
    assert row is not None
    return int(row[0])


def doxa_env(db_url: str, mqtt_url: str, home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOXA_")}
    env.update(
        {
            "DOXA_DATABASE_URL": db_url,
            "DOXA_MQTT_URL": mqtt_url,
            "DOXA_HOME": str(home),
            "DOXA_TIMEZONE": "Asia/Ho_Chi_Minh",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


def start_doxa_collect(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    """``doxa collect ARGS`` as a real subprocess, its output appended to ``log``."""
    out = open(log, "ab")  # noqa: SIM115 - handed to the child
    try:
        return subprocess.Popen(
            [str(DOXA), "collect", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=str(REPO),
        )
    finally:
        out.close()


def set_installed_at(db: psycopg.Connection, serial: str, at: Any) -> None:
    """Give meter ``serial`` an installation time, whichever schema holds it: issue 13's
    (``installed_at`` belongs to a replacement meter, so an old meter is made for it to replace)
    or, before that migration, a column added to this test's database."""
    columns = {
        name
        for (name,) in db.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'meters'"
        )
    }
    if "replaces_meter_id" in columns:
        row = db.execute(
            "INSERT INTO meters (serial, customer_id, protocol)"
            " SELECT serial || '-OLD', customer_id, 'mqtt' FROM meters WHERE serial = %s"
            " RETURNING id",
            (serial,),
        ).fetchone()
        assert row is not None
        db.execute(
            "UPDATE meters SET replaces_meter_id = %s, installed_at = %s WHERE serial = %s",
            (row[0], at, serial),
        )
        return
    db.execute("ALTER TABLE meters ADD COLUMN IF NOT EXISTS installed_at timestamptz")
    db.execute("UPDATE meters SET installed_at = %s WHERE serial = %s", (at, serial))
