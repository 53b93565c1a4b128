"""``doxa outages add|list|cancel|notices`` against a real database (contract §13)."""

from __future__ import annotations

import csv
import io

import pytest
from test_staff_helpers import add_customer

pytestmark = pytest.mark.db


def test_add_list_cancel(db, db_url, doxa) -> None:
    env = {"DOXA_DATABASE_URL": db_url}
    add_customer(db, "PB0101000001", province="Bình Dương")
    add_customer(db, "PB0102000001", province="Bình Dương")
    add_customer(db, "PB0303000001", province="Đồng Nai")
    r = doxa(
        "outages", "add", "--province", "Bình Dương", "--customer-prefix", "pb0101",
        "--start", "2030-12-05T08:00", "--end", "2030-12-05T16:00+07:00",
        "--reason", "Bảo trì <lưới>, \"đường dây\" 22kV", env=env,
    )  # fmt: skip
    assert (r.code, r.out.strip(), r.err) == (0, "added outage 1 (covers 1 customers)", "")
    r = doxa(
        "outages", "add", "--province", "Đồng Nai", "--customer", "PB0303000001",
        "--start", "2030-12-06T01:00Z", "--end", "2030-12-06T03:00Z", "--reason", "Thay cáp",
        env=env,
    )  # fmt: skip
    assert r.code == 0, r.err
    # One in the past, as if entered long ago: its state is derived from the time.
    db.execute(
        "INSERT INTO planned_outages (province, starts_at, ends_at, reason, created_by,"
        " updated_by) VALUES ('Đồng Nai', '2020-01-01T08:00+07', '2020-01-01T09:00+07', 'cũ',"
        " 't', 't')"
    )

    r = doxa("outages", "list", env=env)
    rows = list(csv.reader(io.StringIO(r.out)))
    assert rows == [
        ["id", "province", "customer_prefix", "start", "end", "reason", "state", "customer_codes"],
        ["2", "Đồng Nai", "", "2030-12-06T08:00:00+07:00", "2030-12-06T10:00:00+07:00",
         "Thay cáp", "planned", "PB0303000001"],
        ["1", "Bình Dương", "PB0101", "2030-12-05T08:00:00+07:00", "2030-12-05T16:00:00+07:00",
         'Bảo trì <lưới>, "đường dây" 22kV', "planned", ""],
        ["3", "Đồng Nai", "", "2020-01-01T08:00:00+07:00", "2020-01-01T09:00:00+07:00", "cũ",
         "ended", ""],
    ]  # fmt: skip
    r = doxa("outages", "list", "--province", "Bình Dương", env=env)
    assert [row[0] for row in csv.reader(io.StringIO(r.out))] == ["id", "1"]

    r = doxa("outages", "cancel", "1", "--note", "Hoãn", env=env)
    assert (r.code, r.out.strip()) == (0, "cancelled outage 1")
    r = doxa("outages", "list", "--province", "Bình Dương", env=env)
    assert list(csv.reader(io.StringIO(r.out)))[1][6] == "cancelled"
    assert db.execute(
        "SELECT actor, action FROM audit_log WHERE action LIKE 'outage.%' ORDER BY id"
    ).fetchall() == [("cli", "outage.add"), ("cli", "outage.add"), ("cli", "outage.cancel")]
    r = doxa("outages", "notices", env=env)
    assert r.out.splitlines() == ["outage_id,outage_version,customer_code,kind"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--province", "Hà Giang"], "no customers in province Hà Giang"),
        (["--province", "Bình Dương", "--start", "soon"], "not an ISO 8601 time"),
        (["--province", "Bình Dương", "--end", "2030-12-05T07:00"], "end must be after the start"),
        (["--province", "Bình Dương", "--customer-prefix", "PB-1"], "letters and digits"),
        (["--province", "Bình Dương", "--customer", "PB0999000001"], "no customer PB0999000001"),
        (["--province", "Bình Dương", "--reason", "x" * 501], "at most 500 characters"),
        (["--province", "Bình Dương", "--reason", "   "], "required"),
        (
            [
                "--province",
                "Bình Dương",
                "--start",
                "2020-01-01T00:00",
                "--end",
                "2020-01-02T00:00",
            ],
            "already ended",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(db, db_url, doxa, args, message) -> None:  # type: ignore[no-untyped-def]
    add_customer(db, "PB0101000001", province="Bình Dương")
    base = {"--start": "2030-12-05T08:00", "--end": "2030-12-05T16:00", "--reason": "Bảo trì"}
    given = dict(zip(args[::2], args[1::2], strict=True))
    options = [x for k, v in {**base, **given}.items() for x in (k, v) if k != "--customer"]
    if "--customer" in given:
        options += ["--customer", given["--customer"]]
    r = doxa("outages", "add", *options, env={"DOXA_DATABASE_URL": db_url})
    assert r.code == 2
    assert r.err.count("\n") == 1 and message in r.err, r.err
    assert db.execute("SELECT count(*) FROM planned_outages").fetchone() == (0,)


def test_cancel_unknown_is_bad_input(db_url, doxa) -> None:
    r = doxa("outages", "cancel", "99", "--note", "x", env={"DOXA_DATABASE_URL": db_url})
    assert r.code == 2 and "no outage 99" in r.err
