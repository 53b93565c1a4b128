"""Migrations: idempotent, safe when run concurrently, and they build the hypertables."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from doxa.services.postgres import EmbeddedPostgres
from schema.migrate import MigrationError, available_migrations, migrate

pytestmark = pytest.mark.db


@pytest.fixture
def empty_db(pg_cluster: EmbeddedPostgres):
    name = f"e_{uuid.uuid4().hex[:12]}"
    pg_cluster.ensure_database(name)
    yield pg_cluster.url(name)
    with psycopg.connect(pg_cluster.url("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def test_migrate_twice_applies_each_migration_once(empty_db: str) -> None:
    first = migrate(empty_db)
    assert first == [f"{m.version:04d}_{m.name}" for m in available_migrations()]
    assert migrate(empty_db) == []
    with psycopg.connect(empty_db) as conn:
        count = conn.execute("SELECT count(*) FROM schema_migrations").fetchone()
    assert count == (len(first),)


def test_concurrent_migrations_do_not_collide(empty_db: str) -> None:
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(migrate(empty_db))
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    applied = sorted(results, key=len)
    assert applied[:3] == [[], [], []]
    assert len(applied[3]) == len(available_migrations())


def test_readings_is_a_hypertable_and_ignores_duplicates(db: psycopg.Connection) -> None:
    row = db.execute(
        "SELECT count(*) FROM timescaledb_information.hypertables WHERE hypertable_name = 'readings'"
    ).fetchone()
    assert row == (1,)
    ts = datetime(2026, 11, 26, 3, 15, tzinfo=UTC)
    insert = (
        "INSERT INTO readings (meter_id, ts, energy_import_kwh, source) VALUES (%s, %s, %s, 'mqtt')"
        " ON CONFLICT (meter_id, ts) DO NOTHING"
    )
    db.execute(insert, (7, ts, 1234.5))
    db.execute(insert, (7, ts, 9999.0))
    db.execute(insert, (8, ts, 10.0))
    rows = db.execute(
        "SELECT meter_id, energy_import_kwh FROM readings ORDER BY meter_id"
    ).fetchall()
    assert rows == [(7, 1234.5), (8, 10.0)]
    with pytest.raises(psycopg.errors.UniqueViolation):
        db.execute(
            "INSERT INTO readings (meter_id, ts, energy_import_kwh, source) VALUES (7, %s, 1, 'mqtt')",
            (ts,),
        )


def test_missing_timescaledb_preload_is_explained(services_dir: Path) -> None:
    """A server without TimescaleDB loaded gets a message naming the fix, not a raw SQL error."""
    pg = EmbeddedPostgres(
        services_dir / f"plain-{uuid.uuid4().hex[:6]}", durable=False, preload_timescaledb=False
    )
    pg.start()
    try:
        with pytest.raises(MigrationError, match="shared_preload_libraries"):
            migrate(pg.url())
    finally:
        pg.destroy()
