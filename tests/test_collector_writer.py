"""The collector's write path: idempotent, rejections recorded with reasons, never blocked."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from test_collector_support import count, import_mqtt_meters, stored

from collector.units import Unit
from collector.writer import DatabaseUnavailable, Writer
from doxa.services._proc import free_port
from protocols.reading import Reading

pytestmark = pytest.mark.db

T0 = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)


def reading(serial: str, minute: int, energy: float) -> Reading:
    return Reading(serial, T0 + timedelta(minutes=minute), energy, 0.0, 850.0, 229.8, 3.9, 50.0)


def mqtt(*readings: Reading, serial: str | None = None) -> Unit:
    serial = serial or readings[0].serial
    return Unit("mqtt", readings, f"doxa/meters/{serial}/reading", serial, b"{...}")


def modbus(r: Reading) -> Unit:
    return Unit("modbus", (r,), serial=r.serial)


def test_both_sources_are_stored_once_and_meter_status_moves_forward(
    db_url: str, db: psycopg.Connection
) -> None:
    import_mqtt_meters(db_url, ["A1", "B2"])
    writer = Writer(db_url, "c1")
    first = writer.write(
        [
            mqtt(reading("A1", 0, 10.0), reading("A1", 15, 10.5)),  # an array message
            modbus(reading("B2", 0, 20.0)),
            mqtt(reading("A1", 15, 10.5)),  # the same reading again, same batch
        ]
    )
    assert (first.inserted, first.duplicates, first.rejected) == (3, 1, [])
    second = writer.write([mqtt(reading("A1", 0, 10.0)), modbus(reading("B2", 5, 20.1))])
    assert (second.inserted, second.duplicates) == (1, 1)
    writer.close()

    rows = stored(db)
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("A1", T0, 10.0),
        ("A1", T0 + timedelta(minutes=15), 10.5),
        ("B2", T0, 20.0),
        ("B2", T0 + timedelta(minutes=5), 20.1),
    ]
    assert rows[0][3:] == (0.0, 850.0, 229.8, 3.9, 50.0)
    sources = db.execute("SELECT source, count(*) FROM readings GROUP BY 1 ORDER BY 1").fetchall()
    assert sources == [("modbus", 2), ("mqtt", 2)]
    status = dict(
        db.execute(
            "SELECT m.serial, s.last_reading_ts FROM meter_status s JOIN meters m ON m.id = s.meter_id"
        ).fetchall()
    )
    assert status == {"A1": T0 + timedelta(minutes=15), "B2": T0 + timedelta(minutes=5)}

    # An older reading arriving late (catch-up) is stored but does not move the status back.
    late = Writer(db_url, "c1")
    late.write([mqtt(reading("A1", -60, 9.0))])
    late.close()
    assert count(db, "SELECT count(*) FROM readings") == 5
    assert db.execute(
        "SELECT last_reading_ts FROM meter_status s JOIN meters m ON m.id = s.meter_id"
        " WHERE m.serial = 'A1'"
    ).fetchone() == (T0 + timedelta(minutes=15),)


def test_unknown_serials_and_bad_payloads_are_rejected_with_reasons_without_blocking(
    db_url: str, db: psycopg.Connection
) -> None:
    import_mqtt_meters(db_url, ["A1"])
    writer = Writer(db_url, "c7")
    result = writer.write(
        [
            mqtt(reading("A1", 0, 10.0)),
            mqtt(reading("NOPE-9", 0, 1.0)),
            Unit(
                "mqtt",
                (),
                "tele/T5/SENSOR",
                "T5",
                b"not json\x00",
                "the payload is not valid JSON\x00",
            ),
            mqtt(reading("A1", 1, 10.1)),
        ]
    )
    writer.close()
    assert result.inserted == 2
    assert sorted(reason for _source, reason in result.rejected) == [
        "the payload is not valid JSON\x00",
        "unknown meter serial 'NOPE-9'",
    ]
    rejected = db.execute(
        "SELECT collector_id, source, topic, meter_serial, reason, payload FROM rejected_messages"
        " ORDER BY meter_serial"
    ).fetchall()
    assert rejected == [
        (
            "c7",
            "mqtt",
            "doxa/meters/NOPE-9/reading",
            "NOPE-9",
            "unknown meter serial 'NOPE-9'",
            b"{...}",
        ),
        ("c7", "mqtt", "tele/T5/SENSOR", "T5", "the payload is not valid JSON\\0", b"not json\x00"),
    ]
    assert [r[:3] for r in stored(db)] == [
        ("A1", T0, 10.0),
        ("A1", T0 + timedelta(minutes=1), 10.1),
    ]


def test_a_unit_the_database_refuses_is_rejected_alone(db_url: str, db: psycopg.Connection) -> None:
    import_mqtt_meters(db_url, ["A1", "B2"])
    # A rule of this test's database that one reading breaks (no parser would let it through,
    # and within the intake bounds: 2e9 kWh is refused before the database since issue 20).
    db.execute(
        "ALTER TABLE readings ADD CONSTRAINT below_a_billion CHECK (energy_import_kwh < 1e6)"
    )
    writer = Writer(db_url, "c1")
    result = writer.write(
        [
            modbus(reading("A1", 0, 1.0)),
            mqtt(reading("B2", 5, 2e6)),
            modbus(reading("B2", 0, 2.0)),
            mqtt(Reading("B2\x00", T0, 1.0), serial="B2\x00"),  # text PostgreSQL cannot hold
        ]
    )
    writer.close()
    assert result.inserted == 2
    reasons = sorted(r for _s, r in result.rejected)
    assert len(reasons) == 2 and reasons[1] == "unknown meter serial 'B2\\x00'"
    assert any(
        r.startswith("the database refused the reading:") and "below_a_billion" in r
        for r in reasons
    )
    assert [r[:3] for r in stored(db)] == [("A1", T0, 1.0), ("B2", T0, 2.0)]
    assert count(db, "SELECT count(*) FROM rejected_messages WHERE meter_serial = 'B2'") == 1
    assert count(db, "SELECT count(*) FROM rejected_messages WHERE meter_serial = 'B2\\0'") == 1


def test_a_batch_with_readings_already_stored_takes_the_idempotent_path(
    db_url: str, db: psycopg.Connection
) -> None:
    import_mqtt_meters(db_url, ["A1"])
    writer = Writer(db_url, "c1")
    writer.write([mqtt(reading("A1", m, 10.0 + m)) for m in range(0, 10, 2)])
    # A replay: half of it stored already, half new, one reading twice in the batch.
    again = writer.write(
        [mqtt(reading("A1", m, 10.0 + m)) for m in range(10)] + [mqtt(reading("A1", 9, 19.0))]
    )
    writer.close()
    assert (again.inserted, again.duplicates) == (5, 6)
    assert [r[2] for r in stored(db)] == [10.0 + m for m in range(10)]


def test_an_unreachable_database_raises_database_unavailable() -> None:
    writer = Writer(f"postgresql://doxa@127.0.0.1:{free_port()}/doxa", "c1", connect_timeout=1)
    with pytest.raises(DatabaseUnavailable):
        writer.write([modbus(reading("A1", 0, 1.0))])


def test_meter_status_is_upserted_at_most_once_an_interval_and_on_close(
    db_url: str, db: psycopg.Connection
) -> None:
    import_mqtt_meters(db_url, ["A1", "B2"])
    writer = Writer(db_url, "c1", status_interval=3600)

    def status() -> dict[str, datetime]:
        return dict(
            db.execute(
                "SELECT m.serial, s.last_reading_ts FROM meter_status s"
                " JOIN meters m ON m.id = s.meter_id"
            ).fetchall()
        )

    writer.write([mqtt(reading("A1", 0, 10.0))])  # the first batch always carries it
    assert status() == {"A1": T0}
    writer.write([mqtt(reading("A1", 15, 10.5)), modbus(reading("B2", 5, 20.1))])
    assert status() == {"A1": T0}  # within the interval: the readings are in, the status waits
    assert count(db, "SELECT count(*) FROM readings") == 3
    writer.close()  # a stopping collector writes what is left
    assert status() == {"A1": T0 + timedelta(minutes=15), "B2": T0 + timedelta(minutes=5)}
