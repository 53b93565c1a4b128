"""Exports (contract §3): the CSV equals the database rows, XLSX holds the same values, the CLI
and the staff page give the same file, filters and local-day bounds hold, closing indices follow
contract §8, and every export is in the audit log with its row count."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import openpyxl
import psycopg
import pytest
from flask import Flask
from test_staff_helpers import (
    add_bill,
    add_customer,
    add_meter,
    add_readings,
    add_staff,
    app_factory,
    csrf_token,
    signed_in_client,
)

import exports

pytestmark = pytest.mark.db
VN = ZoneInfo("Asia/Ho_Chi_Minh")
READINGS_HEADER = "meter_serial,customer_code,ts,energy_import_kwh,energy_export_kwh,power_w,voltage_v,current_a,quality"
BILLS_HEADER = "customer_code,meter_serial,period_start,period_end,days,start_index_kwh,end_index_kwh,consumption_kwh,amount_vnd,vat_vnd,total_vnd,estimated,status,version,households,held_reason"


@pytest.fixture
def fleet(db: psycopg.Connection) -> dict[str, int]:
    """Three customers in two provinces; Modbus meters M-A and M-B, MQTT meter M-C. Readings
    every 6 hours from 2025-04-30 to 2025-05-03 local, plus edge cases: the first instant of
    2025-05-01, the last microsecond of 2025-05-02, unreported values and every quality."""
    a = add_customer(db, "PB0101000001", province="Bình Dương")
    b = add_customer(db, "PB0102000002", province="Bình Dương")
    c = add_customer(db, "PE0101000003", province="Hồ Chí Minh")
    ids = {
        "M-A": add_meter(db, a, "M-A"),
        "M-B": add_meter(db, b, "M-B"),
        "M-C": add_meter(db, c, "M-C", protocol="mqtt"),
    }
    rows = []
    start = datetime(2025, 4, 30, 0, 0, tzinfo=VN)
    for serial, meter_id in ids.items():
        for i in range(16):
            ts = start + timedelta(hours=6 * i)
            kwh = 1000.0 + meter_id * 100 + i * 1.25
            if serial == "M-C":
                rows.append((meter_id, ts, kwh, None, None, None, None, "actual", "mqtt"))
            else:
                rows.append((meter_id, ts, kwh, 0.0, 850.5 + i, 229.8, 3.7, "actual", "modbus"))
    rows += [
        (
            ids["M-A"],
            datetime(2025, 5, 2, 23, 59, 59, 999999, tzinfo=VN),
            1234.56,
            0.1,
            1e-05,
            230.1,
            0.1,
            "edited",
            "manual",
        ),
        (
            ids["M-A"],
            datetime(2025, 5, 1, 12, 0, 0, 250000, tzinfo=VN),
            1100.125,
            None,
            9.5,
            None,
            None,
            "estimated",
            "backfill",
        ),
    ]
    add_readings(db, rows)
    return ids


@pytest.fixture
def make_app(db_url: str) -> Iterator[Callable[..., Flask]]:
    yield from app_factory(db_url)


def expected_readings(
    db: psycopg.Connection,
    first: date,
    last: date,
    tz: ZoneInfo = VN,
    serials: tuple[str, ...] = (),
) -> list[list[str]]:
    """The contract's CSV rows computed independently, in Python, from the database rows."""
    start = datetime.combine(first, datetime.min.time(), tz)
    end = datetime.combine(last + timedelta(days=1), datetime.min.time(), tz)
    rows = db.execute(
        "SELECT m.serial, c.code, r.ts, r.energy_import_kwh, r.energy_export_kwh, r.power_w,"
        " r.voltage_v, r.current_a, r.quality FROM readings r JOIN meters m ON m.id = r.meter_id"
        " JOIN customers c ON c.id = m.customer_id WHERE r.ts >= %s AND r.ts < %s"
        " AND (cardinality(%s::text[]) = 0 OR m.serial = ANY(%s)) ORDER BY r.ts, m.serial",
        (start, end, list(serials), list(serials)),
    ).fetchall()

    def cell(value: object) -> str:
        if value is None:
            return ""
        if isinstance(value, datetime):
            return value.astimezone(tz).isoformat()
        return repr(value) if isinstance(value, float) else str(value)

    return [[cell(v) for v in row] for row in rows]


def parse_csv(text: str) -> tuple[list[str], list[list[str]]]:
    rows = list(csv.reader(io.StringIO(text)))
    return rows[0], rows[1:]


def same_numbers(got: list[list[str]], want: list[list[str]]) -> None:
    """Cells equal; numeric cells compared as numbers (PostgreSQL and Python both print the
    shortest exact form, but 1e-05 may be spelled differently)."""
    assert len(got) == len(want)
    for g_row, w_row in zip(got, want, strict=True):
        for g, w in zip(g_row, w_row, strict=True):
            try:
                assert float(g) == float(w), (g_row, w_row)
            except ValueError:
                assert g == w, (g_row, w_row)


def test_cli_readings_csv_equals_the_database_rows(doxa, db_url, db, fleet) -> None:
    result = doxa(
        "export",
        "readings",
        "--from",
        "2025-05-01",
        "--to",
        "2025-05-02",
        env={"DOXA_DATABASE_URL": db_url},
    )
    assert result.code == 0, result.err
    header, rows = parse_csv(result.out)
    assert ",".join(header) == READINGS_HEADER
    want = expected_readings(db, date(2025, 5, 1), date(2025, 5, 2))
    same_numbers(rows, want)
    # 3 meters × 8 readings on the two days, plus M-A's two extra ones.
    assert len(rows) == 26
    lines = result.out.splitlines()
    # Local days, both ends included: the first instant of the 1st, the last microsecond of the 2nd.
    assert "M-A,PB0101000001,2025-05-01T00:00:00+07:00," in result.out
    assert (
        "M-A,PB0101000001,2025-05-02T23:59:59.999999+07:00,1234.56,0.1,1e-05,230.1,0.1,edited"
        in lines
    )
    assert "M-A,PB0101000001,2025-05-01T12:00:00.250000+07:00,1100.125,,9.5,,,estimated" in lines
    assert not any("2025-05-03T" in line or "2025-04-30T" in line for line in lines)
    # Unreported values are empty cells.
    assert any(
        line.startswith("M-C,PE0101000003,2025-05-01T06:00:00+07:00,")
        and line.endswith(",,,,,actual")
        for line in lines
    )


def test_readings_offsets_follow_the_configured_zone(doxa, db_url, db) -> None:
    meter = add_meter(db, add_customer(db, "PD0101000009"), "DST-1")
    # Berlin switches from +01:00 to +02:00 on 2025-03-30 at 02:00 local.
    add_readings(
        db,
        [
            (
                meter,
                datetime(2025, 3, 30, 0, 30, tzinfo=ZoneInfo("UTC")),
                1.0,
                None,
                None,
                None,
                None,
                "actual",
                "mqtt",
            ),
            (
                meter,
                datetime(2025, 3, 30, 1, 30, tzinfo=ZoneInfo("UTC")),
                2.0,
                None,
                None,
                None,
                None,
                "actual",
                "mqtt",
            ),
        ],
    )
    env = {"DOXA_DATABASE_URL": db_url, "DOXA_TIMEZONE": "Europe/Berlin"}
    result = doxa("export", "readings", "--from", "2025-03-30", "--to", "2025-03-30", env=env)
    assert result.code == 0, result.err
    _, rows = parse_csv(result.out)
    assert [r[2] for r in rows] == ["2025-03-30T01:30:00+01:00", "2025-03-30T03:30:00+02:00"]


def test_web_export_is_the_same_file_as_the_cli(doxa, db_url, db, fleet, make_app) -> None:
    add_staff(db, "lan", "billing")
    client = signed_in_client(make_app(), "lan")
    token = csrf_token(client, "/staff/exports")
    response = client.post(
        "/staff/exports/readings",
        data={
            "csrf_token": token,
            "readings-date_from": "2025-05-01",
            "readings-date_to": "2025-05-02",
            "readings-fmt": "csv",
            "readings-province": "",
        },
    )
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    assert response.mimetype == "text/csv"
    assert (
        response.headers["Content-Disposition"]
        == 'attachment; filename="readings_2025-05-01_2025-05-02.csv"'
    )
    web = response.get_data(as_text=True)
    cli = doxa(
        "export",
        "readings",
        "--from",
        "2025-05-01",
        "--to",
        "2025-05-02",
        env={"DOXA_DATABASE_URL": db_url},
    )
    assert web == cli.out
    # Both were audited with their row counts.
    entries = db.execute(
        "SELECT actor, action, row_count, detail->>'via', detail->>'complete' FROM audit_log"
        " WHERE action = 'export.readings' ORDER BY id"
    ).fetchall()
    assert entries == [
        ("lan", "export.readings", 26, "web", "true"),
        ("cli", "export.readings", 26, "cli", None),
    ]


def test_filters_by_province_branch_and_meter_list(doxa, db_url, db, fleet, make_app) -> None:
    env = {"DOXA_DATABASE_URL": db_url}

    def serials(*extra: str) -> set[str]:
        result = doxa(
            "export", "readings", "--from", "2025-05-01", "--to", "2025-05-01", *extra, env=env
        )
        assert result.code == 0, result.err
        return {row[0] for row in parse_csv(result.out)[1]}

    assert serials() == {"M-A", "M-B", "M-C"}
    assert serials("--province", "Bình Dương") == {"M-A", "M-B"}
    assert serials("--customer-prefix", "pb0102") == {"M-B"}
    assert serials("--meter", "M-C", "--meter", "M-A") == {"M-A", "M-C"}
    assert serials("--province", "Bình Dương", "--meter", "M-C") == set()

    add_staff(db, "lan", "billing")
    client = signed_in_client(make_app(), "lan")
    page = client.get("/staff/exports").get_data(as_text=True)
    assert '<option value="Bình Dương">' in page and '<option value="Hồ Chí Minh">' in page
    response = client.post(
        "/staff/exports/readings",
        data={
            "csrf_token": csrf_token(client, "/staff/exports"),
            "readings-date_from": "2025-05-01",
            "readings-date_to": "2025-05-01",
            "readings-meters": "M-B, M-C\nM-A",
            "readings-province": "Bình Dương",
            "readings-customer_prefix": "PB01",
            "readings-fmt": "csv",
        },
    )
    assert {row[0] for row in parse_csv(response.get_data(as_text=True))[1]} == {"M-A", "M-B"}


def test_xlsx_holds_the_same_values_as_the_csv(doxa, db_url, db, fleet, tmp_path: Path) -> None:
    env = {"DOXA_DATABASE_URL": db_url}
    args = ("export", "readings", "--from", "2025-05-01", "--to", "2025-05-02")
    csv_rows = parse_csv(doxa(*args, env=env).out)[1]
    out = tmp_path / "readings.xlsx"
    result = doxa(*args, "--format", "xlsx", "--out", str(out), env=env)
    assert result.code == 0, result.err
    assert result.err.strip() == f"exported 26 row(s) to {out}"
    book = openpyxl.load_workbook(out, read_only=True)
    sheet = book.worksheets[0]
    rows = list(sheet.iter_rows(values_only=True))
    assert ",".join(rows[0]) == READINGS_HEADER
    assert len(rows) - 1 == len(csv_rows) == 26
    for got, want in zip(rows[1:], csv_rows, strict=True):
        for value, text in zip(got, want, strict=True):
            if text == "":
                assert value is None
            elif isinstance(value, float | int):
                assert value == float(text)
            else:
                assert value == text
    book.close()


def test_xlsx_goes_on_in_a_new_sheet_at_the_row_limit(db, fleet) -> None:
    spec = exports.readings(
        date(2025, 5, 1), date(2025, 5, 1), "Asia/Ho_Chi_Minh", exports.Selection(meters=("M-A",))
    )
    progress = exports.ExportProgress()
    data = b"".join(exports.iter_xlsx(db, spec, progress, max_rows_per_sheet=3))
    assert progress.complete and progress.rows == 5  # 4 readings every 6 h + the 12:00:00.25 one
    book = openpyxl.load_workbook(io.BytesIO(data), read_only=True)
    assert book.sheetnames == ["readings", "readings 2", "readings 3"]
    sizes = [len(list(s.iter_rows(values_only=True))) for s in book.worksheets]
    assert sizes == [3, 3, 2]  # each with the header row
    assert all(next(s.iter_rows(values_only=True))[0] == "meter_serial" for s in book.worksheets)
    book.close()


def test_bills_csv_and_xlsx(doxa, db_url, db, tmp_path: Path) -> None:
    a = add_customer(db, "PB0101000001")
    b = add_customer(db, "PB0101000002")
    ma, mb = add_meter(db, a, "BA-1"), add_meter(db, b, "BB-1")
    add_bill(
        db,
        b,
        mb,
        "2025-05",
        date(2025, 4, 15),
        date(2025, 5, 15),
        "1200.000",
        "1450.500",
        251,
        517_856,
        estimated=True,
    )
    add_bill(
        db,
        a,
        ma,
        "2025-05",
        date(2025, 4, 15),
        date(2025, 5, 15),
        "100.250",
        "250.000",
        150,
        291_350,
    )
    add_bill(
        db, a, ma, "2025-04", date(2025, 3, 15), date(2025, 4, 15), "0.000", "100.250", 100, 193_400
    )
    env = {"DOXA_DATABASE_URL": db_url}
    result = doxa("export", "bills", "--period", "2025-05", env=env)
    assert result.code == 0, result.err
    assert result.out.splitlines() == [
        BILLS_HEADER,
        "PB0101000001,BA-1,2025-04-15,2025-05-15,30,100.250,250.000,150,291350,23308,314658,false,"
        "draft,1,1,",
        "PB0101000002,BB-1,2025-04-15,2025-05-15,30,1200.000,1450.500,251,517856,41428,559284,true,"
        "draft,1,1,",
    ]
    out = tmp_path / "bills.xlsx"
    assert (
        doxa(
            "export", "bills", "--period", "2025-05", "--format", "xlsx", "--out", str(out), env=env
        ).code
        == 0
    )
    book = openpyxl.load_workbook(out, read_only=True)
    rows = list(book.worksheets[0].iter_rows(values_only=True))
    assert ",".join(rows[0]) == BILLS_HEADER
    assert rows[1] == (
        "PB0101000001",
        "BA-1",
        datetime(2025, 4, 15),
        datetime(2025, 5, 15),
        30,
        100.25,
        250,
        150,
        291350,
        23308,
        314658,
        False,
        "draft",
        1,
        1,
        None,
    )
    assert rows[2][11] is True and rows[2][6] == 1450.5
    book.close()


def test_closing_indices_interpolate_per_contract(doxa, db_url, db) -> None:
    """Reading day 15, period 2025-05: the close is 2025-05-15 00:00 local (17:00 UTC the 14th)."""
    close = datetime(2025, 5, 15, tzinfo=VN)
    h = timedelta(hours=1)

    def meter(
        code: str, serial: str, readings: list[tuple[datetime, float]], day: int = 15
    ) -> None:
        meter_id = add_meter(db, add_customer(db, code, reading_day=day), serial)
        add_readings(
            db,
            [
                (meter_id, ts, kwh, None, None, None, None, "actual", "modbus")
                for ts, kwh in readings
            ],
        )

    meter(
        "PB0101000001",
        "C-NEAR",
        [(close - h / 2, 100.0), (close + h / 2, 101.0), (close + 3 * h, 104.0)],
    )
    meter("PB0101000002", "C-FAR", [(close - 4 * h, 50.0), (close + 2 * h, 56.0)])
    meter("PB0101000003", "C-AT", [(close - h, 9.0), (close, 10.0), (close + h, 11.0)])
    meter("PB0101000004", "C-NONE", [(close - h, 7.0)])
    meter(
        "PB0101000005",
        "C-DAY1",
        [(datetime(2025, 5, 1, tzinfo=VN) - h, 1.0), (datetime(2025, 5, 1, tzinfo=VN) + h, 3.0)],
        day=1,
    )
    result = doxa(
        "export", "closing-indices", "--period", "2025-05", env={"DOXA_DATABASE_URL": db_url}
    )
    assert result.code == 0, result.err
    assert result.out.splitlines() == [
        "customer_code,meter_serial,closing_at,index_kwh,estimated,before_ts,before_kwh,after_ts,after_kwh",
        # 100 + (101 − 100) × 0.5 h / 1 h; readings 1 h apart: actual.
        "PB0101000001,C-NEAR,2025-05-15T00:00:00+07:00,100.500,false,2025-05-14T23:30:00+07:00,100,2025-05-15T00:30:00+07:00,101",
        # 50 + (56 − 50) × 4 h / 6 h = 54; 6 h apart (> 2 h): estimated.
        "PB0101000002,C-FAR,2025-05-15T00:00:00+07:00,54.000,true,2025-05-14T20:00:00+07:00,50,2025-05-15T02:00:00+07:00,56",
        "PB0101000003,C-AT,2025-05-15T00:00:00+07:00,10.000,false,2025-05-15T00:00:00+07:00,10,2025-05-15T00:00:00+07:00,10",
        # No reading after the close: no index.
        "PB0101000004,C-NONE,2025-05-15T00:00:00+07:00,,,2025-05-14T23:00:00+07:00,7,,",
        "PB0101000005,C-DAY1,2025-05-01T00:00:00+07:00,2.000,false,2025-04-30T23:00:00+07:00,1,2025-05-01T01:00:00+07:00,3",
    ]


def test_cli_rejects_bad_input_with_one_line(doxa, db_url, db, fleet) -> None:
    env = {"DOXA_DATABASE_URL": db_url}
    cases = [
        (
            ("readings", "--from", "2025-05-02", "--to", "2025-05-01"),
            "the end date 2025-05-01 is before the start date 2025-05-02",
        ),
        (("readings", "--from", "2025-13-01", "--to", "2025-05-01"), "2025-13-01"),
        (
            ("readings", "--from", "2025-05-01", "--to", "2025-05-01", "--meter", "NOPE"),
            "unknown meter serial 'NOPE'",
        ),
        (
            ("readings", "--from", "2025-05-01", "--to", "2025-05-01", "--customer-prefix", "PB%"),
            "invalid customer code prefix",
        ),
        (("bills", "--period", "2025-5"), "invalid period '2025-5': expected YYYY-MM"),
        (("closing-indices", "--period", "May"), "invalid period 'May'"),
        (("bills", "--period", "2025-05", "--format", "pdf"), "pdf"),
    ]
    for args, message in cases:
        result = doxa("export", *args, env=env)
        assert result.code == 2, (args, result.err)
        assert message in result.err
        if "Usage:" not in result.err:  # click's own usage errors show the usage first
            assert len(result.err.strip().splitlines()) == 1, result.err
            assert result.err.startswith("doxa: error: ")
    assert db.execute("SELECT count(*) FROM audit_log").fetchone() == (0,)


def test_web_form_errors_are_shown(db, fleet, make_app) -> None:
    add_staff(db, "lan", "billing")
    client = signed_in_client(make_app(), "lan")
    token = csrf_token(client, "/staff/exports")
    base = {"csrf_token": token, "readings-fmt": "csv"}
    reversed_dates = client.post(
        "/staff/exports/readings",
        data={**base, "readings-date_from": "2025-05-02", "readings-date_to": "2025-05-01"},
    )
    assert reversed_dates.status_code == 400
    assert "Ngày kết thúc trước ngày bắt đầu." in reversed_dates.get_data(as_text=True)
    unknown = client.post(
        "/staff/exports/readings",
        data={
            **base,
            "readings-date_from": "2025-05-01",
            "readings-date_to": "2025-05-01",
            "readings-meters": "M-A NOPE",
        },
    )
    assert unknown.status_code == 400
    assert "Không có công tơ với số sê-ri: NOPE" in unknown.get_data(as_text=True)
    bad_period = client.post(
        "/staff/exports/bills",
        data={"csrf_token": token, "bills-period": "2025-13", "bills-fmt": "csv"},
    )
    assert bad_period.status_code == 400
    assert "Hãy dùng dạng YYYY-MM." in bad_period.get_data(as_text=True)
