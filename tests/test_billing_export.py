"""End to end: an inventory and readings in the database → ``doxa bills run`` → ``doxa export
bills`` gives the CSV a billing clerk expects, byte for byte (contract §3 and §8)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest

pytestmark = pytest.mark.db

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
INVENTORY = """\
customer_code,customer_name,address,province,tariff_group,reading_day,meter_serial,protocol,model,host,port,unit_id,multiplier
PB01010012345,Nguyễn Văn An,12 Lê Lợi,Bình Dương,residential,15,SDM-0001,modbus,sdm120,127.0.0.1,5020,1,
PK02030000123,Lê Văn Cường,5 Nguyễn Huệ,Đồng Nai,residential,15,CT-0040,mqtt,,,,,40
"""


def local(y: int, mo: int, d: int, minutes: float = 0) -> datetime:
    return datetime(y, mo, d, tzinfo=HCM) + timedelta(minutes=minutes)


def test_readings_to_bills_to_csv(
    doxa, db_url: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    env = {"DOXA_DATABASE_URL": db_url}
    inventory = tmp_path / "inventory.csv"
    inventory.write_text(INVENTORY, encoding="utf-8")
    assert doxa("meters", "import", inventory, env=env).code == 0
    ids = dict(db.execute("SELECT serial, id FROM meters").fetchall())

    # Period 2025-06 with reading day 15: 2025-05-15 00:00 → 2025-06-15 00:00 local, N = 31.
    # It ends in June, so T = 31 (May): tier widths stay 50/50/100/100/100. Prices from
    # 2025-05-10 (1,984 / 2,050 / 2,380 / 2,998 / 3,350 / 3,460); VAT 10 % (8 % starts 2025-07-01).
    #
    # SDM-0001: start between 1,000.0 at 23:00 and 1,002.0 at 01:00 → 1,001.000 (2 h apart: not
    # estimated); end between 1,250.0 at 23:00 and 1,251.5 at 00:30 → 1,250 + 1.5 × 60/90 =
    # 1,251.000. Consumption 250 kWh:
    #   50 × 1,984 = 99,200; 50 × 2,050 = 102,500; 100 × 2,380 = 238,000; 50 × 2,998 = 149,900
    #   amount 589,600; VAT 58,960; total 648,560.
    # CT-0040 (multiplier 40): start 100.0 at 22:00 and 103.0 at 02:00 (4 h apart: estimated) →
    # 101.500; end exactly 105.000 at 00:00. (105.0 − 101.5) × 40 = 140 kWh:
    #   50 × 1,984 = 99,200; 50 × 2,050 = 102,500; 40 × 2,380 = 95,200
    #   amount 296,900; VAT 29,690; total 326,590.
    points = [
        (ids["SDM-0001"], local(2025, 5, 14, 23 * 60), 1000.0),
        (ids["SDM-0001"], local(2025, 5, 15, 60), 1002.0),
        (ids["SDM-0001"], local(2025, 6, 14, 23 * 60), 1250.0),
        (ids["SDM-0001"], local(2025, 6, 15, 30), 1251.5),
        (ids["CT-0040"], local(2025, 5, 14, 22 * 60), 100.0),
        (ids["CT-0040"], local(2025, 5, 15, 120), 103.0),
        (ids["CT-0040"], local(2025, 6, 15), 105.0),
    ]
    with db.cursor() as cur:
        cur.executemany(
            "INSERT INTO readings (meter_id, ts, energy_import_kwh, source)"
            " VALUES (%s, %s, %s, 'modbus')",
            points,
        )

    run = doxa("bills", "run", "--period", "2025-06", env=env)
    assert run.code == 0, run.err
    out = tmp_path / "bills.csv"
    export = doxa("export", "bills", "--period", "2025-06", "--out", out, env=env)
    assert export.code == 0, export.err
    assert out.read_text(encoding="utf-8").splitlines() == [
        "customer_code,meter_serial,period_start,period_end,days,start_index_kwh,end_index_kwh,"
        "consumption_kwh,amount_vnd,vat_vnd,total_vnd,estimated,status,version,households,"
        "held_reason",
        "PB01010012345,SDM-0001,2025-05-15,2025-06-15,31,1001.000,1251.000,250,589600,58960,648560,false,"
        "draft,1,1,",
        "PK02030000123,CT-0040,2025-05-15,2025-06-15,31,101.500,105.000,140,296900,29690,326590,true,"
        "draft,1,1,",
    ]

    # Re-running gives the same bills, never duplicates.
    assert doxa("bills", "run", "--period", "2025-06", env=env).code == 0
    again = doxa("export", "bills", "--period", "2025-06", env=env)
    assert again.code == 0
    assert again.out.splitlines() == out.read_text(encoding="utf-8").splitlines()
