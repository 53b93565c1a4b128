"""``doxa readings validate`` and ``doxa readings exceptions`` (contract §12) end to end: the
exceptions' CSV and XLSX with the contract's columns, its filters, and one-line errors."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from openpyxl import load_workbook

from simulators.modbus import ModbusFleet
from tests.vee_fleet import insert_fleet, insert_history, local

pytestmark = pytest.mark.db

COLUMNS = ["meter_serial", "customer_code", "rule", "ts_from", "ts_to", "state", "reason"]


def test_validate_then_list_the_exceptions(
    db: psycopg.Connection, db_url: str, doxa: Callable, tmp_path: Path
) -> None:
    fleet = ModbusFleet(meters=3, gateways=1, seed=5, models=("sdm120",))
    s = [m.serial for m in fleet.meters]
    fleet.inject_rollback(s[1], local(2026, 11, 3, 9.1), 2.0)
    ids = insert_fleet(db, fleet)
    insert_history(db, fleet, ids, local(2026, 10, 20), local(2026, 11, 6))
    env = {"DOXA_DATABASE_URL": db_url}

    result = doxa("readings", "validate", "--from", "2026-11-01", "--to", "2026-11-05", env=env)
    assert result.code == 0, result.err
    assert "found: future 0, gap 0, high_use 0, low_use 0, multiplier 0, rollback 1" in result.out
    again = doxa("readings", "validate", "--from", "2026-11-01", "--to", "2026-11-05", env=env)
    assert "0 opened, 1 still open" in again.out

    listed = doxa("readings", "exceptions", "--open", env=env)
    assert listed.code == 0, listed.err
    rows = list(csv.reader(io.StringIO(listed.out)))
    code = fleet.meters[1].customer.code
    assert rows[0] == COLUMNS
    assert rows[1][:6] == [s[1], code, "rollback", "2026-11-03T09:00:00+07:00",
                           "2026-11-03T09:30:00+07:00", "open"]  # fmt: skip
    before = fleet.reading(s[1], local(2026, 11, 3, 9)).energy_import_kwh
    after = fleet.reading(s[1], local(2026, 11, 3, 9.5)).energy_import_kwh
    assert rows[1][6] == (
        f"The register fell from {before:.3f} to {after:.3f} kWh ({after - before:.3f} kWh)"
        " between 2026-11-03 09:00 and 2026-11-03 09:30, with no replacement recorded."
    )
    assert len(rows) == 2

    outside = doxa("readings", "exceptions", "--from", "2026-11-04", "--to", "2026-11-05",
                   env=env)  # fmt: skip
    assert outside.out.splitlines() == [",".join(COLUMNS)]
    other = doxa("readings", "exceptions", "--customer-prefix", "XX", env=env)
    assert len(other.out.splitlines()) == 1
    out = tmp_path / "exceptions.xlsx"
    book = doxa("readings", "exceptions", "--format", "xlsx", "--out", str(out), env=env)
    assert book.code == 0, book.err
    sheet = load_workbook(out).active
    assert [c.value for c in sheet[1]] == COLUMNS and sheet.max_row == 2
    audit = db.execute(
        "SELECT count(*) FROM audit_log WHERE action = 'export.reading_exceptions'"
    ).fetchone()
    assert audit == (4,)

    for args, message in (
        (("validate", "--from", "2026-11-05", "--to", "2026-11-01"), "is before the start date"),
        (("validate", "--from", "2026-13-01", "--to", "2026-11-01"), "Invalid value"),
        (("exceptions", "--from", "2026-11-01"), "give both --from and --to"),
        (("estimate", "--from", "2026-11-01", "--to", "2026-11-02", "--meter", "X"),
         "unknown meter serial 'X'"),
    ):  # fmt: skip
        bad = doxa("readings", *args, env=env)
        assert bad.code == 2 and message in bad.err, (args, bad.err)
