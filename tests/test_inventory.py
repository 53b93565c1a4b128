"""Inventory import (contract §6): all or nothing, errors name line and column, re-import updates."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

pytestmark = pytest.mark.db

HEADER = (
    "customer_code,customer_name,address,province,tariff_group,reading_day,meter_serial,"
    "protocol,model,host,port,unit_id,multiplier"
)
GOOD = [
    "PB01010012345,Nguyễn Văn An,12 Lê Lợi,Bình Dương,residential,5,SDM-0001,modbus,sdm120,127.0.0.1,5020,1,",
    "PB01010012346,Trần Thị Bình,34 Hai Bà Trưng,Bình Dương,residential,10,SDM-0002,modbus,sdm630,127.0.0.1,5020,2,40",
    "PK02030000123,Lê Văn Cường,5 Nguyễn Huệ,Đồng Nai,residential,28,TAS-0001,mqtt,,,,,1",
]


def write_csv(tmp_path: Path, lines: list[str], header: str = HEADER) -> Path:
    path = tmp_path / "inventory.csv"
    path.write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
    return path


def counts(db: psycopg.Connection) -> tuple[int, int]:
    row = db.execute(
        "SELECT (SELECT count(*) FROM customers), (SELECT count(*) FROM meters)"
    ).fetchone()
    assert row is not None
    return row[0], row[1]


def test_good_file_is_imported(doxa, db_url: str, db: psycopg.Connection, tmp_path: Path) -> None:
    result = doxa("meters", "import", write_csv(tmp_path, GOOD), env={"DOXA_DATABASE_URL": db_url})
    assert result.code == 0, result.err
    assert "3 meter(s) of 3 customer(s)" in result.out
    rows = db.execute(
        "SELECT m.serial, c.code, c.name, c.reading_day, m.protocol, m.model, m.host, m.port,"
        " m.unit_id, m.multiplier FROM meters m JOIN customers c ON c.id = m.customer_id"
        " ORDER BY m.serial"
    ).fetchall()
    assert [(r[0], r[1], r[3], r[4], r[5], r[7], r[8], float(r[9])) for r in rows] == [
        ("SDM-0001", "PB01010012345", 5, "modbus", "sdm120", 5020, 1, 1.0),
        ("SDM-0002", "PB01010012346", 10, "modbus", "sdm630", 5020, 2, 40.0),
        ("TAS-0001", "PK02030000123", 28, "mqtt", None, None, None, 1.0),
    ]
    assert rows[0][2] == "Nguyễn Văn An"


def test_reimport_updates_rows_and_bumps_inventory_version(
    doxa, db_url: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    env = {"DOXA_DATABASE_URL": db_url}
    assert doxa("meters", "import", write_csv(tmp_path, GOOD), env=env).code == 0
    version_before = db.execute("SELECT version FROM inventory_version").fetchone()
    changed = [
        GOOD[0].replace(",5020,1,", ",5021,7,"),
        GOOD[1],
        GOOD[2].replace("Lê Văn Cường", "Lê Văn Cường Jr"),
    ]
    result = doxa("meters", "import", write_csv(tmp_path, changed), env=env)
    assert result.code == 0, result.err
    assert counts(db) == (3, 3)
    assert db.execute("SELECT port, unit_id FROM meters WHERE serial = 'SDM-0001'").fetchone() == (
        5021,
        7,
    )
    assert db.execute("SELECT name FROM customers WHERE code = 'PK02030000123'").fetchone() == (
        "Lê Văn Cường Jr",
    )
    version_after = db.execute("SELECT version FROM inventory_version").fetchone()
    assert version_before is not None and version_after is not None
    assert version_after[0] == version_before[0] + 1


def test_optional_collector_column(
    doxa, db_url: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    lines = [GOOD[0] + ",north-1", GOOD[1] + ","]
    result = doxa(
        "meters", "import", write_csv(tmp_path, lines, HEADER + ",collector_id"),
        env={"DOXA_DATABASE_URL": db_url},
    )  # fmt: skip
    assert result.code == 0, result.err
    assert db.execute("SELECT serial, collector_id FROM meters ORDER BY serial").fetchall() == [
        ("SDM-0001", "north-1"),
        ("SDM-0002", None),
    ]


@pytest.mark.parametrize(
    ("header", "lines", "expected"),
    [
        pytest.param(
            HEADER.replace(",province", ""),
            [",".join(c for i, c in enumerate(GOOD[0].split(",")) if i != 3)],
            "line 1: missing column(s): province",
            id="missing-column",
        ),
        pytest.param(
            HEADER, [GOOD[0], GOOD[1].replace(",modbus,", ",bacnet,")],
            "line 3, column protocol: 'bacnet' is not modbus or mqtt",
            id="bad-protocol",
        ),
        pytest.param(
            HEADER, [GOOD[0], GOOD[1], GOOD[2], GOOD[1].replace("SDM-0002", "SDM-0003").replace(",2,40", ",0,40")],
            "line 5, column unit_id: 0 is outside 1–247",
            id="unit-id-0",
        ),
        pytest.param(
            HEADER, [GOOD[0], GOOD[2].replace("TAS-0001", "SDM-0001")],
            "line 3, column meter_serial: 'SDM-0001' is already on line 2",
            id="duplicate-serial-other-customer",
        ),
        pytest.param(
            HEADER, [GOOD[0], GOOD[1].replace(",10,SDM", ",31,SDM")],
            "line 3, column reading_day: 31 is outside 1–28",
            id="bad-reading-day",
        ),
        pytest.param(
            HEADER, [GOOD[0].replace("PB01010012345", "PB0101")],
            "line 2, column customer_code: 'PB0101' is not an EVN customer code",
            id="bad-customer-code",
        ),
        pytest.param(
            HEADER, [GOOD[0], GOOD[1].replace(",5020,2,", ",5020,1,")],
            "line 3, column unit_id: 127.0.0.1:5020 unit 1 is already used on line 2",
            id="same-bus-address",
        ),
        pytest.param(
            HEADER + ",colour", [GOOD[0] + ",red"],
            "line 1: unknown column(s): 'colour'",
            id="unknown-column",
        ),
        pytest.param(HEADER, [], "has a header but no meters", id="no-rows"),
    ],
)  # fmt: skip
def test_bad_file_is_rejected_whole(
    doxa,
    db_url: str,
    db: psycopg.Connection,
    tmp_path: Path,
    header: str,
    lines: list[str],
    expected: str,
) -> None:
    result = doxa(
        "meters", "import", write_csv(tmp_path, lines, header), env={"DOXA_DATABASE_URL": db_url}
    )
    assert result.code == 2
    assert expected in result.err
    assert "Traceback" not in result.err
    assert counts(db) == (0, 0)


def test_serial_owned_by_another_customer_in_the_database(
    doxa, db_url: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    env = {"DOXA_DATABASE_URL": db_url}
    assert doxa("meters", "import", write_csv(tmp_path, GOOD), env=env).code == 0
    moved = GOOD[2].replace("PK02030000123", "PK02030000999")
    result = doxa("meters", "import", write_csv(tmp_path, [GOOD[0], moved]), env=env)
    assert result.code == 2
    assert (
        "line 3, column meter_serial: meter TAS-0001 belongs to customer PK02030000123"
        in result.err
    )
    assert counts(db) == (3, 3)


def test_unreadable_and_non_utf8_files(doxa, db_url: str, tmp_path: Path) -> None:
    env = {"DOXA_DATABASE_URL": db_url}
    missing = doxa("meters", "import", tmp_path / "nope.csv", env=env)
    assert missing.code == 2 and "cannot read" in missing.err
    latin = tmp_path / "latin1.csv"
    latin.write_bytes((HEADER + "\n" + GOOD[0] + "\n").encode("utf-8") + "Đ\n".encode("cp1258"))
    result = doxa("meters", "import", latin, env=env)
    assert result.code == 2
    assert "line 3 is not UTF-8" in result.err


def test_import_from_stdin(db_url: str, db: psycopg.Connection) -> None:
    import subprocess
    import sys

    doxa_bin = Path(sys.executable).with_name("doxa")
    text = "\n".join([HEADER, *GOOD]) + "\n"
    result = subprocess.run(
        [doxa_bin, "meters", "import", "-"],
        input=text.encode(),
        env={"DOXA_DATABASE_URL": db_url, "PATH": "/usr/bin:/bin"},
        capture_output=True,
    )
    assert result.returncode == 0, result.stderr
    assert counts(db) == (3, 3)
