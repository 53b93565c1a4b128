"""Bill lifecycle against a real TimescaleDB (contract §11): issue, holds, the database refusing to
change an issued bill, corrections as linked versions, shared meters, a 6 → 5 tier change, the
bills CSV's new columns. Amounts are worked out by hand in the comments (2025 prices 1,984,
2,050, 2,380, 2,998, 3,350, 3,460 VND/kWh; VAT 8 % from 2025-07-01)."""

from __future__ import annotations

import csv
import io
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from test_billing_run import add_meter, add_readings, local

pytestmark = pytest.mark.db

HCM = ZoneInfo("Asia/Ho_Chi_Minh")


@pytest.fixture
def cli(doxa, db_url: str):
    def run(*args: str):
        return doxa(*args, env={"DOXA_DATABASE_URL": db_url})

    return run


def two_readings(db: psycopg.Connection, meter: int, start: float, end: float, period: str) -> None:
    """Readings at both local midnights of ``period`` for reading day 5."""
    year, month = (int(x) for x in period.split("-"))
    first = local(year, month - 1, 5) if month > 1 else local(year - 1, 12, 5)
    add_readings(db, meter, [(first, start), (local(year, month, 5), end)])


def bill_rows(db: psycopg.Connection, period: str) -> list[tuple[Any, ...]]:
    return db.execute(
        "SELECT m.serial, b.version, b.status, b.consumption_kwh, b.total_vnd, b.held_reason"
        " FROM bills b JOIN meters m ON m.id = b.meter_id WHERE b.period = %s"
        " ORDER BY m.serial, b.version",
        (period,),
    ).fetchall()


def test_issue_holds_a_31_percent_rise_but_not_29_and_issuing_twice_issues_nothing(
    cli, db: psycopg.Connection
) -> None:
    up31 = add_meter(db, "PB01010000031", "UP-31", 5)
    up29 = add_meter(db, "PB01010000029", "UP-29", 5)
    # 2025-08: 100 kWh each, issued.
    add_readings(db, up31, [(local(2025, 7, 5), 1000.0), (local(2025, 8, 5), 1100.0)])
    add_readings(db, up29, [(local(2025, 7, 5), 1000.0), (local(2025, 8, 5), 1100.0)])
    assert cli("bills", "run", "--period", "2025-08").code == 0
    first = cli("bills", "issue", "--period", "2025-08")
    assert first.code == 0, first.err
    assert first.out.splitlines() == ["bills 2025-08: 2 issued, 0 held"]
    # 2025-09: 131 kWh (31 % more: held) and 129 kWh (29 % more: issued).
    add_readings(db, up31, [(local(2025, 9, 5), 1231.0)])
    add_readings(db, up29, [(local(2025, 9, 5), 1229.0)])
    assert cli("bills", "run", "--period", "2025-09").code == 0
    second = cli("bills", "issue", "--period", "2025-09")
    assert second.code == 0, second.err
    assert second.out.splitlines() == [
        "bills 2025-09: 1 issued, 1 held",
        "held PB01010000031 meter UP-31: over_30_percent",
    ]
    assert [(r[0], r[2], r[3], r[5]) for r in bill_rows(db, "2025-09")] == [
        ("UP-29", "issued", 129, None),
        ("UP-31", "draft", 131, "over_30_percent"),
    ]
    issued_at = db.execute(
        "SELECT issued_at FROM bills WHERE status = 'issued' AND period = '2025-09'"
    ).fetchone()
    # Issuing again issues nothing new, and the issued bill is untouched.
    again = cli("bills", "issue", "--period", "2025-09")
    assert again.out.splitlines()[0] == "bills 2025-09: 0 issued, 1 held"
    assert (
        db.execute(
            "SELECT issued_at FROM bills WHERE status = 'issued' AND period = '2025-09'"
        ).fetchone()
        == issued_at
    )
    assert db.execute("SELECT count(*) FROM bills").fetchone() == (4,)
    # Both issues are audited, with their counts.
    audits = db.execute(
        "SELECT detail->>'period', row_count, (detail->>'held')::int FROM audit_log"
        " WHERE action = 'bills.issue' ORDER BY id"
    ).fetchall()
    assert audits == [("2025-08", 2, 0), ("2025-09", 1, 1), ("2025-09", 0, 1)]


def test_estimated_boundaries_and_open_validation_exceptions_hold_a_draft(
    cli, db: psycopg.Connection
) -> None:
    est = add_meter(db, "PB01010000041", "EST", 5)
    # End readings 3 h apart around 2025-09-05 00:00: an estimated index.
    add_readings(db, est, [(local(2025, 8, 5), 10.0), (local(2025, 9, 5, -1), 50.0),
                           (local(2025, 9, 5, 2), 53.0)])  # fmt: skip
    exc = add_meter(db, "PB01010000042", "EXC", 5)
    two_readings(db, exc, 10.0, 60.0, "2025-09")
    closed = add_meter(db, "PB01010000043", "CLOSED", 5)
    two_readings(db, closed, 10.0, 60.0, "2025-09")
    later = add_meter(db, "PB01010000044", "LATER", 5)
    two_readings(db, later, 10.0, 60.0, "2025-09")
    db.execute(
        "INSERT INTO reading_exceptions (meter_id, rule, ts_from, ts_to, reason) VALUES"
        " (%s, 'spike', %s, %s, 'spike of 90 kWh in 30 min'),"
        " (%s, 'gap', %s, %s, 'no reading for 3 days'),"
        " (%s, 'gap', %s, %s, 'after the period')",
        (exc, local(2025, 8, 20), local(2025, 8, 20, 1),
         closed, local(2025, 8, 10), local(2025, 8, 13),
         later, local(2025, 9, 6), local(2025, 9, 7)),
    )  # fmt: skip
    db.execute(
        "UPDATE reading_exceptions SET state = 'closed', closed_at = now(), closed_by = 'cli'"
        " WHERE meter_id = %s",
        (closed,),
    )
    assert cli("bills", "run", "--period", "2025-09").code == 0
    result = cli("bills", "issue", "--period", "2025-09")
    assert result.out.splitlines() == [
        "bills 2025-09: 2 issued, 2 held",
        "held PB01010000041 meter EST: estimated_boundary",
        "held PB01010000042 meter EXC: open_exception",
    ]
    # The CSV's held rows say why; --status picks them.
    held = cli("export", "bills", "--period", "2025-09", "--status", "held")
    rows = list(csv.DictReader(io.StringIO(held.out)))
    assert [(r["meter_serial"], r["status"], r["held_reason"]) for r in rows] == [
        ("EST", "held", "estimated_boundary"),
        ("EXC", "held", "open_exception"),
    ]
    issued = cli("export", "bills", "--period", "2025-09", "--status", "issued")
    assert [r["meter_serial"] for r in csv.DictReader(io.StringIO(issued.out))] == [
        "CLOSED",
        "LATER",
    ]
    bad = cli("export", "bills", "--period", "2025-09", "--status", "paid")
    assert bad.code == 2 and "paid" in bad.err


def test_the_database_refuses_to_change_an_issued_bill(cli, db: psycopg.Connection) -> None:
    m = add_meter(db, "PB01010000051", "FINAL", 5)
    two_readings(db, m, 10.0, 60.0, "2025-09")
    cli("bills", "run", "--period", "2025-09")
    # A draft may still change.
    db.execute("UPDATE bills SET computed_at = now()")
    assert cli("bills", "issue", "--period", "2025-09").code == 0
    for statement in (
        "UPDATE bills SET total_vnd = 0",
        "UPDATE bills SET status = 'draft', issued_at = NULL",
        "DELETE FROM bills",
        "TRUNCATE bills CASCADE",
    ):
        with pytest.raises(psycopg.errors.RestrictViolation, match="issued"):
            db.execute(statement)
    assert db.execute("SELECT total_vnd, status FROM bills").fetchone() == (107_136, "issued")
    # `bills run` keeps it as it is, even when the readings change.
    db.execute("UPDATE readings SET energy_import_kwh = 90 WHERE energy_import_kwh = 60")
    kept = cli("bills", "run", "--period", "2025-09")
    assert "1 kept (already issued)" in kept.out
    assert db.execute("SELECT consumption_kwh FROM bills").fetchone() == (50,)


def test_a_correction_keeps_the_original_and_issues_the_difference_linked(
    cli, db: psycopg.Connection
) -> None:
    m = add_meter(db, "PB01010000061", "CORR", 5)
    # 50 kWh: 50 × 1,984 = 99,200; VAT 7,936; total 107,136.
    two_readings(db, m, 10.0, 60.0, "2025-09")
    cli("bills", "run", "--period", "2025-09")
    nothing = cli("bills", "correct", "PB01010000061", "--period", "2025-09", "--reason", "x")
    assert nothing.code == 2 and "no issued bill" in nothing.err
    cli("bills", "issue", "--period", "2025-09")
    same = cli("bills", "correct", "PB01010000061", "--period", "2025-09", "--reason", "x")
    assert same.code == 2 and "nothing to correct" in same.err
    # The end reading was misread: 70, not 60 → 60 kWh: 99,200 + 10 × 2,050 = 119,700;
    # VAT 9,576; total 129,276. The difference: +10 kWh, +22,140 VND.
    db.execute("UPDATE readings SET energy_import_kwh = 70 WHERE energy_import_kwh = 60")
    fixed = cli("bills", "correct", "PB01010000061", "--period", "2025-09",
                "--reason", "end index misread")  # fmt: skip
    assert fixed.code == 0, fixed.err
    assert "version 2" in fixed.out and "+10 kWh, +22140 VND" in fixed.out
    rows = db.execute(
        "SELECT id, version, status, consumption_kwh, amount_vnd, vat_vnd, total_vnd,"
        " end_index_kwh::float, corrects_bill_id, correction_reason FROM bills ORDER BY version"
    ).fetchall()
    assert [r[1:8] for r in rows] == [
        (1, "issued", 50, 99_200, 7_936, 107_136, 60.0),
        (2, "issued", 10, 20_500, 1_640, 22_140, 70.0),
    ]
    assert rows[1][8] == rows[0][0] and rows[1][9] == "end index misread"
    breakdown = db.execute("SELECT breakdown FROM bills WHERE version = 2").fetchone()[0]
    assert breakdown["correction"]["before"]["total_vnd"] == 107_136
    assert breakdown["correction"]["after"]["total_vnd"] == 129_276
    (entry,) = db.execute(
        "SELECT actor, detail FROM audit_log WHERE action = 'bill.correct'"
    ).fetchall()
    assert entry[0] == "cli" and entry[1]["reason"] == "end index misread"
    exported = cli("export", "bills", "--period", "2025-09")
    lines = exported.out.splitlines()
    assert lines[0].endswith(",estimated,status,version,households,held_reason")
    assert [line.split(",")[-4:] for line in lines[1:]] == [
        ["issued", "1", "1", ""],
        ["issued", "2", "1", ""],
    ]
    # A further correction corrects the sum of both: back to 60 → −10 kWh.
    db.execute("UPDATE readings SET energy_import_kwh = 60 WHERE energy_import_kwh = 70")
    back = cli("bills", "correct", "PB01010000061", "--period", "2025-09", "--reason", "undo")
    assert back.code == 0 and "version 3" in back.out and "-10 kWh, -22140 VND" in back.out
    assert db.execute("SELECT sum(total_vnd) FROM bills").fetchone() == (107_136,)


def test_two_households_double_every_tier(cli, db: psycopg.Connection, tmp_path) -> None:
    header = (
        "customer_code,customer_name,address,province,tariff_group,reading_day,meter_serial,"
        "protocol,model,host,port,unit_id,multiplier,households"
    )
    inventory = tmp_path / "inv.csv"
    inventory.write_text(
        f"{header}\nPB01010000071,One,a,Bình Dương,residential,5,ONE,mqtt,,,,,,\n"
        "PB01010000072,Two,a,Bình Dương,residential,5,TWO,mqtt,,,,,,2\n",
        encoding="utf-8",
    )
    assert cli("meters", "import", str(inventory)).code == 0
    ids = dict(db.execute("SELECT serial, id FROM meters").fetchall())
    for serial in ("ONE", "TWO"):
        two_readings(db, ids[serial], 0.0, 300.0, "2025-09")
    assert cli("bills", "run", "--period", "2025-09").code == 0
    got = {
        serial: (amount, [line["width_kwh"] for line in b["parts"][0]["lines"]], b["households"])
        for serial, amount, b in db.execute(
            "SELECT m.serial, b.amount_vnd, b.breakdown FROM bills b JOIN meters m"
            " ON m.id = b.meter_id"
        )
    }
    # One household, 300 kWh: 50 × 1,984 + 50 × 2,050 + 100 × 2,380 + 100 × 2,998 = 739,500.
    # Two: 100 × 1,984 + 100 × 2,050 + 100 × 2,380 = 641,400.
    assert got == {
        "ONE": (739_500, [50, 50, 100, 100, 100, None], 1),
        "TWO": (641_400, [100, 100, 200, 200, 200, None], 2),
    }
    rows = list(csv.DictReader(io.StringIO(cli("export", "bills", "--period", "2025-09").out)))
    assert [(r["meter_serial"], r["households"], r["status"]) for r in rows] == [
        ("ONE", "1", "draft"),
        ("TWO", "2", "draft"),
    ]
    bad = tmp_path / "bad.csv"
    bad.write_text(f"{header}\nPB01010000073,X,a,B,residential,5,X,mqtt,,,,,,0\n")
    refused = cli("meters", "import", str(bad))
    assert refused.code == 2 and "households" in refused.err


def test_a_period_across_a_six_to_five_tier_change_is_split_and_priced_by_each(
    cli, db: psycopg.Connection
) -> None:
    # TEST DATA: made-up prices for the five-tier structure of Decision 14/2025/QĐ-TTg (0–100,
    # 101–200, 201–400, 401–700, 701+); no such prices are published or seeded.
    db.execute(
        "WITH t AS (INSERT INTO tariff_tables (tariff_group, effective_from, source)"
        " VALUES ('residential', '2025-08-20', 'TEST DATA: made-up five-tier prices')"
        " RETURNING id) INSERT INTO tariff_tiers (tariff_id, tier, width_kwh, price_vnd)"
        " SELECT t.id, v.tier, v.width, v.price FROM t, (VALUES (1, 100, 2000), (2, 100, 2100),"
        " (3, 200, 2500), (4, 300, 3000), (5, NULL, 3500)) AS v (tier, width, price)"
    )
    m = add_meter(db, "PB01010000081", "FIVE", 5)
    two_readings(db, m, 0.0, 310.0, "2025-09")
    assert cli("bills", "run", "--period", "2025-09").code == 0
    # 2025-08-05 → 2025-09-05: N = T = 31, split at 2025-08-20: 15 + 16 days.
    # Part 1 (six tiers): round(310 × 15/31) = 150 kWh; widths round(50 × 15/31) = 24, 24,
    #   round(100 × 15/31) = 48, 48, 48: 24 × 1,984 + 24 × 2,050 + 48 × 2,380 + 48 × 2,998
    #   + 6 × 3,350 = 47,616 + 49,200 + 114,240 + 143,904 + 20,100 = 375,060; VAT 30,005.
    # Part 2 (five tiers): 160 kWh; widths round(100 × 16/31) = 52, 52, round(200 × 16/31)
    #   = 103, round(300 × 16/31) = 155: 52 × 2,000 + 52 × 2,100 + 56 × 2,500 = 353,200;
    #   VAT 28,256. Total 728,260 + 58,261 = 786,521.
    amount, vat, total, b = db.execute(
        "SELECT amount_vnd, vat_vnd, total_vnd, breakdown FROM bills"
    ).fetchone()
    assert (amount, vat, total) == (728_260, 58_261, 786_521)
    assert [[line["width_kwh"] for line in p["lines"]] for p in b["parts"]] == [
        [24, 24, 48, 48, 48, None],
        [52, 52, 103, 155, None],
    ]
    assert [p["consumption_kwh"] for p in b["parts"]] == [150, 160]


def test_issue_command_rejects_bad_input(cli) -> None:
    bad = cli("bills", "issue", "--period", "2025-13")
    assert bad.code == 2 and "period" in bad.err and "Traceback" not in bad.err
    prefix = cli("bills", "issue", "--period", "2025-09", "--customer-prefix", "P B")
    assert prefix.code == 2 and "prefix" in prefix.err


def test_issue_by_customer_prefix_and_the_bill_issued_notice(cli, db: psycopg.Connection) -> None:
    a = add_meter(db, "PB01010000091", "PFX-A", 5)
    b = add_meter(db, "PC02020000092", "PFX-B", 5)
    for meter in (a, b):
        two_readings(db, meter, 10.0, 60.0, "2025-09")
    db.execute(
        "INSERT INTO customer_contacts (customer_id, email, preferred_channel)"
        " SELECT id, 'a@example.vn', 'email' FROM customers WHERE code = 'PB01010000091'"
    )
    cli("bills", "run", "--period", "2025-09")
    one = cli("bills", "issue", "--period", "2025-09", "--customer-prefix", "pb0101")
    assert one.out.splitlines() == ["bills 2025-09: 1 issued, 0 held"]
    assert [r[:3] for r in bill_rows(db, "2025-09")] == [
        ("PFX-A", 1, "issued"),
        ("PFX-B", 1, "draft"),
    ]
    notices = db.execute("SELECT kind, recipient, dedupe_key FROM notices").fetchall()
    bill_id = db.execute("SELECT id FROM bills WHERE status = 'issued'").fetchone()[0]
    assert notices == [("bill_issued", "a@example.vn", f"bill:{bill_id}")]


def test_the_customer_page_tier_of_a_shared_meter_is_doubled_too() -> None:
    from datetime import date

    from billing.tariff import Tier, bands

    tiers = [Tier(1, 50, 1984), Tier(2, 50, 2050), Tier(3, None, 2380)]
    one = bands(tiers, date(2025, 8, 5), date(2025, 9, 5))
    two = bands(tiers, date(2025, 8, 5), date(2025, 9, 5), households=2)
    assert [(b.lower_kwh, b.upper_kwh) for b in one] == [(0, 50), (50, 100), (100, None)]
    assert [(b.lower_kwh, b.upper_kwh) for b in two] == [(0, 100), (100, 200), (200, None)]


def test_an_issue_and_a_correction_wait_for_a_run_of_their_period(
    cli, db: psycopg.Connection, db_url: str
) -> None:
    """One lock scheme (``billing.locks``): while a run of 2025-09 holds the block of a meter,
    issuing or correcting 2025-09 waits (here: gives up after its lock timeout), and another
    period does not."""
    meter = add_meter(db, "PB01010000071", "LOCK-A", 5)
    two_readings(db, meter, 10.0, 60.0, "2025-09")
    add_readings(db, meter, [(local(2025, 10, 5), 90.0)])
    assert cli("bills", "run", "--period", "2025-09").code == 0
    assert cli("bills", "run", "--period", "2025-10").code == 0
    assert cli("bills", "issue", "--period", "2025-10").code == 0
    from billing.correct import correct
    from billing.issue import issue_period
    from billing.locks import BLOCK, lock_blocks
    from billing.periods import Period

    with psycopg.connect(db_url) as run, psycopg.connect(db_url, autocommit=True) as other:
        lock_blocks(run, Period(2025, 9), [meter // BLOCK])  # a run's lock, held
        other.execute("SET lock_timeout = '100ms'")
        with pytest.raises(psycopg.errors.LockNotAvailable):
            issue_period(other, Period(2025, 9), None, "clerk", local(2025, 10, 6), HCM)
        # Another period's issue does not wait: 2025-10 has nothing left to issue.
        done = issue_period(other, Period(2025, 10), None, "clerk", local(2025, 10, 6), HCM)
        assert done.issued == []
        with pytest.raises(psycopg.errors.LockNotAvailable):
            correct(other, "PB01010000071", Period(2025, 9), "re-read", "clerk",
                    local(2025, 10, 6), HCM)  # fmt: skip
    assert [r[2] for r in bill_rows(db, "2025-09")] == ["draft"]
