"""``DOXA_DATABASE_READ_URL``: the customer page served from a real PostgreSQL hot standby
(``pg_basebackup -R`` from a test primary), correct while the standby lags: with replay paused
(``pg_wal_replay_pause()``) a reading written on the primary is not shown, and it is once replay
resumes. The lookup itself (which counts failed attempts) still goes to the primary."""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from test_web_customer_data import (
    NOW,
    add_customer,
    add_readings,
    close,
    ensure_tariffs,
    make_app,
    sign_in,
    steady_readings,
)

from doxa.services.postgres import EmbeddedPostgres

pytestmark = pytest.mark.db

H = timedelta(hours=1)
LATEST = "1,117.00\u00a0kWh"  # 1000 + 0.5 kWh/h × 234 h: the last 6-hourly reading before now − 5 h
NEWER = "1,234.50\u00a0kWh"


@pytest.fixture
def standby(private_pg: EmbeddedPostgres, services_dir: Path) -> Iterator[EmbeddedPostgres]:
    """A hot standby of ``private_pg``, streaming from it."""
    replica = EmbeddedPostgres(services_dir / f"standby-{uuid.uuid4().hex[:8]}", durable=False)
    replica.root.mkdir(parents=True)
    shutil.copy(private_pg.password_file, replica.password_file)
    replica.runner.chown(replica.root)
    primary = conninfo_to_dict(private_pg.url())
    source = make_conninfo(
        host=primary["host"],
        port=primary["port"],
        user=primary["user"],
        password=primary["password"],
    )
    replica.runner.run(
        [str(replica.bin / "pg_basebackup"), "-D", str(replica.data_dir), "-R", "-X", "stream",
         "-c", "fast", "-d", source],
        timeout=120,
    )  # fmt: skip
    replica.start()  # writes its own port and socket into doxa.conf, keeps standby.signal
    yield replica
    replica.destroy()


def _seed(primary: psycopg.Connection) -> int:
    ensure_tariffs(primary)
    _customer, meter_id = add_customer(primary, "PB01010012345", "RPL-1")
    # A reading every 6 hours for 10 days up to 6 hours before now, 0.5 kWh an hour.
    add_readings(
        primary,
        meter_id,
        steady_readings(NOW - timedelta(days=10), NOW - timedelta(hours=5), H * 6, 1000.0, 0.5),
    )
    return meter_id


def _lsn(conn: psycopg.Connection, sql: str) -> str:
    row = conn.execute(sql).fetchone()
    assert row is not None
    return str(row[0])


def _wait_replayed(primary: psycopg.Connection, replica: psycopg.Connection) -> None:
    target = _lsn(primary, "SELECT pg_current_wal_lsn()")
    deadline = time.monotonic() + 30
    while True:
        row = replica.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (target,)).fetchone()
        if row and row[0]:
            return
        assert time.monotonic() < deadline, "the standby did not catch up in 30 s"
        time.sleep(0.05)


def _wait_received(primary: psycopg.Connection, replica: psycopg.Connection) -> None:
    target = _lsn(primary, "SELECT pg_current_wal_lsn()")
    deadline = time.monotonic() + 30
    while True:
        row = replica.execute(
            "SELECT pg_last_wal_receive_lsn() >= %s::pg_lsn", (target,)
        ).fetchone()
        if row and row[0]:
            return
        assert time.monotonic() < deadline, "the standby did not receive the WAL in 30 s"
        time.sleep(0.05)


def test_customer_page_is_served_from_the_standby_and_lags_with_it(
    private_pg: EmbeddedPostgres, standby: EmbeddedPostgres
) -> None:
    with (
        psycopg.connect(private_pg.url(), autocommit=True) as primary,
        psycopg.connect(standby.url(), autocommit=True) as replica,
    ):
        meter_id = _seed(primary)
        _wait_replayed(primary, replica)
        row = replica.execute("SELECT pg_is_in_recovery()").fetchone()
        assert row == (True,)

        app = make_app(private_pg.url(), READ_DATABASE_URL=standby.url())
        try:
            client = app.test_client()
            assert sign_in(client, "PB01010012345", "RPL-1").status_code == 302
            page = client.get("/meters/RPL-1?lang=en")
            assert page.status_code == 200
            text = page.get_data(as_text=True)
            assert LATEST in text, "the latest reading (6 hours ago) is on the page"

            # The standby lags: replay paused, a newer reading on the primary is not shown.
            replica.execute("SELECT pg_wal_replay_pause()")
            primary.execute(
                "INSERT INTO readings (meter_id, ts, energy_import_kwh, source)"
                " VALUES (%s, %s, 1234.5, 'backfill')",
                (meter_id, NOW - timedelta(minutes=30)),
            )
            _wait_received(primary, replica)
            on_primary = primary.execute(
                "SELECT count(*) FROM readings WHERE meter_id = %s", (meter_id,)
            ).fetchone()
            on_replica = replica.execute(
                "SELECT count(*) FROM readings WHERE meter_id = %s", (meter_id,)
            ).fetchone()
            assert on_primary is not None and on_replica is not None
            assert on_primary[0] == on_replica[0] + 1
            lagging = client.get("/meters/RPL-1?lang=en").get_data(as_text=True)
            assert NEWER not in lagging, "the standby has not replayed it: not shown yet"
            assert LATEST in lagging  # the standby's latest: a consistent, older page

            # Replay resumes: the reading appears.
            replica.execute("SELECT pg_wal_replay_resume()")
            _wait_replayed(primary, replica)
            deadline = time.monotonic() + 30
            while (
                replica.execute(
                    "SELECT count(*) FROM readings WHERE meter_id = %s", (meter_id,)
                ).fetchone()
                != on_primary
            ):
                assert time.monotonic() < deadline, "the reading never became visible"
                time.sleep(0.05)
            caught_up = client.get("/meters/RPL-1?lang=en").get_data(as_text=True)
            assert NEWER in caught_up
        finally:
            close(app)
