"""Meter and account lifecycle against a real TimescaleDB (contract §11): a replacement billed
exactly once across the swap by the one register rule, a decommissioned meter's final bill and
nothing after it, the collector no longer polling it (a pymodbus simulator sees no request), a
change of owner on later bills only. Amounts worked out by hand (2025 prices, VAT 8 %)."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from test_billing_run import add_meter, add_readings, local
from test_collector_support import (
    InProcessCollector,
    LoopThread,
    import_csv,
    test_config,
    wait_for,
)

from simulators.modbus import ModbusFleet

pytestmark = pytest.mark.db


@pytest.fixture
def cli(doxa, db_url: str):
    def run(*args: str):
        return doxa(*args, env={"DOXA_DATABASE_URL": db_url})

    return run


def bills_of(db: psycopg.Connection, period: str) -> list[tuple[Any, ...]]:
    return db.execute(
        "SELECT m.serial, b.period_start::text, b.period_end::text, b.days,"
        " b.start_index_kwh::float, b.end_index_kwh::float, b.consumption_kwh, b.amount_vnd,"
        " b.vat_vnd, b.total_vnd, b.estimated FROM bills b JOIN meters m ON m.id = b.meter_id"
        " WHERE b.period = %s ORDER BY m.serial",
        (period,),
    ).fetchall()


def test_a_mid_period_replacement_is_billed_once_across_the_swap(
    cli, db: psycopg.Connection
) -> None:
    old = add_meter(db, "PB01010000101", "SDM-OLD", 5)
    add_readings(db, old, [(local(2025, 7, 5), 900.0), (local(2025, 8, 5), 1000.0)])
    add_readings(db, old, [(local(2025, 8, 12), 1040.0), (local(2025, 8, 20, 6), 1078.0)])
    replaced = cli("meters", "replace", "SDM-OLD", "--new-serial", "SDM-NEW",
                   "--at", "2025-08-20T12:00", "--old-final-kwh", "1080",
                   "--new-start-kwh", "5", "--note", "WO-17 burnt terminal")  # fmt: skip
    assert replaced.code == 0, replaced.err
    new = db.execute("SELECT id FROM meters WHERE serial = 'SDM-NEW'").fetchone()[0]
    add_readings(db, new, [(local(2025, 8, 21), 10.0), (local(2025, 9, 5), 95.0)])
    # 2025-08 (ends 2025-08-05, before the swap): the old meter's, 100 kWh.
    assert cli("bills", "run", "--period", "2025-08").code == 0
    assert [r[0] for r in bills_of(db, "2025-08")] == ["SDM-OLD"]
    # 2025-09 (2025-08-05 → 2025-09-05, N = T = 31): one bill, on the new meter:
    # old 1,080 − 1,000 = 80 kWh up to the swap + new 95 − 5 = 90 kWh after = 170 kWh.
    # 50 × 1,984 + 50 × 2,050 + 70 × 2,380 = 99,200 + 102,500 + 166,600 = 368,300;
    # VAT 8 % = 29,464; total 397,764.
    run = cli("bills", "run", "--period", "2025-09")
    assert run.code == 0, run.err
    assert "1 computed" in run.out and "skipped" in run.out and "SDM-OLD" not in run.out
    assert bills_of(db, "2025-09") == [
        ("SDM-NEW", "2025-08-05", "2025-09-05", 31, 1000.0, 95.0, 170, 368_300, 29_464,
         397_764, False),
    ]  # fmt: skip
    segments = db.execute("SELECT breakdown->'segments' FROM bills WHERE period = '2025-09'")
    assert [
        (s["meter_serial"], s["start_index_kwh"], s["end_index_kwh"], s["reason"])
        for s in segments.fetchone()[0]
    ] == [
        ("SDM-OLD", 1000.0, 1080.0, "period_start"),
        ("SDM-NEW", 5.0, 95.0, "replacement"),
    ]
    # The old meter is retired, no longer polled or listed; the new one takes its place.
    assert db.execute(
        "SELECT serial, active, retired_reason, replaces_meter_id IS NOT NULL FROM meters"
        " ORDER BY id"
    ).fetchall() == [("SDM-OLD", False, "replaced", False), ("SDM-NEW", True, None, True)]
    (entry,) = db.execute(
        "SELECT actor, detail FROM audit_log WHERE action = 'meter.replace'"
    ).fetchall()
    assert entry[0] == "cli" and entry[1]["before"]["serial"] == "SDM-OLD"
    assert entry[1]["note"] == "WO-17 burnt terminal"
    # Refusals: one line, exit 2.
    twice = cli("meters", "replace", "SDM-OLD", "--new-serial", "SDM-3", "--at",
                "2025-08-21T00:00", "--old-final-kwh", "1")  # fmt: skip
    assert twice.code == 2 and "already retired" in twice.err
    low = cli("meters", "replace", "SDM-NEW", "--new-serial", "SDM-4", "--at",
              "2025-09-10T00:00", "--old-final-kwh", "50")  # fmt: skip
    assert low.code == 2 and "below its last reading" in low.err
    bad_time = cli("meters", "replace", "SDM-NEW", "--new-serial", "SDM-4", "--at", "soon",
                   "--old-final-kwh", "100")  # fmt: skip
    assert bad_time.code == 2 and "ISO 8601" in bad_time.err


def test_a_replacement_inside_an_issued_period_is_refused(cli, db: psycopg.Connection) -> None:
    m = add_meter(db, "PB01010000102", "SDM-I", 5)
    add_readings(db, m, [(local(2025, 8, 5), 10.0), (local(2025, 9, 5), 60.0)])
    cli("bills", "run", "--period", "2025-09")
    cli("bills", "issue", "--period", "2025-09")
    inside = cli("meters", "replace", "SDM-I", "--new-serial", "SDM-J", "--at",
                 "2025-08-20T00:00", "--old-final-kwh", "40")  # fmt: skip
    assert inside.code == 2 and "issued bill of 2025-09" in inside.err
    after = cli("meters", "replace", "SDM-I", "--new-serial", "SDM-J", "--at",
                "2025-09-05T00:00", "--old-final-kwh", "60")  # fmt: skip
    assert after.code == 0, after.err


def test_a_decommissioned_meter_gets_a_final_bill_and_none_after(
    cli, db: psycopg.Connection
) -> None:
    m = add_meter(db, "PB01010000103", "SDM-D", 5)
    add_readings(db, m, [(local(2025, 8, 5), 1000.0), (local(2025, 8, 20, 6), 1079.0)])
    done = cli("meters", "decommission", "SDM-D", "--at", "2025-08-20T12:00",
               "--final-kwh", "1080")  # fmt: skip
    assert done.code == 0, done.err
    # The final bill: 2025-08-05 → 2025-08-21 (the day begun counts), 16 days, T = 31:
    # widths round(50 × 16/31) = 26, 26, round(100 × 16/31) = 52…; 80 kWh:
    # 26 × 1,984 + 26 × 2,050 + 28 × 2,380 = 51,584 + 53,300 + 66,640 = 171,524;
    # VAT 13,722; total 185,246.
    assert cli("bills", "run", "--period", "2025-09").code == 0
    assert bills_of(db, "2025-09") == [
        ("SDM-D", "2025-08-05", "2025-08-21", 16, 1000.0, 1080.0, 80, 171_524, 13_722,
         185_246, False),
    ]  # fmt: skip
    # After its last period: no bill and no skip listed.
    after = cli("bills", "run", "--period", "2025-10")
    assert after.out.splitlines() == ["bills 2025-10: 0 computed (0 estimated), 0 skipped"]
    assert db.execute("SELECT count(*) FROM bill_skips").fetchone() == (0,)
    # Kept with its history; the final reading is a manual one.
    assert db.execute(
        "SELECT count(*), max(energy_import_kwh), bool_or(source = 'manual') FROM readings"
    ).fetchone() == (3, 1080.0, True)
    assert db.execute("SELECT active, retired_reason FROM meters").fetchone() == (
        False,
        "decommissioned",
    )
    # Without --final-kwh the last reading is carried to the instant, as an estimated value.
    m2 = add_meter(db, "PB01010000104", "SDM-E", 5)
    add_readings(db, m2, [(local(2025, 8, 5), 10.0), (local(2025, 8, 19), 30.0)])
    assert cli("meters", "decommission", "SDM-E", "--at", "2025-08-20T00:00").code == 0
    assert db.execute(
        "SELECT energy_import_kwh, quality FROM readings WHERE meter_id = %s AND ts = %s",
        (m2, local(2025, 8, 20)),
    ).fetchone() == (30.0, "estimated")
    future = cli("meters", "decommission", "SDM-NONE", "--at", "2025-08-20T00:00")
    assert future.code == 2 and "no meter" in future.err


def test_a_transfer_shows_the_new_name_on_later_bills_only(cli, db: psycopg.Connection) -> None:
    m = add_meter(db, "PB01010000105", "SDM-T", 5)
    add_readings(db, m, [(local(2025, 7, 5), 0.0), (local(2025, 8, 5), 50.0),
                         (local(2025, 9, 5), 100.0), (local(2025, 10, 5), 150.0)])  # fmt: skip
    for period in ("2025-08", "2025-09"):
        cli("bills", "run", "--period", period)
    cli("bills", "issue", "--period", "2025-08")
    moved = cli("customers", "transfer", "PB01010000105", "--name", "Trần Thị Bình",
                "--at", "2025-08-20")  # fmt: skip
    assert moved.code == 0, moved.err
    cli("bills", "run", "--period", "2025-10")
    cli("bills", "issue", "--period", "2025-09")
    cli("bills", "issue", "--period", "2025-10")
    names = db.execute(
        "SELECT period, customer_name, customer_name_on(customer_id, period_end - 1) FROM bills"
        " ORDER BY period"
    ).fetchall()
    assert names == [
        ("2025-08", "Customer PB01010000105", "Customer PB01010000105"),
        ("2025-09", "Trần Thị Bình", "Trần Thị Bình"),
        ("2025-10", "Trần Thị Bình", "Trần Thị Bình"),
    ]
    assert db.execute("SELECT name FROM customers").fetchone() == ("Trần Thị Bình",)
    (entry,) = db.execute(
        "SELECT detail FROM audit_log WHERE action = 'customer.transfer'"
    ).fetchall()
    assert (entry[0]["old"], entry[0]["new"], entry[0]["effective_from"]) == (
        "Customer PB01010000105",
        "Trần Thị Bình",
        "2025-08-20",
    )
    # A later transfer back-dated before an issued bill's end: the issued bill keeps its name.
    cli("customers", "transfer", "PB01010000105", "--name", "Lê Văn C", "--at", "2025-09-01")
    assert db.execute("SELECT customer_name FROM bills WHERE period = '2025-09'").fetchone() == (
        "Trần Thị Bình",
    )
    earlier = cli("customers", "transfer", "PB01010000105", "--name", "X", "--at", "2025-08-01")
    assert earlier.code == 2 and "on or after" in earlier.err
    future = cli("customers", "transfer", "PB01010000105", "--name", "X", "--at", "2999-01-01")
    assert future.code == 2 and "future" in future.err


@pytest.fixture
def loop() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.close()


def test_a_decommissioned_meter_is_no_longer_polled_and_a_new_serial_is_polled_at_once(
    loop: LoopThread, db_url: str, db: psycopg.Connection, tmp_path: Path, cli
) -> None:
    fleet = ModbusFleet(meters=3, gateways=1, seed=5, serial_prefix="LC", customer_prefix="PB0401")
    loop.run(fleet.start())
    try:
        import_csv(db_url, fleet.inventory_csv())
        gone, swapped, kept = (m.serial for m in fleet.meters)
        with InProcessCollector(loop, test_config(db_url, tmp_path)):
            wait_for(lambda: all(fleet.served(s) for s in (gone, swapped, kept)), what="polls")
            now_text = datetime.now(UTC).isoformat()
            out = cli("meters", "decommission", gone, "--at", now_text)
            assert out.code == 0, out.err
            # The new serial answers at the old one's address (same gateway, same unit id).
            rep = cli("meters", "replace", swapped, "--new-serial", "LC-NEW", "--at",
                      now_text, "--old-final-kwh", "1e6")  # fmt: skip
            assert rep.code == 0, rep.err
            # Within seconds (the inventory version, checked every 0.5 s here) polling stops.
            time.sleep(2.0)
            served_then = len(fleet.served(gone))
            wait_for(
                lambda: (
                    db.execute(
                        "SELECT count(*) FROM readings r JOIN meters m ON m.id = r.meter_id"
                        " WHERE m.serial = 'LC-NEW'"
                    ).fetchone()[0]
                    >= 2
                ),
                what="the new serial polled",
            )
            kept_then = len(fleet.served(kept))
            wait_for(lambda: len(fleet.served(kept)) >= kept_then + 2, what="others polled")
            assert len(fleet.served(gone)) == served_then
    finally:
        loop.run(fleet.stop())
    assert db.execute(
        "SELECT serial FROM meters WHERE active ORDER BY serial"
    ).fetchall() == sorted([("LC-NEW",), (kept,)])


def test_a_swap_on_the_reading_day_closes_the_old_meter_and_opens_the_new(
    cli, db: psycopg.Connection
) -> None:
    old = add_meter(db, "PB01010000106", "SDM-B1", 5)
    add_readings(db, old, [(local(2025, 8, 5), 1000.0), (local(2025, 8, 30), 1090.0)])
    swap = cli("meters", "replace", "SDM-B1", "--new-serial", "SDM-B2", "--at",
               "2025-09-05T00:00:00+07:00", "--old-final-kwh", "1100")  # fmt: skip
    assert swap.code == 0, swap.err
    new = db.execute("SELECT id FROM meters WHERE serial = 'SDM-B2'").fetchone()[0]
    add_readings(db, new, [(local(2025, 9, 20), 40.0), (local(2025, 10, 5), 80.0)])
    for period in ("2025-09", "2025-10"):
        assert cli("bills", "run", "--period", period).code == 0
    # 2025-09 ends at the swap: the old meter's, closed on its final value (100 kWh);
    # 2025-10 starts there: the new meter's, from its start value (80 kWh).
    assert [(r[0], r[4], r[5], r[6]) for r in bills_of(db, "2025-09")] == [
        ("SDM-B1", 1000.0, 1100.0, 100)
    ]
    assert [(r[0], r[4], r[5], r[6]) for r in bills_of(db, "2025-10")] == [
        ("SDM-B2", 0.0, 80.0, 80)
    ]
    # The closing-index export agrees with the bills, meter by meter.
    for period, expected in (
        ("2025-09", ("SDM-B1", "1100.000")),
        ("2025-10", ("SDM-B2", "80.000")),
    ):
        out = cli("export", "closing-indices", "--period", period).out
        rows = list(csv.DictReader(io.StringIO(out)))
        assert [(r["meter_serial"], r["index_kwh"]) for r in rows] == [expected]


def test_a_decommissioned_meter_leaves_the_stale_list_and_completeness(
    cli, db: psycopg.Connection
) -> None:
    from datetime import date

    from lookup_web.ops import Thresholds, completeness, stale_meters

    kept = add_meter(db, "PB01010000107", "OPS-KEPT", 5)
    gone = add_meter(db, "PB01010000108", "OPS-GONE", 5)
    db.execute("UPDATE customers SET province = 'Bình Dương'")
    db.execute("UPDATE meters SET created_at = %s", (local(2025, 8, 1),))
    for meter in (kept, gone):
        add_readings(db, meter, [(local(2025, 8, 10, h), 10.0 + h) for h in range(24)])
    thresholds = Thresholds(120, 600, 3600, 3600)
    now = local(2025, 8, 12)
    before = stale_meters(db, thresholds, 10, now)
    assert before[0] == 2
    (full,) = completeness(db, date(2025, 8, 10), "Asia/Ho_Chi_Minh", thresholds)
    assert (full.meters, full.complete) == (2, 2)
    assert cli("meters", "decommission", "OPS-GONE", "--at", "2025-08-11T00:00").code == 0
    total, stale = stale_meters(db, thresholds, 10, now)
    assert (total, [s.serial for s in stale]) == (1, ["OPS-KEPT"])
    (row,) = completeness(db, date(2025, 8, 10), "Asia/Ho_Chi_Minh", thresholds)
    assert (row.meters, row.complete) == (1, 1)


def test_re_importing_the_inventory_keeps_a_retired_meter_retired(
    cli, db: psycopg.Connection, tmp_path: Path
) -> None:
    header = (
        "customer_code,customer_name,address,province,tariff_group,reading_day,meter_serial,"
        "protocol,model,host,port,unit_id,multiplier"
    )
    inventory = tmp_path / "inv.csv"
    inventory.write_text(
        f"{header}\nPB01010000109,A,a,Bình Dương,residential,5,RE-1,modbus,sdm120,10.0.0.9,502,3,\n",
        encoding="utf-8",
    )
    assert cli("meters", "import", str(inventory)).code == 0
    assert cli("meters", "replace", "RE-1", "--new-serial", "RE-2", "--at", "2025-08-20T00:00",
               "--old-final-kwh", "0").code == 0  # fmt: skip
    again = cli("meters", "import", str(inventory))
    # The old serial's bus address now belongs to the new meter: the stale file is refused.
    assert again.code == 2 and "belongs to meter RE-2" in again.err
    assert db.execute("SELECT serial, active FROM meters ORDER BY id").fetchall() == [
        ("RE-1", False),
        ("RE-2", True),
    ]
    inventory.write_text(
        f"{header}\nPB01010000109,A,a,Bình Dương,residential,5,RE-1,mqtt,,,,,\n", encoding="utf-8"
    )
    assert cli("meters", "import", str(inventory)).code == 0
    assert db.execute("SELECT active FROM meters WHERE serial = 'RE-1'").fetchone() == (False,)


def test_a_running_writer_accepts_the_new_serial_of_an_mqtt_replacement_at_once(
    cli, db_url: str, db: psycopg.Connection
) -> None:
    from datetime import timedelta

    from test_collector_support import import_mqtt_meters

    from collector.units import Unit
    from collector.writer import Writer
    from protocols.reading import Reading

    def unit(serial: str, minutes: int, kwh: float) -> Unit:
        r = Reading(serial, datetime(2026, 11, 26, 3, tzinfo=UTC) + timedelta(minutes=minutes),
                    kwh, None, None, None, None, None)  # fmt: skip
        return Unit("mqtt", (r,), f"doxa/meters/{serial}/reading", serial, b"{}")

    import_mqtt_meters(db_url, ["MQ-OLD"])
    writer = Writer(db_url, "c1")
    try:
        first = writer.write([unit("MQ-OLD", 0, 10.0), unit("MQ-NEW", 0, 0.5)])
        assert first.inserted == 1 and [r[1] for r in first.rejected] == [
            "unknown meter serial 'MQ-NEW'"
        ]
        swap = cli("meters", "replace", "MQ-OLD", "--new-serial", "MQ-NEW", "--at",
                   "2026-11-26T03:05:00+00:00", "--old-final-kwh", "10.2")  # fmt: skip
        assert swap.code == 0, swap.err
        second = writer.write([unit("MQ-NEW", 10, 0.6)])
        assert (second.inserted, second.rejected) == (1, [])
    finally:
        writer.close()
