"""Intake bounds at the one write path (collector/intake.py through the Writer, real database):
a model's power rating, the back-fill path's horizon, non-finite numbers; and the JSON API never
sends NaN or Infinity (issue 20, findings 4, 5 and 6)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from flask import Flask
from test_collector_support import HEADER, import_csv, inventory_line, set_installed_at, stored
from test_staff_helpers import add_customer, add_meter, add_readings, app_factory

from collector.intake import IntakeLimits, MeterFacts, RejectionBound, impossible
from collector.units import Unit
from collector.writer import Writer
from protocols.reading import Reading

NOW = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)


def test_the_pure_bounds() -> None:
    limits = IntakeLimits()
    ok = Reading("M", NOW, 10.0, 1.0, 500.0)
    assert impossible(ok, MeterFacts(), limits, received_at=NOW) is None
    nan = Reading("M", NOW, 10.0, power_w=float("nan"))
    assert impossible(nan, MeterFacts(), limits, received_at=NOW) == (
        "power_w is not a finite number"
    )
    inf = Reading("M", NOW, float("inf"))
    assert impossible(inf, MeterFacts(), limits, received_at=NOW) == (
        "energy_import_kwh is not a finite number"
    )
    strong = Reading("M", NOW, 10.0, power_w=14_000.0)
    assert impossible(strong, MeterFacts("sdm630"), limits, received_at=NOW) is None
    assert impossible(strong, MeterFacts("sdm120"), limits, received_at=NOW) == (
        "power_w 14000 is beyond the sdm120 rating (13500 W)"
    )
    old = Reading("M", NOW - timedelta(days=400, seconds=1), 1.0)
    assert "more than 400 days old" in str(impossible(old, MeterFacts(), limits, received_at=NOW))
    assert impossible(old, MeterFacts(), limits, received_at=NOW, backfill=True) is None
    installed = MeterFacts(None, NOW - timedelta(days=1))
    early = Reading("M", NOW - timedelta(days=2), 1.0)
    assert "before the meter was installed" in str(
        impossible(early, installed, limits, received_at=NOW, backfill=True)
    )
    assert (
        impossible(
            Reading("M", datetime(1, 1, 1, tzinfo=UTC), 1.0),
            MeterFacts(),
            IntakeLimits(horizon_days=10**6),
            received_at=NOW,
        )
        is None
    )  # (a horizon beyond year 1 does not overflow)


def test_rejections_are_rate_bound_per_prefix_and_in_all() -> None:
    bound = RejectionBound(IntakeLimits(rejections_per_prefix=3, rejections_total=5))
    got = [bound.admit(p, NOW) for p in ["a", "a", "a", "a", "b", "b", "c", "d"]]
    assert got == [True, True, True, False, True, True, False, False]
    assert bound.newly_suppressed() == ["a", "c", "d"]
    assert bound.newly_suppressed() == []
    assert bound.admit("a", NOW + timedelta(seconds=60))  # a new window


@pytest.mark.db
def test_the_writer_applies_ratings_horizon_and_installation_time(
    db_url: str, db: psycopg.Connection
) -> None:
    import_csv(
        db_url,
        "\n".join(
            [
                HEADER,
                inventory_line("MB-120", 1, "modbus", "sdm120", "10.0.0.1", 502, 1),
                inventory_line("MQ-1", 2),
            ]
        )
        + "\n",
    )
    installed = datetime.now(UTC) - timedelta(days=800)
    set_installed_at(db, "MQ-1", installed)
    now = datetime.now(UTC).replace(microsecond=0)
    writer = Writer(db_url, "bounds")
    try:
        result = writer.write(
            [
                Unit("modbus", (Reading("MB-120", now, 5.0, power_w=20_000.0),), serial="MB-120"),
                Unit("modbus", (Reading("MB-120", now, 5.0, power_w=13_000.0),), serial="MB-120"),
                Unit(
                    "mqtt",
                    (
                        Reading("MQ-1", now - timedelta(minutes=1), 1.0),
                        Reading("MQ-1", now - timedelta(days=500), 0.5),
                    ),
                    "doxa/meters/MQ-1/reading",
                    "MQ-1",
                    b"[...]",
                ),
                # The explicit back-fill path: older than the horizon, after the installation.
                Unit("backfill", (Reading("MQ-1", now - timedelta(days=500), 0.5),)),
                Unit("backfill", (Reading("MQ-1", installed - timedelta(days=1), 0.1),)),
            ]
        )
    finally:
        writer.close()
    assert result.inserted == 2
    reasons = [r for _s, r in result.rejected]
    assert reasons[0] == "power_w 20000 is beyond the sdm120 rating (13500 W)"
    assert reasons[1].startswith("reading 2 of 2: ts ")
    assert reasons[1].endswith(
        "is more than 400 days old (older history goes through `doxa backfill`)"
    )
    assert "before the meter was installed" in reasons[2]
    assert [(s, ts, e) for s, ts, e, *_ in stored(db)] == [
        ("MB-120", now, 5.0),
        ("MQ-1", now - timedelta(days=500), 0.5),
    ]
    rows = db.execute("SELECT source, reason FROM rejected_messages ORDER BY id").fetchall()
    assert [source for source, _ in rows] == ["modbus", "mqtt", "backfill"]


@pytest.fixture
def make_app(db_url: str) -> Iterator[Callable[..., Flask]]:
    yield from app_factory(db_url)


@pytest.mark.db
def test_the_api_never_sends_nan_or_infinity(
    doxa, db_url: str, db: psycopg.Connection, make_app, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """A row stored before intake refused them (or written by hand) still gives valid JSON."""
    meter = add_meter(db, add_customer(db, "PB0101000001"), "NAN-1")
    at = datetime(2026, 5, 1, 3, 0, tzinfo=UTC)
    add_readings(
        db,
        [
            (meter, at, 1.0, float("nan"), float("inf"), float("-inf"), 3.9, "actual", "mqtt"),
            (meter, at + timedelta(minutes=30), 1.5, 0.0, 850.0, 230.0, 3.9, "actual", "mqtt"),
        ],
    )
    monkeypatch.setattr("sys.stdin", io.StringIO("long-enough-pass\n"))
    env = {"DOXA_DATABASE_URL": db_url}
    assert doxa("users", "add", "lan", "--role", "billing", env=env).code == 0
    made = doxa("users", "token", "lan", "--name", "script", env=env)
    assert made.code == 0, made.err
    response = (
        make_app()
        .test_client()
        .get(
            "/api/v1/meters/NAN-1/readings?from=2026-05-01&to=2026-05-01",
            headers={"Authorization": f"Bearer {made.out.strip()}"},
        )
    )
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert "NaN" not in text and "Infinity" not in text
    body = json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in the JSON"))
    first, second = body["readings"]
    assert (first["energy_export_kwh"], first["power_w"], first["voltage_v"]) == (None, None, None)
    assert first["energy_import_kwh"] == 1.0 and second["power_w"] == 850.0


@pytest.mark.db
def test_doxa_backfill_loads_history_beyond_the_horizon_all_or_nothing(
    doxa, db_url: str, db: psycopg.Connection, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    import_csv(db_url, "\n".join([HEADER, inventory_line("BF-1", 1)]) + "\n")
    now = datetime.now(UTC).replace(microsecond=0)
    old = [now - timedelta(days=d) for d in (500, 450, 449)]
    good = tmp_path / "history.jsonl"
    good.write_text(
        json.dumps({"ts": old[0].isoformat(), "energy_import_kwh": 1.0})
        + "\n\n"
        + json.dumps(
            [
                {"ts": old[1].isoformat(), "energy_import_kwh": 2.0},
                {"ts": int(old[2].timestamp()), "energy_import_kwh": 2.5},
            ]
        )
        + "\n"
    )
    env = {"DOXA_DATABASE_URL": db_url}
    args = ("backfill", "--meter", "BF-1", "--reason", "paper records of 2025")
    done = doxa(*args, str(good), env=env)
    assert done.code == 0, done.err
    assert done.out.strip() == f"back-filled 3 reading(s) of BF-1 from 3 in {good}"
    assert [(ts, e) for _s, ts, e, *_ in stored(db)] == [
        (old[0], 1.0),
        (old[1], 2.0),
        (old[2], 2.5),
    ]
    assert db.execute("SELECT DISTINCT source FROM readings").fetchall() == [("backfill",)]
    entry = db.execute(
        "SELECT actor, detail->>'reason', row_count FROM audit_log"
        " WHERE action = 'readings.backfill'"
    ).fetchone()
    assert entry == ("cli", "paper records of 2025", 3)
    assert doxa(*args, str(good), env=env).out.strip().endswith("(3 already stored)")

    set_installed_at(db, "BF-1", old[1])
    bad_lines = {
        json.dumps({"ts": (now - timedelta(days=1)).isoformat(), "energy_import_kwh": 1.7e308}): (
            "line 2: energy_import_kwh 1.7e+308 is above the largest register accepted"
        ),
        json.dumps({"ts": (old[1] - timedelta(hours=1)).isoformat(), "energy_import_kwh": 1}): (
            "line 2: ts "
        ),
        '{"ts": 1, "energy_import_kwh": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}': (
            "line 2: the payload is nested too deeply"
        ),
    }
    first = json.dumps({"ts": (now - timedelta(days=2)).isoformat(), "energy_import_kwh": 3.0})
    for line, expected in bad_lines.items():
        bad = tmp_path / "bad.jsonl"
        bad.write_text(first + "\n" + line + "\n")
        refused = doxa(*args, str(bad), env=env)
        assert refused.code == 2
        assert expected in refused.err and "\n" not in refused.err.strip()
    assert len(stored(db)) == 3  # nothing of the refused files
    assert (
        "no meter 'NOPE'"
        in doxa("backfill", "--meter", "NOPE", "--reason", "x", str(good), env=env).err
    )
