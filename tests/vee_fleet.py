"""A simulated fleet with known faults for the validation and estimation tests (no tests here):
meters of a :class:`simulators.modbus.ModbusFleet` (never started: its history and truth are
what the tests need), put in the database with their readings every 30 minutes."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg

from simulators.modbus import ModbusFleet

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
STEP = 1800.0


def local(y: int, mo: int, d: int, h: float = 0) -> datetime:
    return datetime(y, mo, d, tzinfo=HCM) + timedelta(hours=h)


def insert_fleet(db: psycopg.Connection, fleet: ModbusFleet) -> dict[str, int]:
    """Customers and meters of ``fleet`` (model, province from its seeded customers); returns
    meter ids by serial."""
    ids: dict[str, int] = {}
    for k, m in enumerate(fleet.meters):
        c = m.customer
        row = db.execute(
            "INSERT INTO customers (code, name, province, reading_day) VALUES (%s, %s, %s, %s)"
            " RETURNING id",
            (c.code, c.name, c.province, c.reading_day),
        ).fetchone()
        assert row
        meter = db.execute(
            "INSERT INTO meters (serial, customer_id, protocol, model, host, port, unit_id)"
            " VALUES (%s, %s, 'modbus', %s, '10.9.0.1', 502, %s) RETURNING id",
            (m.serial, row[0], m.model, k + 1),
        ).fetchone()
        assert meter
        ids[m.serial] = int(meter[0])
    return ids


def insert_history(
    db: psycopg.Connection,
    fleet: ModbusFleet,
    ids: dict[str, int],
    start: datetime,
    end: datetime,
    received_late: Iterable[tuple[str, datetime, timedelta]] = (),
) -> int:
    """Every meter's readings in [start, end) every 30 minutes, received when read (``received
    _late``: (serial, ts, how long *before* ts it arrived), a clock ahead); returns the count."""
    early = {(serial, ts): ahead for serial, ts, ahead in received_late}
    n = 0
    with (
        db.cursor() as cur,
        cur.copy(
            "COPY readings (meter_id, ts, energy_import_kwh, power_w, quality, source,"
            " received_at) FROM STDIN"
        ) as cp,
    ):
        for serial, meter_id in ids.items():
            for r in fleet.history(serial, start, end, STEP):
                received = r.ts - early.get((serial, r.ts), timedelta(0))
                cp.write_row(
                    (meter_id, r.ts, r.energy_import_kwh, r.power_w, "actual", "backfill",
                     received)
                )  # fmt: skip
                n += 1
    return n
