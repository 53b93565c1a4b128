"""Validation (contract §12) on a simulated fleet whose truth is known: every fault injected
through the simulators is found by its rule, and nothing is flagged on the clean meters
(precision and recall printed); re-running is idempotent, and an exception that no longer
applies closes itself."""

from __future__ import annotations

from datetime import date, timedelta

import psycopg
import pytest

from simulators.modbus import ModbusFleet
from tests.vee_fleet import HCM, insert_fleet, insert_history, local
from vee import rules
from vee.validate import validate_range

pytestmark = pytest.mark.db

FROM, TO = date(2026, 11, 1), date(2026, 11, 7)
NOW = local(2026, 11, 8, 0.5)


def _exceptions(db: psycopg.Connection, state: str | None = None) -> list[tuple]:
    return db.execute(
        "SELECT m.serial, e.rule, e.state, e.reason, e.id, e.severity FROM reading_exceptions e"
        " JOIN meters m ON m.id = e.meter_id WHERE %(s)s::text IS NULL OR e.state = %(s)s"
        " ORDER BY m.serial, e.rule",
        {"s": state},
    ).fetchall()


def _faulty_fleet(db: psycopg.Connection) -> tuple[ModbusFleet, dict[str, int], set]:
    fleet = ModbusFleet(meters=24, gateways=1, seed=14, models=("sdm120", "sdm630"))
    s = [m.serial for m in fleet.meters]  # even positions sdm120, odd sdm630
    expected = {
        (s[0], rules.ROLLBACK),
        (s[2], rules.SPIKE),
        (s[4], rules.ZERO_USE),
        (s[6], rules.GAP),
        (s[8], rules.HIGH_USE),
        (s[10], rules.LOW_USE),
        (s[12], rules.FUTURE),
        (s[14], rules.MULTIPLIER),
        (s[3], rules.SPIKE),
    }
    fleet.inject_rollback(s[0], local(2026, 11, 3, 10.2), 5.0)
    fleet.inject_spike(s[2], local(2026, 11, 4, 19.2), 30.0)  # an SDM120 counts ≤ 11.5 kWh/30 min
    fleet.inject_spike(s[3], local(2026, 11, 2, 7.2), 80.0)  # an SDM630 ≤ 34.5 kWh/30 min
    fleet.inject_stuck(s[4], local(2026, 11, 3), local(2026, 11, 6))  # 3 days
    fleet.inject_gap(s[6], local(2026, 11, 4, 8), local(2026, 11, 4, 14))
    fleet.scale_use(s[8], local(2026, 11, 5), local(2026, 11, 6), 6.0)
    fleet.scale_use(s[10], local(2026, 11, 6), local(2026, 11, 7), 0.1)
    # A replacement recorded in meter_resets is not a rollback (s[16] stays clean).
    fleet.reset_register(s[16], local(2026, 11, 3, 12.2))
    ids = insert_fleet(db, fleet)
    insert_history(
        db,
        fleet,
        ids,
        local(2026, 9, 1),
        local(2026, 11, 8, 1),
        received_late=[(s[12], local(2026, 11, 7, 12), timedelta(hours=1))],
    )
    db.execute(
        "INSERT INTO meter_resets (meter_id, ts, new_start_kwh, note) VALUES (%s, %s, 0, 'new')",
        (ids[s[16]], local(2026, 11, 3, 12.2)),
    )
    # Multiplier changes: one between two readings, one with a reading two minutes from it.
    db.execute(
        "INSERT INTO meter_multiplier_changes VALUES (%s, %s, 1, 40), (%s, %s, 1, 2)",
        (ids[s[14]], local(2026, 11, 5, 10.2), ids[s[18]], local(2026, 11, 5, 10 + 2 / 60)),
    )
    return fleet, ids, expected


def test_every_injected_fault_is_found_and_clean_meters_are_not_flagged(
    db: psycopg.Connection,
) -> None:
    fleet, ids, expected = _faulty_fleet(db)
    counts = validate_range(db, FROM, TO, NOW, HCM)
    found = {(serial, rule) for serial, rule, *_ in _exceptions(db)}
    hits = found & expected
    precision = len(hits) / len(found) if found else 0.0
    recall = len(hits) / len(expected)
    print(
        f"\nvalidation on {len(ids)} simulated meters × 68 days: {len(expected)} faults"
        f" injected, {len(found)} exceptions; precision {precision:.0%}, recall {recall:.0%}"
    )
    print(counts.summary())
    assert found - expected == set(), "flagged without an injected fault"
    assert expected - found == set(), "an injected fault was not found"
    assert precision == recall == 1.0
    assert counts.opened == len(expected)

    reasons = {(serial, rule): reason for serial, rule, _, reason, *_ in _exceptions(db)}
    s = [m.serial for m in fleet.meters]
    assert (
        "above the 23.0 kW a sdm120 can count (100 A × 230 V × 1 phase)" in reasons[(s[2], "spike")]
    )
    assert "69.0 kW a sdm630" in reasons[(s[3], "spike")]
    assert "with no replacement recorded" in reasons[(s[0], "rollback")]
    assert "(3 days)" in reasons[(s[4], "zero_use")]
    assert "between 2026-11-04 07:30 and 2026-11-04 14:00" in reasons[(s[6], "gap")]
    assert "12 readings missing" in reasons[(s[6], "gap")]
    assert "average of the 8 previous Thursdays" in reasons[(s[8], "high_use")]
    assert "60 minutes after the reading arrived" in reasons[(s[12], "future")]
    assert "from 1 to 40" in reasons[(s[14], "multiplier")]
    severities = {rule: sev for _, rule, _, _, _, sev in _exceptions(db)}
    assert severities["rollback"] == "error" and severities["gap"] == "warning"


def test_rerun_is_idempotent_and_exceptions_close_themselves(db: psycopg.Connection) -> None:
    fleet, ids, expected = _faulty_fleet(db)
    validate_range(db, FROM, TO, NOW, HCM)
    first = _exceptions(db)
    again = validate_range(db, FROM, TO, NOW, HCM)
    assert _exceptions(db) == first
    assert (again.opened, again.updated, again.closed) == (0, len(expected), 0)

    s = [m.serial for m in fleet.meters]
    # Staff accept the spike; the future reading is corrected; the gap is filled.
    db.execute(
        "UPDATE reading_exceptions SET state = 'closed', closed_at = now(), closed_by = 'lan',"
        " close_reason = 'checked on site' WHERE rule = 'spike' AND meter_id = %s",
        (ids[s[2]],),
    )
    db.execute(
        "UPDATE readings SET received_at = ts WHERE meter_id = %s AND ts = %s",
        (ids[s[12]], local(2026, 11, 7, 12)),
    )
    for r in fleet.history(s[6], local(2026, 11, 4, 8), local(2026, 11, 4, 14), 1800):
        raise AssertionError(f"the gap served {r}")
    with db.cursor() as cur:
        cur.executemany(
            "INSERT INTO readings (meter_id, ts, energy_import_kwh, source)"
            " VALUES (%s, %s, %s, 'manual')",
            [
                (ids[s[6]], ts, fleet.reading(s[6], ts).energy_import_kwh)
                for ts in (local(2026, 11, 4, 8 + k / 2) for k in range(12))
            ],
        )
    third = validate_range(db, FROM, TO, NOW, HCM)
    states = {(serial, rule): state for serial, rule, state, *_ in _exceptions(db)}
    assert states[(s[2], "spike")] == "closed"  # accepted: stays closed
    assert states[(s[12], "future")] == "closed"
    assert states[(s[6], "gap")] == "closed"
    closed_by = dict(
        db.execute(
            "SELECT m.serial, e.closed_by FROM reading_exceptions e JOIN meters m"
            " ON m.id = e.meter_id WHERE e.state = 'closed'"
        ).fetchall()
    )
    assert closed_by == {s[2]: "lan", s[12]: "validation", s[6]: "validation"}
    assert (third.opened, third.closed) == (0, 2)
    assert len(_exceptions(db)) == len(expected)


def test_a_silent_meter_is_a_gap_up_to_the_clock(db: psycopg.Connection) -> None:
    fleet = ModbusFleet(meters=2, gateways=1, seed=3, models=("sdm120",))
    ids = insert_fleet(db, fleet)
    insert_history(db, fleet, ids, local(2026, 10, 20), local(2026, 11, 5, 9))
    validate_range(db, date(2026, 11, 5), date(2026, 11, 5), local(2026, 11, 5, 15), HCM)
    gaps = db.execute(
        "SELECT count(*), min(reason) FROM reading_exceptions WHERE rule = 'gap'"
    ).fetchone()
    assert gaps is not None and gaps[0] == 2
    assert "No reading since 2026-11-05 08:30 (until 2026-11-05 15:00)" in gaps[1]
    # The next day, still silent: the same exceptions, extended to the new clock.
    validate_range(db, date(2026, 11, 6), date(2026, 11, 6), local(2026, 11, 6, 23), HCM)
    rows = db.execute("SELECT count(*), max(ts_to) FROM reading_exceptions").fetchone()
    assert rows is not None and rows[0] == 2 and rows[1] == local(2026, 11, 6, 23)


def test_multiplier_changes_are_recorded_by_the_inventory(db: psycopg.Connection) -> None:
    fleet = ModbusFleet(meters=1, gateways=1, seed=3, models=("sdm120",))
    ids = insert_fleet(db, fleet)
    db.execute("UPDATE meters SET multiplier = 40 WHERE id = %s", (ids[fleet.meters[0].serial],))
    db.execute("UPDATE meters SET model = 'sdm120'")  # no multiplier change: nothing recorded
    rows = db.execute(
        "SELECT old_multiplier::float8, new_multiplier::float8 FROM meter_multiplier_changes"
    ).fetchall()
    assert rows == [(1.0, 40.0)]
