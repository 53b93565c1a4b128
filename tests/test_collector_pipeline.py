"""The flusher never drops a batch it took: a failure puts it back at the head of the inbox, in
order, counted and logged once; the same failure repeated ``fatal_after`` times stops the
flusher with a one-line cause, the Modbus readings it held going to the spool. Real database,
real spool; the failures come from the pipeline's own test hook."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest
from test_collector_support import HEADER, import_csv, inventory_line, stored, wait_for

from collector.metrics import Stats
from collector.pipeline import Pipeline
from collector.spool import Spool
from collector.units import Unit
from collector.writer import Writer
from protocols.reading import Reading

pytestmark = pytest.mark.db

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def pipeline(db_url: str, tmp_path: Path, **kw: object) -> Pipeline:
    spool = Spool(tmp_path / "spool", 10**8)
    spool.open()
    return Pipeline(
        writer=Writer(db_url, "p-test"),
        spool=spool,
        stats=Stats(),
        timezone=ZoneInfo("Asia/Ho_Chi_Minh"),
        batch_size=10,
        max_batch=10,
        batch_interval=0.02,
        db_retry_interval=0.05,
        max_pending_readings=10_000,
        **kw,  # type: ignore[arg-type]
    )


def readings(n: int) -> list[Reading]:
    return [Reading(f"PL{i % 3}", T0 + timedelta(minutes=i), 100.0 + i) for i in range(n)]


def modbus_meters(db_url: str) -> None:
    lines = [
        inventory_line(f"PL{i}", i + 1, "modbus", "sdm120", "10.9.9.9", 502, i + 1)
        for i in range(3)
    ]
    import_csv(db_url, "\n".join([HEADER, *lines]) + "\n")


def test_a_failing_flusher_puts_the_batch_back_in_order_and_loses_nothing(
    db_url: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    modbus_meters(db_url)
    p = pipeline(db_url, tmp_path)
    taken: list[list[float]] = []

    def twice(batch: list[object]) -> None:
        taken.append([r.energy_import_kwh for r in batch if isinstance(r, Reading)])
        if len(taken) <= 2:
            raise RuntimeError("injected flusher fault")

    p.fault_hook = twice
    p.start()
    try:
        for r in readings(30):
            assert p.submit_readings([r])
        wait_for(lambda: len(stored(db)) == 30, what="all 30 readings stored")
    finally:
        p.stop()
    assert taken[0] == taken[1] == taken[2]  # the same batch, put back whole, in order
    assert p.stats.snapshot()["batches_requeued"] == 2
    assert p.stats.batches_requeued._value.get() == 2
    assert p.fatal is None
    rows = db.execute(
        "SELECT r.energy_import_kwh FROM readings r ORDER BY r.received_at, r.ts"
    ).fetchall()
    assert sorted(e for (e,) in rows) == [100.0 + i for i in range(30)]


def test_the_same_failure_repeated_is_fatal_and_the_readings_held_go_to_the_spool(
    db_url: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    modbus_meters(db_url)
    causes: list[str] = []
    p = pipeline(db_url, tmp_path, fatal_after=3, on_fatal=causes.append)

    def always(batch: list[object]) -> None:
        raise RuntimeError("broken for good\nsecond line")

    p.fault_hook = always
    for r in readings(25):
        assert p.submit_readings([r])
    p.start()
    wait_for(lambda: causes, what="the flusher giving up")
    p.stop()
    assert causes == [p.fatal]
    assert p.fatal == "the flusher failed 3 times in a row (RuntimeError: broken for good)"
    assert p.pending == 0 and len(stored(db)) == 0
    spooled: list[Unit] = []
    p.spool.replay(spooled.extend)
    assert [u.readings[0].energy_import_kwh for u in spooled] == [100.0 + i for i in range(25)]
    p.spool.close()
