"""``doxa bills run`` against a real TimescaleDB: readings in the database → rows in ``bills``
with every column of the contract's bills CSV, re-runs, skips, replacements, CT meters and a new
tariff table added as data. Amounts are worked out by hand in the comments."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

pytestmark = pytest.mark.db

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
H = timedelta(hours=1)
BILL_COLUMNS = (
    "c.code, m.serial, b.period_start::text, b.period_end::text, b.days, b.start_index_kwh,"
    " b.end_index_kwh, b.consumption_kwh, b.amount_vnd, b.vat_vnd, b.total_vnd, b.estimated"
)


def local(y: int, mo: int, d: int, h: float = 0) -> datetime:
    return datetime(y, mo, d, tzinfo=HCM) + timedelta(hours=h)


def add_meter(
    db: psycopg.Connection,
    code: str,
    serial: str,
    reading_day: int,
    multiplier: int = 1,
) -> int:
    row = db.execute(
        "INSERT INTO customers (code, name, reading_day) VALUES (%s, %s, %s)"
        " ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name RETURNING id",
        (code, f"Customer {code}", reading_day),
    ).fetchone()
    assert row is not None
    meter = db.execute(
        "INSERT INTO meters (serial, customer_id, protocol, multiplier)"
        " VALUES (%s, %s, 'mqtt', %s) RETURNING id",
        (serial, row[0], multiplier),
    ).fetchone()
    assert meter is not None
    return int(meter[0])


def add_readings(
    db: psycopg.Connection, meter_id: int, points: Iterable[tuple[datetime, float]]
) -> None:
    with db.cursor() as cur:
        cur.executemany(
            "INSERT INTO readings (meter_id, ts, energy_import_kwh, source)"
            " VALUES (%s, %s, %s, 'backfill')",
            [(meter_id, ts, kwh) for ts, kwh in points],
        )


def daily(first: datetime, days: int, kwh: float, per_day: float) -> list[tuple[datetime, float]]:
    """A reading every day at noon local time, climbing ``per_day`` kWh a day."""
    noon = first.replace(hour=12)
    return [(noon + timedelta(days=i), kwh + per_day * i) for i in range(days)]


def bills(db: psycopg.Connection, period: str) -> list[tuple[Any, ...]]:
    return db.execute(
        f"SELECT {BILL_COLUMNS} FROM bills b JOIN meters m ON m.id = b.meter_id"
        " JOIN customers c ON c.id = b.customer_id WHERE b.period = %s ORDER BY c.code",
        (period,),
    ).fetchall()


def breakdown(db: psycopg.Connection, serial: str, period: str) -> dict[str, Any]:
    row = db.execute(
        "SELECT b.breakdown FROM bills b JOIN meters m ON m.id = b.meter_id"
        " WHERE m.serial = %s AND b.period = %s",
        (serial, period),
    ).fetchone()
    assert row is not None
    return row[0]


@pytest.fixture
def bills_run(doxa, db_url: str):
    def run(period: str):
        return doxa("bills", "run", "--period", period, env={"DOXA_DATABASE_URL": db_url})

    return run


def test_readings_to_bills_with_every_csv_column(bills_run, db: psycopg.Connection) -> None:
    # A: reading day 5, period 2025-05 = 2025-04-05 → 2025-05-05 (N = T = 30, April), 2024
    #    prices, VAT 10 %. Start: 1,000.0 at 23:00 and 1,001.0 at 01:00 → 1,000.500;
    #    end: 1,150.0 at 23:30 and 1,151.0 at 00:30 → 1,150.500; 150 kWh.
    #    50 × 1,893 = 94,650; 50 × 1,956 = 97,800; 50 × 2,271 = 113,550 → 306,000;
    #    VAT 30,600; total 336,600.
    a = add_meter(db, "PB01010000001", "SDM-A", 5)
    add_readings(db, a, [(local(2025, 4, 5, -1), 1000.0), (local(2025, 4, 5, 1), 1001.0)])
    add_readings(db, a, daily(local(2025, 4, 6), 28, 1005.0, 5.0))
    add_readings(db, a, [(local(2025, 5, 5, -0.5), 1150.0), (local(2025, 5, 5, 0.5), 1151.0)])
    # B: reading day 20, 2025-04-20 → 2025-05-20 crosses the 2025-05-10 price change;
    #    readings at the local midnights: 2,000.0 → 2,300.0 = 300 kWh. Worked out in
    #    test_billing_tariff.test_period_crossing_the_2025_05_10_price_change:
    #    716,846 + VAT 71,684 = 788,530.
    b = add_meter(db, "PB01010000002", "SDM-B", 20)
    add_readings(db, b, [(local(2025, 4, 20), 2000.0), (local(2025, 5, 20), 2300.0)])

    result = bills_run("2025-05")
    assert result.code == 0, result.err
    assert result.out.splitlines()[0] == "bills 2025-05: 2 computed (0 estimated), 0 skipped"
    expected = [
        (
            "PB01010000001",
            "SDM-A",
            "2025-04-05",
            "2025-05-05",
            30,
            Decimal("1000.500"),
            Decimal("1150.500"),
            150,
            306_000,
            30_600,
            336_600,
            False,
        ),
        (
            "PB01010000002",
            "SDM-B",
            "2025-04-20",
            "2025-05-20",
            30,
            Decimal("2000.000"),
            Decimal("2300.000"),
            300,
            716_846,
            71_684,
            788_530,
            False,
        ),
    ]
    assert bills(db, "2025-05") == expected

    split = breakdown(db, "SDM-B", "2025-05")
    assert set(split) >= {"parts", "segments", "estimated"}
    first, second = split["parts"]
    assert first == {
        "start": "2025-04-20",
        "end": "2025-05-10",
        "days": 20,
        "consumption_kwh": 200,
        "tariff_effective_from": "2024-10-11",
        "vat_rate": "0.10",
        "lines": [
            {"tier": 1, "width_kwh": 33, "kwh": 33, "price_vnd": 1893, "amount_vnd": 62_469},
            {"tier": 2, "width_kwh": 33, "kwh": 33, "price_vnd": 1956, "amount_vnd": 64_548},
            {"tier": 3, "width_kwh": 67, "kwh": 67, "price_vnd": 2271, "amount_vnd": 152_157},
            {"tier": 4, "width_kwh": 67, "kwh": 67, "price_vnd": 2860, "amount_vnd": 191_620},
            {"tier": 5, "width_kwh": 67, "kwh": 0, "price_vnd": 3197, "amount_vnd": 0},
            {"tier": 6, "width_kwh": None, "kwh": 0, "price_vnd": 3302, "amount_vnd": 0},
        ],
        "amount_vnd": 470_794,
        "vat_vnd": 47_079,
        "total_vnd": 517_873,
    }
    assert (second["start"], second["end"], second["tariff_effective_from"]) == (
        "2025-05-10",
        "2025-05-20",
        "2025-05-10",
    )
    assert split["segments"] == [
        {
            "meter_serial": "SDM-B",
            "start_index_kwh": 2000.0,
            "end_index_kwh": 2300.0,
            "consumption_kwh": 300.0,
            "reason": "period_start",
            "start": "2025-04-20T00:00:00+07:00",
            "end": "2025-05-20T00:00:00+07:00",
        }
    ]
    assert split["estimated"] is False

    # Running again gives the same bills and no duplicates.
    ids = db.execute("SELECT id FROM bills ORDER BY id").fetchall()
    again = bills_run("2025-05")
    assert again.code == 0, again.err
    assert bills(db, "2025-05") == expected
    assert db.execute("SELECT id FROM bills ORDER BY id").fetchall() == ids


def test_the_worked_example_of_docs_billing(bills_run, db: psycopg.Connection) -> None:
    # docs/billing.md, "A worked example": start 1,234.650, end 1,462.250, 228 kWh;
    # 99,200 + 102,500 + 238,000 + 28 × 2,998 = 83,944 → 523,644; VAT 8 % 41,891.52 → 41,892;
    # total 565,536.
    m = add_meter(db, "PB01010012345", "SDM-DOC", 5)
    add_readings(
        db,
        m,
        [
            (local(2025, 8, 5, -0.5), 1234.40),
            (local(2025, 8, 5, 0.5), 1234.90),
            (local(2025, 9, 5, -0.75), 1462.10),
            (local(2025, 9, 5, 0.25), 1462.30),
        ],
    )
    assert bills_run("2025-09").code == 0
    assert bills(db, "2025-09") == [
        (
            "PB01010012345",
            "SDM-DOC",
            "2025-08-05",
            "2025-09-05",
            31,
            Decimal("1234.650"),
            Decimal("1462.250"),
            228,
            523_644,
            41_892,
            565_536,
            False,
        )
    ]
    lines = breakdown(db, "SDM-DOC", "2025-09")["parts"][0]["lines"]
    assert [(ln["kwh"], ln["amount_vnd"]) for ln in lines] == [
        (50, 99_200),
        (50, 102_500),
        (100, 238_000),
        (28, 83_944),
        (0, 0),
        (0, 0),
    ]


def test_rerun_replaces_drafts_and_keeps_issued_bills(bills_run, db: psycopg.Connection) -> None:
    m = add_meter(db, "PB01010000003", "SDM-C", 5)
    # Period 2025-09 (2025-08-05 → 2025-09-05, N = T = 31, 2025 prices, VAT 8 %).
    # End readings 23:00 (1,049.0) and 02:00 (1,052.0) are 3 h apart: estimated, 1,050.000.
    add_readings(db, m, [(local(2025, 8, 5), 1000.0), (local(2025, 9, 5, -1), 1049.0)])
    add_readings(db, m, [(local(2025, 9, 5, 2), 1052.0)])
    first = bills_run("2025-09")
    assert first.code == 0, first.err
    assert "1 computed (1 estimated)" in first.out
    # 50 kWh: 50 × 1,984 = 99,200; VAT 8 % = 7,936; total 107,136.
    assert bills(db, "2025-09")[0][5:] == (
        Decimal("1000.000"),
        Decimal("1050.000"),
        50,
        99_200,
        7_936,
        107_136,
        True,
    )
    assert breakdown(db, "SDM-C", "2025-09")["estimated"] is True

    # A reading at midnight arrives late: the draft is recomputed (51 kWh), not duplicated.
    # 99,200 + 1 × 2,050 = 101,250; VAT 8,100; total 109,350.
    add_readings(db, m, [(local(2025, 9, 5), 1051.0)])
    assert bills_run("2025-09").code == 0
    assert bills(db, "2025-09")[0][5:] == (
        Decimal("1000.000"),
        Decimal("1051.000"),
        51,
        101_250,
        8_100,
        109_350,
        False,
    )
    assert db.execute("SELECT count(*) FROM bills").fetchone() == (1,)

    # Once issued, a bill is never rewritten.
    db.execute("UPDATE bills SET status = 'issued'")
    db.execute("UPDATE readings SET energy_import_kwh = 2000 WHERE ts = %s", (local(2025, 9, 5),))
    kept = bills_run("2025-09")
    assert kept.code == 0, kept.err
    assert "0 computed (0 estimated), 1 kept (already issued), 0 skipped" in kept.out
    assert bills(db, "2025-09")[0][7] == 51


def test_missing_data_lists_the_customers_skipped(bills_run, db: psycopg.Connection) -> None:
    ok = add_meter(db, "PB01010000004", "SDM-OK", 5)
    add_readings(db, ok, [(local(2025, 8, 5), 10.0), (local(2025, 9, 5), 20.0)])
    late = add_meter(db, "PB01010000005", "SDM-LATE", 5)
    add_readings(db, late, [(local(2025, 8, 5), 10.0), (local(2025, 9, 4), 19.0)])
    add_meter(db, "PB01010000006", "SDM-NONE", 5)

    result = bills_run("2025-09")
    assert result.code == 0, result.err
    assert result.out.splitlines() == [
        "bills 2025-09: 1 computed (0 estimated), 2 skipped",
        "skipped PB01010000005 meter SDM-LATE: no reading at or after the period end,"
        " 2025-09-05 00:00 +0700, yet (searched 62 days)",
        "skipped PB01010000006 meter SDM-NONE: no reading at or before the period start,"
        " 2025-08-05 00:00 +0700 (searched 62 days)",
    ]
    assert [row[1] for row in bills(db, "2025-09")] == ["SDM-OK"]
    skips = db.execute(
        "SELECT m.serial, s.reason FROM bill_skips s JOIN meters m ON m.id = s.meter_id"
        " WHERE s.period = '2025-09' ORDER BY m.serial"
    ).fetchall()
    assert [serial for serial, _ in skips] == ["SDM-LATE", "SDM-NONE"]

    # The missing reading arrives: the next run bills the meter and clears its skip.
    add_readings(db, late, [(local(2025, 9, 5, 1), 20.0)])
    assert bills_run("2025-09").code == 0
    assert [row[1] for row in bills(db, "2025-09")] == ["SDM-OK", "SDM-LATE"]
    assert db.execute(
        "SELECT m.serial FROM bill_skips s JOIN meters m ON m.id = s.meter_id"
    ).fetchall() == [("SDM-NONE",)]


def test_ct_meter_with_multiplier_40(bills_run, db: psycopg.Connection) -> None:
    # Register 100.000 → 107.500 = 7.5 kWh × 40 = 300 kWh over 2025-08-05 → 2025-09-05.
    # 50 × 1,984 = 99,200; 50 × 2,050 = 102,500; 100 × 2,380 = 238,000; 100 × 2,998 = 299,800
    # → 739,500; VAT 8 % = 59,160; total 798,660.
    m = add_meter(db, "PB01010000007", "SDM630-CT", 5, multiplier=40)
    add_readings(db, m, [(local(2025, 8, 5), 100.0), *daily(local(2025, 8, 6), 30, 100.2, 0.24)])
    add_readings(db, m, [(local(2025, 9, 5), 107.5)])
    assert bills_run("2025-09").code == 0
    assert bills(db, "2025-09")[0][5:] == (
        Decimal("100.000"),
        Decimal("107.500"),
        300,
        739_500,
        59_160,
        798_660,
        False,
    )
    assert breakdown(db, "SDM630-CT", "2025-09")["multiplier"] == "40"


def test_recorded_meter_replacement_adds_both_meters(bills_run, db: psycopg.Connection) -> None:
    # Old register 5,000.0 at the start; replaced 2025-08-20 10:00 with a final index of 5,080.0;
    # the new register starts at 0.0 and reads 20.0 at the end: 80 + 20 = 100 kWh.
    # 50 × 1,984 = 99,200; 50 × 2,050 = 102,500 → 201,700; VAT 8 % = 16,136; total 217,836.
    m = add_meter(db, "PB01010000008", "SDM-R", 5)
    swap = local(2025, 8, 20, 10)
    add_readings(db, m, [(local(2025, 8, 5), 5000.0), (swap - H, 5079.0)])
    add_readings(db, m, [(swap + H, 0.5), (local(2025, 9, 5), 20.0)])
    db.execute(
        "INSERT INTO meter_resets (meter_id, ts, old_final_kwh, new_start_kwh, note)"
        " VALUES (%s, %s, 5080.0, 0.0, 'replaced')",
        (m, swap),
    )
    assert bills_run("2025-09").code == 0
    assert bills(db, "2025-09")[0][5:] == (
        Decimal("5000.000"),
        Decimal("20.000"),
        100,
        201_700,
        16_136,
        217_836,
        False,
    )
    segments = breakdown(db, "SDM-R", "2025-09")["segments"]
    assert [(s["reason"], s["start_index_kwh"], s["end_index_kwh"]) for s in segments] == [
        ("period_start", 5000.0, 5080.0),
        ("replacement", 0.0, 20.0),
    ]


def test_replacement_without_final_index_uses_the_last_reading(
    bills_run, db: psycopg.Connection
) -> None:
    # The final index of the old register was not written down: its last reading (5,079.0)
    # stands for it. 79 + 20 = 99 kWh: 50 × 1,984 = 99,200; 49 × 2,050 = 100,450 → 199,650;
    # VAT 8 % = 15,972; total 215,622.
    m = add_meter(db, "PB01010000012", "SDM-R2", 5)
    swap = local(2025, 8, 20, 10)
    add_readings(db, m, [(local(2025, 8, 5), 5000.0), (swap - H, 5079.0)])
    add_readings(db, m, [(swap + H, 0.5), (local(2025, 9, 5), 20.0)])
    db.execute("INSERT INTO meter_resets (meter_id, ts) VALUES (%s, %s)", (m, swap))
    assert bills_run("2025-09").code == 0
    assert bills(db, "2025-09")[0][5:] == (
        Decimal("5000.000"),
        Decimal("20.000"),
        99,
        199_650,
        15_972,
        215_622,
        False,
    )


def test_no_tariff_in_force_is_a_skip(bills_run, db: psycopg.Connection) -> None:
    m = add_meter(db, "PB01010000013", "SDM-OLD", 5)
    add_readings(db, m, [(local(2024, 8, 5), 0.0), (local(2024, 9, 5), 100.0)])
    result = bills_run("2024-09")
    assert result.code == 0, result.err
    assert result.out.splitlines()[1] == (
        "skipped PB01010000013 meter SDM-OLD: residential tariff:"
        " no tariff table in force on 2024-08-05"
    )


def test_detected_drop_adds_both_registers(bills_run, db: psycopg.Connection) -> None:
    # No replacement recorded, but the register falls from 3,040.0 to 0.5 within the period:
    # 40.0 on the old register + (60.5 − 0.5) on the new one = 100 kWh; the same amounts as
    # the replacement above.
    m = add_meter(db, "PB01010000009", "SDM-D", 5)
    add_readings(
        db,
        m,
        [
            (local(2025, 8, 5), 3000.0),
            (local(2025, 8, 15, 12), 3040.0),
            (local(2025, 8, 15, 12.5), 0.5),
            (local(2025, 9, 5), 60.5),
        ],
    )
    assert bills_run("2025-09").code == 0
    assert bills(db, "2025-09")[0][5:] == (
        Decimal("3000.000"),
        Decimal("60.500"),
        100,
        201_700,
        16_136,
        217_836,
        False,
    )
    reasons = [s["reason"] for s in breakdown(db, "SDM-D", "2025-09")["segments"]]
    assert reasons == ["period_start", "detected_drop"]


def test_a_register_glitch_is_not_billed(bills_run, db: psycopg.Connection) -> None:
    m = add_meter(db, "PB01010000010", "SDM-G", 5)
    add_readings(
        db,
        m,
        [
            (local(2025, 8, 5), 10.0),
            (local(2025, 8, 20), 50.0),
            (local(2025, 8, 20, 0.5), 3.0e9),
            (local(2025, 9, 5), 9.0e9),
        ],
    )
    result = bills_run("2025-09")
    assert result.code == 0, result.err
    assert result.out.splitlines()[1] == (
        "skipped PB01010000010 meter SDM-G: implausible register jump from 50 to 3e+09 kWh"
        " between 2025-08-20 00:00 +0700 and 2025-08-20 00:30 +0700"
        " (a glitch, or a replacement to record in the inventory)"
    )
    assert bills(db, "2025-09") == []


def test_a_new_five_tier_table_is_one_insert(bills_run, db: psycopg.Connection) -> None:
    # Decision 14/2025/QĐ-TTg's five tiers with made-up prices, in force from 2027-01-01.
    db.execute(
        "WITH t AS (INSERT INTO tariff_tables (tariff_group, effective_from, source)"
        "           VALUES ('residential', '2027-01-01', 'test: five tiers, made-up prices')"
        "           RETURNING id)"
        " INSERT INTO tariff_tiers (tariff_id, tier, width_kwh, price_vnd)"
        " SELECT t.id, v.tier, v.width, v.price FROM t, (VALUES (1, 100, 2000), (2, 100, 2200),"
        "   (3, 200, 2700), (4, 300, 3200), (5, NULL, 3500)) AS v (tier, width, price)"
    )
    # Period 2027-02, reading day 10: 2027-01-10 → 2027-02-10, N = T = 31; VAT 10 % again.
    # 750 kWh: 200,000 + 220,000 + 540,000 + 960,000 + 50 × 3,500 = 175,000 → 2,095,000;
    # VAT 209,500; total 2,304,500.
    m = add_meter(db, "PB01010000011", "SDM-5T", 10)
    add_readings(db, m, [(local(2027, 1, 10), 0.0), (local(2027, 2, 10), 750.0)])
    assert bills_run("2027-02").code == 0
    assert bills(db, "2027-02")[0][7:] == (750, 2_095_000, 209_500, 2_304_500, False)
    (part,) = breakdown(db, "SDM-5T", "2027-02")["parts"]
    assert part["tariff_effective_from"] == "2027-01-01"
    assert [line["kwh"] for line in part["lines"]] == [100, 100, 200, 300, 50]


def test_seeded_tariffs_and_vat_carry_their_sources(db: psycopg.Connection) -> None:
    tables = db.execute(
        "SELECT t.effective_from::text, t.source, array_agg(s.price_vnd ORDER BY s.tier),"
        " array_agg(s.width_kwh ORDER BY s.tier) FROM tariff_tables t"
        " JOIN tariff_tiers s ON s.tariff_id = t.id WHERE t.tariff_group = 'residential'"
        " GROUP BY t.id ORDER BY t.effective_from"
    ).fetchall()
    assert [(t[0], t[2], t[3]) for t in tables] == [
        ("2024-10-11", [1893, 1956, 2271, 2860, 3197, 3302], [50, 50, 100, 100, 100, None]),
        ("2025-05-10", [1984, 2050, 2380, 2998, 3350, 3460], [50, 50, 100, 100, 100, None]),
    ]
    assert "2699/QĐ-BCT" in tables[0][1] and "1279/QĐ-BCT" in tables[1][1]
    vat = db.execute(
        "SELECT effective_from::text, rate, source FROM vat_rates ORDER BY 1"
    ).fetchall()
    assert [(v[0], v[1]) for v in vat] == [
        ("2024-10-11", Decimal("0.1000")),
        ("2025-07-01", Decimal("0.0800")),
        ("2027-01-01", Decimal("0.1000")),
    ]
    assert "204/2025/QH15" in vat[1][2]


@pytest.mark.parametrize("period", ["2025-13", "2025-6", "June", "2025-06-01"])
def test_a_bad_period_exits_2_with_one_line(doxa, period: str) -> None:
    result = doxa("bills", "run", "--period", period)
    assert result.code == 2
    assert result.err.startswith("doxa: error: period must be YYYY-MM")
    assert len(result.err.strip().splitlines()) == 1


def test_help_says_skips_still_exit_0(doxa) -> None:
    result = doxa("bills", "run", "--help")
    assert result.code == 0
    assert "still exits 0" in " ".join(result.out.split())


def test_a_malformed_tariff_table_fails_with_one_line(bills_run, db: psycopg.Connection) -> None:
    db.execute(
        "WITH t AS (INSERT INTO tariff_tables (tariff_group, effective_from, source)"
        "           VALUES ('residential', '2030-01-01', 'test: bounded last tier') RETURNING id)"
        " INSERT INTO tariff_tiers (tariff_id, tier, width_kwh, price_vnd)"
        " SELECT t.id, 1, 50, 1000 FROM t"
    )
    result = bills_run("2025-09")
    assert result.code == 1
    assert result.err.strip() == (
        "doxa: failed: tariff data: tariff table from 2030-01-01:"
        " the last tier must be unbounded (no width)"
    )
    assert db.execute("SELECT count(*) FROM bills").fetchone() == (0,)
