"""``doxa collect`` refuses bad input with one line, and the collector keeps its health tables
bounded."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from test_collector_support import InProcessCollector, LoopThread, count, test_config, wait_for

from doxa.services.postgres import EmbeddedPostgres

pytestmark = pytest.mark.db


@pytest.fixture
def loop() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.close()


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--collector-id", "a/b"], {}, "collector id 'a/b' must be 1-64 letters"),
        (["--interval", "0"], {}, "--interval must be a positive number"),
        ([], {"DOXA_MQTT_URL": "http://broker"}, "DOXA_MQTT_URL: MQTT URL must look like"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    doxa, db_url: str, args: list[str], env: dict[str, str], message: str
) -> None:
    result = doxa("collect", *args, env={"DOXA_DATABASE_URL": db_url, **env})
    assert result.code == 2
    assert message in result.err
    assert len(result.err.strip().splitlines()) == 1


def test_a_database_without_the_schema_exits_1_naming_the_fix(
    doxa, pg_cluster: EmbeddedPostgres
) -> None:
    name = f"empty_{uuid.uuid4().hex[:8]}"
    pg_cluster.ensure_database(name)
    try:
        result = doxa(
            "collect",
            "--collector-id",
            "c1",
            env={"DOXA_DATABASE_URL": pg_cluster.url(name), "DOXA_MQTT_URL": "mqtt://127.0.0.1:1"},
        )
    finally:
        with psycopg.connect(pg_cluster.url("postgres"), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")
    assert result.code == 1
    assert "run `doxa db migrate` first" in result.err
    assert "Traceback" not in result.err


def test_old_poll_outcomes_and_heartbeats_are_dropped(
    loop: LoopThread, db_url: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    for table, extra in (("poll_outcomes", ", 1, 'h:1', 'ok'"), ("collector_heartbeats", "")):
        for age in ("40 days", "1 hour"):
            db.execute(
                f"INSERT INTO {table} (ts, collector_id{', meter_id, gateway, outcome' if extra else ''})"
                f" VALUES (now() - interval '{age}', 'old'{extra})"
            )
    config = test_config(db_url, tmp_path, outcome_retention_days=7, heartbeat_retention_days=30)
    with InProcessCollector(loop, config):
        wait_for(
            lambda: (
                count(db, "SELECT count(*) FROM poll_outcomes WHERE collector_id = 'old'") == 1
                and count(
                    db, "SELECT count(*) FROM collector_heartbeats WHERE collector_id = 'old'"
                )
                == 1
            ),
            what="the old chunks dropped",
        )
    assert (
        count(db, "SELECT count(*) FROM poll_outcomes WHERE ts > now() - interval '2 hours'") == 1
    )
