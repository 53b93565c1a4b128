"""Shared fixtures: real TimescaleDB and Mosquitto processes, started once per test session.

- ``pg_cluster``: the session's embedded TimescaleDB (fsync off); ``db_url``: a fresh, migrated
  database per test, cloned from a template in a few tens of milliseconds.
- ``private_pg``: a cluster of the test's own, for tests that stop or crash PostgreSQL.
- ``mqtt_url``: the session's Mosquitto; ``private_broker``: a broker of the test's own.
- ``doxa``: runs the CLI in-process with the test's environment and returns its exit status and
  output.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from doxa.services.mosquitto import EmbeddedMosquitto
from doxa.services.postgres import EmbeddedPostgres
from schema.migrate import migrate

TEMPLATE_DB = "doxa_template"


@pytest.fixture(scope="session")
def services_dir() -> Iterator[Path]:
    # Not under pytest's tmp_path: that is private to root, and the cluster runs as 'postgres'.
    path = Path(tempfile.mkdtemp(prefix="doxa-tests-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_cluster(services_dir: Path) -> Iterator[EmbeddedPostgres]:
    pg = EmbeddedPostgres(services_dir / "pg", durable=False, database=TEMPLATE_DB)
    pg.start()
    migrate(pg.url(TEMPLATE_DB))
    yield pg
    pg.destroy()


def _drop_database(pg: EmbeddedPostgres, name: str) -> None:
    with psycopg.connect(pg.url("postgres"), autocommit=True) as conn:
        conn.execute(
            psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                psycopg.sql.Identifier(name)
            )
        )


@pytest.fixture
def db_url(pg_cluster: EmbeddedPostgres) -> Iterator[str]:
    """A fresh database with the full schema, dropped after the test."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    pg_cluster.ensure_database(name, template=TEMPLATE_DB)
    yield pg_cluster.url(name)
    _drop_database(pg_cluster, name)


@pytest.fixture
def db(db_url: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to the test's database."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def private_pg(services_dir: Path) -> Iterator[EmbeddedPostgres]:
    """A migrated cluster of this test's own, free to stop, crash and restart."""
    pg = EmbeddedPostgres(services_dir / f"pg-{uuid.uuid4().hex[:8]}", durable=False)
    pg.start()
    migrate(pg.url())
    yield pg
    pg.destroy()


@pytest.fixture(scope="session")
def mqtt_broker(services_dir: Path) -> Iterator[EmbeddedMosquitto]:
    broker = EmbeddedMosquitto(services_dir / "mqtt")
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def mqtt_url(mqtt_broker: EmbeddedMosquitto) -> str:
    return mqtt_broker.url


@pytest.fixture
def private_broker(services_dir: Path) -> Iterator[EmbeddedMosquitto]:
    """A broker of this test's own, free to stop and restart."""
    broker = EmbeddedMosquitto(services_dir / f"mqtt-{uuid.uuid4().hex[:8]}")
    broker.start()
    yield broker
    broker.stop()


@dataclass(frozen=True)
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def doxa(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., CliResult]:
    """Run ``doxa ARGS`` in-process; ``env`` adds variables (DOXA_HOME defaults to tmp_path)."""
    from doxa.cli import main

    for key in list(os.environ):
        if key.startswith("DOXA_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("DOXA_HOME", str(tmp_path / "home"))

    def run(*args: str, env: dict[str, str] | None = None) -> CliResult:
        with monkeypatch.context() as m:
            for key, value in (env or {}).items():
                m.setenv(key, value)
            capsys.readouterr()
            code = main([str(a) for a in args])
            captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run
