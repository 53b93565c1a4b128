"""Estimation and editing (contract §12) against the simulator's truth and a real database:
estimates meet both real readings, are never written over an actual reading, and their error is
reported; edits keep every version (``doxa export readings --history``) and the audit log; a
bill resting on an estimated or edited boundary is estimated."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import date, timedelta
from decimal import Decimal

import psycopg
import pytest

from billing.periods import Period
from billing.run import run_bills
from metering.register import Point
from simulators.modbus import ModbusFleet
from tests.vee_fleet import HCM, insert_fleet, insert_history, local
from vee.estimate import estimate_gap, linear, slots
from vee.store import edit_reading, estimate_range, versions

pytestmark = pytest.mark.db

NOW = local(2026, 11, 20)


def _readings(db: psycopg.Connection, meter_id: int, lo, hi) -> list[tuple]:
    return db.execute(
        "SELECT ts, energy_import_kwh, quality FROM readings WHERE meter_id = %s AND ts >= %s"
        " AND ts <= %s ORDER BY ts",
        (meter_id, lo, hi),
    ).fetchall()


def test_estimates_meet_both_ends_and_their_error_is_reported(db: psycopg.Connection) -> None:
    fleet = ModbusFleet(meters=1, gateways=1, seed=21, models=("sdm120",))
    serial = fleet.meters[0].serial
    long_gap = (local(2026, 11, 5, 6), local(2026, 11, 5, 20))  # 14 h: from the profile
    short_gap = (local(2026, 11, 6, 10), local(2026, 11, 6, 10.5))  # one reading: linear
    fleet.inject_gap(serial, *long_gap)
    fleet.inject_gap(serial, *short_gap)
    ids = insert_fleet(db, fleet)
    meter_id = ids[serial]
    insert_history(db, fleet, ids, local(2026, 10, 1), local(2026, 11, 10))
    before_count = db.execute("SELECT count(*) FROM readings").fetchone()

    report = estimate_range(db, date(2026, 11, 1), date(2026, 11, 7), HCM, "cli", NOW)
    assert report.gaps == 2 and report.rows == 28 + 1
    assert dict(report.methods) == {"profile": 28, "linear": 1}

    rows = _readings(db, meter_id, long_gap[0] - timedelta(minutes=30), long_gap[1])
    first, *inside, last = rows
    assert (first[2], last[2]) == ("actual", "actual")
    assert [q for _, _, q in inside] == ["estimated"] * 28
    values = [Decimal(str(kwh)) for _, kwh, _ in rows]
    assert values == sorted(values), "the estimate climbs from one real reading to the other"
    assert first[1] < inside[0][1] and inside[-1][1] < last[1]
    # Both ends exactly: the real readings are untouched, and the estimate's use adds up to
    # theirs (the last estimated interval ends on the real reading).
    assert first[1] == fleet.reading(serial, first[0]).energy_import_kwh
    assert last[1] == fleet.reading(serial, last[0]).energy_import_kwh

    truth = [fleet.reading(serial, ts).energy_import_kwh for ts, _, _ in inside]
    errors = [abs(kwh - t) for (_, kwh, _), t in zip(inside, truth, strict=True)]
    used = last[1] - first[1]
    before, after = Point(first[0], first[1]), Point(last[0], last[1])
    straight = linear(before, after, [ts for ts, _, _ in inside])
    straight_errors = [abs(float(v) - t) for v, t in zip(straight, truth, strict=True)]
    print(
        f"\nprofile estimate of a {len(inside)}-reading gap ({used:.3f} kWh used): max register"
        f" error {max(errors):.3f} kWh ({max(errors) / used:.1%} of the gap's use), mean"
        f" {sum(errors) / len(errors):.3f} kWh; a straight line: max {max(straight_errors):.3f}"
        f" kWh"
    )
    assert max(errors) < 0.15 * used
    assert max(errors) < max(straight_errors)

    ((ts, kwh, quality),) = [r for r in _readings(db, meter_id, *short_gap) if r[0] == short_gap[0]]
    prev = fleet.reading(serial, short_gap[0] - timedelta(minutes=30)).energy_import_kwh
    nxt = fleet.reading(serial, short_gap[1]).energy_import_kwh
    assert quality == "estimated"
    assert (
        Decimal(str(kwh))
        == linear(
            Point(short_gap[0] - timedelta(minutes=30), prev), Point(short_gap[1], nxt), [ts]
        )[0]
    )

    # Again: nothing left to fill, nothing written over.
    again = estimate_range(db, date(2026, 11, 1), date(2026, 11, 7), HCM, "cli", NOW)
    assert (again.gaps, again.rows) == (0, 0)
    after_count = db.execute("SELECT count(*) FROM readings").fetchone()
    assert before_count and after_count and after_count[0] == before_count[0] + 29
    v = versions(db, meter_id, inside[0][0])
    assert [(x.version, x.quality, x.actor) for x in v] == [(1, "estimated", "cli")]
    assert "estimated (profile) between the readings of 2026-11-05 05:30" in v[0].reason
    entry = db.execute(
        "SELECT actor, row_count, detail->>'gaps' FROM audit_log WHERE action ="
        " 'readings.estimate' ORDER BY id LIMIT 1"
    ).fetchone()
    assert entry == ("cli", 29, "2")


def test_the_pure_estimate_meets_both_ends_exactly() -> None:
    t0, t1 = local(2026, 11, 5, 6), local(2026, 11, 5, 20)
    before, after = Point(t0, 1000.0), Point(t1, 1012.345)
    at = slots(t0, t1, 1800)
    assert len(at) == 27 and at[0] == local(2026, 11, 5, 6.5)
    # A history whose use is all in the evening (the intervals ending 18:00 to 00:00 local): the
    # estimate puts the
    # gap's use there, and still lands on both readings.
    history, kwh = [], 500.0
    for k in range(48 * 21):
        ts = local(2026, 10, 15) + timedelta(minutes=30 * k)
        kwh += 1.0 if ts.astimezone(HCM).hour >= 18 or ts.astimezone(HCM).hour == 0 else 0.0
        history.append(Point(ts, kwh))
    method, values = estimate_gap(
        before, after, at, history, linear_max=timedelta(hours=1), weeks=3,
        max_spacing=timedelta(minutes=45),
    )  # fmt: skip
    assert method == "profile"
    assert len(values) == 27
    evening = at.index(local(2026, 11, 5, 17.5))
    assert values[: evening + 1] == [Decimal("1000.000")] * (evening + 1)  # nothing used by day
    # 17:30–20:00 is five intervals of equal use: 12.345 / 5 = 2.469 each.
    assert values[evening + 1 :] == [
        Decimal("1002.469"), Decimal("1004.938"), Decimal("1007.407"), Decimal("1009.876")
    ]  # fmt: skip
    method, values = estimate_gap(
        before, after, at, [], linear_max=timedelta(hours=1), weeks=3,
        max_spacing=timedelta(minutes=45),
    )  # fmt: skip
    assert method == "linear"  # no history
    assert values[13] == Decimal("1006.173")  # 1000 + 12.345 × 14/28 = 1006.1725, half up


def _meter_with_readings(db: psycopg.Connection, code: str, serial: str) -> int:
    row = db.execute(
        "INSERT INTO customers (code, name, province, reading_day) VALUES (%s, 'A', 'Long An', 15)"
        " RETURNING id",
        (code,),
    ).fetchone()
    assert row
    meter = db.execute(
        "INSERT INTO meters (serial, customer_id, protocol) VALUES (%s, %s, 'mqtt') RETURNING id",
        (serial, row[0]),
    ).fetchone()
    assert meter
    db.execute(
        "INSERT INTO readings (meter_id, ts, energy_import_kwh, source, received_at)"
        " SELECT %s, g, 1000 + extract(epoch FROM g - %s) / 3600 * 0.5, 'mqtt', g"
        " FROM generate_series(%s::timestamptz, %s::timestamptz, interval '30 minutes') g",
        (meter[0], local(2026, 10, 10), local(2026, 10, 10), local(2026, 11, 20)),
    )
    return int(meter[0])


def test_edit_keeps_every_version_and_the_export_shows_them(
    db: psycopg.Connection, db_url: str, doxa: Callable, tmp_path
) -> None:
    meter_id = _meter_with_readings(db, "PB01010000001", "MQ-1")
    env = {"DOXA_DATABASE_URL": db_url}
    at = "2026-11-03T10:30+07:00"
    original = db.execute(
        "SELECT energy_import_kwh FROM readings WHERE meter_id = %s AND ts = %s",
        (meter_id, local(2026, 11, 3, 10.5)),
    ).fetchone()
    assert original
    result = doxa("readings", "edit", "MQ-1", "--ts", at, "--kwh", "1300.5", "--reason",
                  "photo of the display", env=env)  # fmt: skip
    assert result.code == 0, result.err
    assert f"{original[0]:g} kWh → 1300.5 kWh (version 2)" in result.out
    result = doxa("readings", "edit", "MQ-1", "--ts", "2026-11-03T10:30", "--kwh", "1300.25",
                  "--reason", "second look", env=env)  # fmt: skip
    assert result.code == 0, result.err
    assert "(version 3)" in result.out

    result = doxa("export", "readings", "--from", "2026-11-03", "--to", "2026-11-03",
                  "--history", env=env)  # fmt: skip
    assert result.code == 0, result.err
    rows = list(csv.DictReader(io.StringIO(result.out)))
    assert list(rows[0]) == [
        "meter_serial", "customer_code", "ts", "energy_import_kwh", "energy_export_kwh",
        "power_w", "voltage_v", "current_a", "quality", "version", "actor", "changed_at",
        "reason",
    ]  # fmt: skip
    edited = [r for r in rows if r["ts"] == "2026-11-03T10:30:00+07:00"]
    assert [(r["version"], r["energy_import_kwh"], r["quality"], r["actor"], r["reason"])
            for r in edited] == [
        ("1", f"{original[0]:g}", "actual", "mqtt", "as received"),
        ("2", "1300.5", "edited", "cli", "photo of the display"),
        ("3", "1300.25", "edited", "cli", "second look"),
    ]  # fmt: skip
    assert len(rows) == 48 + 2  # one row per reading of the day, two more versions
    plain = doxa("export", "readings", "--from", "2026-11-03", "--to", "2026-11-03", env=env)
    assert "1300.25" in plain.out and "1300.5," not in plain.out

    audits = db.execute(
        "SELECT actor, detail->>'before_kwh', detail->>'after_kwh', detail->>'reason'"
        " FROM audit_log WHERE action = 'reading.edit' ORDER BY id"
    ).fetchall()
    assert audits == [
        ("cli", str(original[0]), "1300.5", "photo of the display"),
        ("cli", "1300.5", "1300.25", "second look"),
    ]
    # Bad input: one line, exit 2, nothing written.
    for args, message in (
        (("NOPE", "--ts", at, "--kwh", "1", "--reason", "x"), "unknown meter serial 'NOPE'"),
        (("MQ-1", "--ts", "yesterday", "--kwh", "1", "--reason", "x"), "not an ISO 8601 time"),
        (("MQ-1", "--ts", at, "--kwh", "-1", "--reason", "x"), "at least 0"),
        (("MQ-1", "--ts", at, "--kwh", "nan", "--reason", "x"), "at least 0"),
        (("MQ-1", "--ts", at, "--kwh", "1", "--reason", "  "), "a reason is required"),
    ):
        bad = doxa("readings", "edit", *args, env=env)
        assert bad.code == 2 and message in bad.err and len(bad.err.splitlines()) == 1, bad.err
    count = db.execute("SELECT count(*) FROM reading_versions").fetchone()
    assert count == (3,)


def test_a_bill_on_an_estimated_or_edited_boundary_is_estimated(db: psycopg.Connection) -> None:
    clean = _meter_with_readings(db, "PB01010000001", "MQ-CLEAN")
    edited = _meter_with_readings(db, "PB01010000002", "MQ-EDIT")
    estimated = _meter_with_readings(db, "PB01010000003", "MQ-EST")
    # The period 2026-11 runs from 2026-10-15 00:00 to 2026-11-15 00:00 (reading day 15).
    edit_reading(db, "MQ-EDIT", local(2026, 11, 15), 1500.0, "meter photo", "lan", NOW)
    db.execute(
        "DELETE FROM readings WHERE meter_id = %s AND ts = %s", (estimated, local(2026, 10, 15))
    )
    report = estimate_range(db, date(2026, 10, 15), date(2026, 10, 15), HCM, "cli", NOW)
    assert report.rows == 1
    run = run_bills(db, Period.parse("2026-11"), HCM)
    assert run.written == 3 and run.estimated == 2
    flags = dict(db.execute("SELECT meter_id, estimated FROM bills").fetchall())
    assert flags == {clean: False, edited: True, estimated: True}
