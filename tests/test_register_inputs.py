"""``schema.register_inputs``, the one query module of the metering rules, against a real
TimescaleDB: its SQL test for register steps is a superset of the Python rule that decides, a
batch of meters gives what each meter alone gives, values that are not finite are never read,
and the Python-made export rows write numbers as PostgreSQL does."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from doxa.errors import NoClosing
from exports import _pg_float
from metering.register import Point, Register, is_drop, is_glitch
from schema.register_inputs import _BREAKS, registers

pytestmark = pytest.mark.db
ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
T0 = datetime(2025, 6, 1, tzinfo=ZONE)


def add_meter(db: psycopg.Connection, serial: str) -> int:
    customer = db.execute(
        "INSERT INTO customers (code, name, reading_day) VALUES (%s, 'x', 1)"
        " ON CONFLICT (code) DO UPDATE SET name = 'x' RETURNING id",
        ("PB0101" + str(abs(hash(serial)) % 10**7).zfill(7),),
    ).fetchone()
    assert customer is not None
    row = db.execute(
        "INSERT INTO meters (serial, customer_id, protocol) VALUES (%s, %s, 'mqtt') RETURNING id",
        (serial, customer[0]),
    ).fetchone()
    assert row is not None
    return int(row[0])


def add(db: psycopg.Connection, meter_id: int, rows: list[tuple[datetime, float]]) -> None:
    with db.cursor() as cur:
        cur.executemany(
            "INSERT INTO readings (meter_id, ts, energy_import_kwh, source)"
            " VALUES (%s, %s, %s, 'backfill') ON CONFLICT DO NOTHING",
            [(meter_id, ts, kwh) for ts, kwh in rows],
        )


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    before=st.floats(0, 1e6),
    change=st.one_of(
        st.floats(-2e6, 2e6), st.sampled_from([-1.0, 1000.0, 1000.0 * 3601 / 3600, 0.2778])
    ),
    seconds=st.one_of(st.integers(1, 400_000), st.sampled_from([1, 3600, 3601, 7200])),
)
def test_the_sql_step_test_is_a_superset_of_the_rule(
    db: psycopg.Connection, before: float, change: float, seconds: int
) -> None:
    """Every pair the Python rule calls a drop or a glitch is fetched by the SQL (which may
    fetch a few more, judged then in Python)."""
    db.execute("TRUNCATE readings")
    meter = db.execute("SELECT id FROM meters WHERE serial = 'STEP'").fetchone()
    meter_id = meter[0] if meter else add_meter(db, "STEP")
    a, b = Point(T0, before), Point(T0 + timedelta(seconds=seconds), before + change)
    add(db, meter_id, [(a.ts, float(a.kwh)), (b.ts, float(b.kwh))])
    rows = db.execute(
        _BREAKS,
        {
            "meter": [meter_id],
            "lo": [a.ts],
            "hi": [b.ts],
            "low": a.ts,
            "high": b.ts,
            "noise": 1.0,
            "max_kw": 1000.0,
            "slack": 1 - 1e-9,
        },
    ).fetchall()
    if is_drop(a, b) or is_glitch(a, b):
        assert [r[0] for r in rows] == ["step"]


def use(register: Register, instants: list[datetime]) -> object:
    try:
        return register.between(instants[0], instants[-1])
    except NoClosing as exc:
        return str(exc)


def test_a_batch_gives_what_each_meter_alone_gives(db: psycopg.Connection) -> None:
    h = timedelta(hours=1)
    ids = [add_meter(db, f"B-{k}") for k in range(5)]
    for k, meter_id in enumerate(ids):
        add(db, meter_id, [(T0 + i * (k + 1) * h, 100.0 * k + 0.37 * i) for i in range(60)])
    add(db, ids[2], [(T0 + 70 * h, 1.0), (T0 + 71 * h, 2.0)])  # a reset on one meter
    db.execute(
        "INSERT INTO meter_resets (meter_id, ts, new_start_kwh) VALUES (%s, %s, 0)",
        (ids[3], T0 + 100.5 * h),
    )
    wanted = {m: [T0 + 7.5 * h, T0 + (20 + k) * h, T0 + 72 * h] for k, m in enumerate(ids)}
    together = registers(db, wanted)
    for meter_id, instants in wanted.items():
        alone = registers(db, {meter_id: instants})[meter_id]
        for at in instants:
            assert together[meter_id].index_at(at) == alone.index_at(at)
        assert use(together[meter_id], instants) == use(alone, instants)
    assert len(together[ids[2]].stretches) == 2  # the reset was found in the batch


def test_values_that_are_not_finite_are_never_read(db: psycopg.Connection) -> None:
    meter_id = add_meter(db, "INF")
    h = timedelta(hours=1)
    add(db, meter_id, [(T0, 10.0), (T0 + h, math.inf), (T0 + 2 * h, math.nan), (T0 + 3 * h, 13.0)])
    register = registers(db, {meter_id: [T0 + 1.5 * h]})[meter_id]
    index = register.index_at(T0 + 1.5 * h)
    assert index.before == Point(T0, 10.0) and index.after == Point(T0 + 3 * h, 13.0)
    assert str(index.kwh) == "11.500" and index.estimated  # 3 h between the finite readings


@pytest.mark.parametrize(
    "value",
    [100.0, 7.0, 0.0, -0.0, 1234.56, 0.1 + 0.2, 1.5e-05, 0.0001, 1e15, 1.2345e15, 9.99e15,
     1e16, -3.25e17, 1.7e308, 5e-324, 123456789012345.6],
)  # fmt: skip
def test_python_rows_write_floats_as_postgresql_does(db: psycopg.Connection, value: float) -> None:
    db.execute("SET extra_float_digits = 1")
    row = db.execute("SELECT %s::float8::text", (value,)).fetchone()
    assert row is not None and _pg_float(value) == row[0]
