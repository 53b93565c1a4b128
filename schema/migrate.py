"""Apply the numbered SQL migrations in ``schema/migrations`` in order, once each.

Each migration runs in its own transaction and is recorded in ``schema_migrations``. A session
advisory lock serialises concurrent runs (two collectors starting together, say): the second waits,
then finds nothing left to do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import psycopg

from doxa.errors import MigrationError

MIGRATIONS_PACKAGE = "schema.migrations"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# pg_advisory_lock key: the bytes "doxa" as an integer, so it is recognisable in pg_locks.
_LOCK_KEY = int.from_bytes(b"doxa", "big")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def available_migrations() -> list[Migration]:
    """Every migration shipped with the package, in version order."""
    found = []
    for entry in resources.files(MIGRATIONS_PACKAGE).iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError("two migrations share a version number")
    return found


def _check_timescaledb(conn: psycopg.Connection) -> None:
    row = conn.execute(
        "SELECT default_version, installed_version FROM pg_available_extensions"
        " WHERE name = 'timescaledb'"
    ).fetchone()
    if row is None:
        raise MigrationError(
            "TimescaleDB is not installed in this PostgreSQL server; run scripts/bootstrap.sh "
            "(or install Debian's postgresql-NN-timescaledb) and restart PostgreSQL"
        )
    if row[1] is None:
        preload = conn.execute("SHOW shared_preload_libraries").fetchone()
        if preload is None or "timescaledb" not in preload[0]:
            raise MigrationError(
                "TimescaleDB is installed but not loaded: set shared_preload_libraries = "
                "'timescaledb' in postgresql.conf and restart PostgreSQL"
            )


def applied_versions(conn: psycopg.Connection) -> set[int]:
    exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return set()
    return {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}


def migrate(conninfo: str) -> list[str]:
    """Bring the database at ``conninfo`` up to date; returns the names of migrations applied."""
    applied: list[str] = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            _check_timescaledb(conn)
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = applied_versions(conn)
            for migration in available_migrations():
                if migration.version in done:
                    continue
                label = f"{migration.version:04d}_{migration.name}"
                try:
                    with conn.transaction():
                        conn.execute(migration.sql.encode())
                        conn.execute(
                            "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                            (migration.version, migration.name),
                        )
                except psycopg.Error as exc:
                    raise MigrationError(f"migration {label} failed: {exc}".strip()) from exc
                applied.append(label)
        finally:
            if not conn.closed:
                conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied
