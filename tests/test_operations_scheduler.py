"""``doxa scheduler`` (issue 18, contract §15): a day of the registry's jobs on an injected
clock; a real scheduler process killed with SIGKILL in the middle of the bills job, restarted,
and the job finished once; two schedulers at once running each job once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from test_care_support import SmtpServer, add_contact, smtp_server  # noqa: F401 - fixture
from test_web_customer_data import ZONE, add_customer, add_readings, ensure_tariffs, steady_readings

from billing.locks import period_key
from billing.periods import Period
from care.channels import SmtpChannel
from operations import jobs as registry_module
from operations.jobs import Context, closing_days, registry
from operations.schedule import Daily, Every, parse_hhmm
from operations.scheduler import MAX_ATTEMPTS, Job, NotReady, Runner
from servicedesk import outage_store
from servicedesk.outages import Area

DAY = date(2025, 7, 6)  # the day of the injected clock: reading day 6 closes period 2025-07


def _runs(db: psycopg.Connection, job: str | None = None) -> list[tuple[str, datetime, str, dict]]:
    return [
        (r[0], r[1], r[2], r[3])
        for r in db.execute(
            "SELECT job, scheduled_for, outcome, counts FROM job_runs"
            " WHERE %(job)s::text IS NULL OR job = %(job)s ORDER BY id",
            {"job": job},
        ).fetchall()
    ]


# -- the schedules ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "schedule", [Daily(parse_hhmm("02:30"), ZONE), Every(60, ZONE), Every(900, ZONE)], ids=str
)
def test_latest_fire_time_is_apschedulers_fire_time(schedule: Daily | Every) -> None:
    """The instant a run is owed for and the instant APScheduler wakes the process agree."""
    trigger = schedule.trigger()
    t = datetime(2025, 7, 5, 20, 0, 7, tzinfo=UTC)
    for _ in range(50):
        latest = schedule.latest(t)
        assert latest <= t
        assert trigger.get_next_fire_time(None, latest) == latest
        following = trigger.get_next_fire_time(None, t + timedelta(microseconds=1))
        assert following > t and schedule.latest(following) == following
        assert schedule.latest(following - timedelta(microseconds=1)) == latest
        t += timedelta(minutes=37, seconds=11)


def test_bills_catch_up_the_closing_days_missed() -> None:
    assert closing_days(date(2025, 7, 5), DAY) == [DAY]
    assert closing_days(date(2025, 7, 2), DAY) == [date(2025, 7, d) for d in (3, 4, 5, 6)]
    assert closing_days(None, DAY) == [date(2025, 7, d) for d in (4, 5, 6)]
    assert len(closing_days(date(2025, 5, 1), DAY)) == registry_module.BILLS_CATCH_UP_DAYS


# -- a day on the injected clock ---------------------------------------------------------------


@pytest.mark.db
def test_a_day_of_jobs(db: psycopg.Connection, db_url: str, smtp_server: SmtpServer) -> None:  # noqa: F811
    ensure_tariffs(db)
    start = datetime(2025, 5, 20, tzinfo=ZONE)
    end = datetime(2025, 7, 7, 12, tzinfo=ZONE)
    meters = {}
    for code, serial, reading_day in (
        ("PB01010000001", "SN-DAY6", 6),
        ("PB01010000002", "SN-DAY5", 5),
        ("PB01010000003", "SN-DAY20", 20),
    ):
        cid, meter = add_customer(db, code, serial, reading_day=reading_day)
        add_readings(db, meter, steady_readings(start, end, timedelta(hours=1), 1000.0, 0.5))
        meters[serial] = (cid, meter)
    add_contact(db, meters["SN-DAY6"][0], email="an@example.vn")
    # The meters read hourly: validation expects that, so their readings are clean.
    db.execute("UPDATE validation_thresholds SET value = 3600 WHERE name = 'expected_interval_s'")
    # Yesterday's bills run went well: today's covers reading day 6 alone.
    db.execute(
        "INSERT INTO job_runs (job, scheduled_for, started_at, ended_at, outcome)"
        " VALUES ('bills', %s, %s, %s, 'ok')",
        (datetime(2025, 7, 5, 2, 30, tzinfo=ZONE),) * 3,
    )
    outage_store.add(db, Area("Hồ Chí Minh"), datetime(2025, 7, 7, 8, tzinfo=ZONE),
                     datetime(2025, 7, 7, 10, tzinfo=ZONE), "Bảo trì lưới điện", "engineer",
                     datetime(2025, 7, 1, tzinfo=ZONE))  # fmt: skip

    now = [datetime(2025, 7, 6, 0, 0, tzinfo=ZONE)]
    channels = {"email": SmtpChannel.from_url(smtp_server.url)}
    ctx = Context(ZONE, parse_hhmm("02:00"), channels, 8, retention_months=1,
                  clock=lambda: now[0])  # fmt: skip
    runner = Runner(db_url, registry(ctx), clock=lambda: now[0])
    while now[0] < datetime(2025, 7, 7, tzinfo=ZONE):
        runner.run_due()
        now[0] += timedelta(minutes=10)

    runs = _runs(db)
    assert {outcome for _, _, outcome, _ in runs} == {"ok"}
    per_job = {name: [r for r in runs if r[0] == name] for name in {r[0] for r in runs}}
    bills = per_job["bills"][1:]  # after yesterday's
    assert [(r[1], r[3]["bills"], r[3]["reading_days"]) for r in bills] == [
        (datetime(2025, 7, 6, 2, 30, tzinfo=ZONE), 1, 1)
    ]
    billed = db.execute(
        "SELECT m.serial, b.period, b.consumption_kwh FROM bills b JOIN meters m ON m.id = b.meter_id"
    ).fetchall()
    assert billed == [("SN-DAY6", "2025-07", 360)]  # 30 days × 24 h × 0.5 kWh
    # Validation ran at 02:10 before the bills (once at start for yesterday, the catch-up),
    # over the two days before: the steady hourly readings are clean.
    assert [(r[1], r[3]["open_total"]) for r in per_job["validate"]] == [
        (datetime(2025, 7, 5, 2, 10, tzinfo=ZONE), 0),
        (datetime(2025, 7, 6, 2, 10, tzinfo=ZONE), 0),
    ]
    # The rollup ran at 02:05 over the three days before, every meter: the 3 meters' days.
    assert [(r[1], r[3]["rows"]) for r in per_job["rollup"]] == [
        (datetime(2025, 7, 5, 2, 5, tzinfo=ZONE), 9),
        (datetime(2025, 7, 6, 2, 5, tzinfo=ZONE), 9),
    ]
    rolled = db.execute("SELECT count(*) FROM meter_days WHERE day = '2025-07-05'").fetchone()
    assert rolled == (3,)
    # The issue job at 03:00 waited for the day's bills and issued what they made: at start for
    # yesterday nothing (no draft), today SN-DAY6's bill, with its bill-issued notice.
    assert [(r[1], r[3]["issued"], r[3]["held"]) for r in per_job["issue"]] == [
        (datetime(2025, 7, 5, 3, 0, tzinfo=ZONE), 0, 0),
        (datetime(2025, 7, 6, 3, 0, tzinfo=ZONE), 1, 0),
    ]
    issued = db.execute("SELECT status, issued_by FROM bills").fetchall()
    assert issued == [("issued", "scheduler")]
    # Retention (1 month: from 1 June) dropped the May chunks once, at start; their days were
    # rolled up first, so the daily chart keeps them.
    kept = [(r[1], r[3]["chunks_dropped"] > 0) for r in per_job["retention"]]
    assert kept == [(datetime(2025, 7, 5, 3, 30, tzinfo=ZONE), True),
                    (datetime(2025, 7, 6, 3, 30, tzinfo=ZONE), False)]  # fmt: skip
    dropped = db.execute(
        "SELECT actor, row_count FROM audit_log WHERE action = 'readings.retention'"
    )
    assert dropped.fetchall() == [("scheduler", per_job["retention"][0][3]["chunks_dropped"])]
    oldest = db.execute("SELECT min(ts) FROM readings").fetchone()[0]
    assert oldest >= datetime(2025, 5, 26, tzinfo=ZONE)  # the chunk holding 1 June stays
    may = db.execute("SELECT count(*) FROM meter_days WHERE day = '2025-05-20'").fetchone()
    assert may == (3,)
    # Every 10 minutes of the clock, the notices owed for the latest minute: 144 runs; the
    # quarter-hourly usage alerts at 4 instants an hour; the daily prune at 02:00 and once at
    # start for yesterday's 02:00 (the catch-up).
    assert len(per_job["notices"]) == 144
    assert len(per_job["outage_notices"]) == 144
    assert len(per_job["usage_alerts"]) == 96
    assert [r[1] for r in per_job["prune_job_runs"]] == [
        datetime(2025, 7, 5, 2, 0, tzinfo=ZONE),
        datetime(2025, 7, 6, 2, 0, tzinfo=ZONE),
    ]
    # The outage notice was chosen 24 hours ahead and delivered by the notices job.
    chosen = [r for r in per_job["outage_notices"] if r[3]["chosen"]]
    assert [r[1] for r in chosen] == [datetime(2025, 7, 6, 8, 0, tzinfo=ZONE)]
    # The notices job delivered it and the bill-issued notice.
    assert sum(r[3]["sent"] for r in per_job["notices"]) == 2
    assert len(smtp_server.messages()) == 2
    # A second pass over the same day runs nothing again.
    now[0] = datetime(2025, 7, 6, 23, 50, tzinfo=ZONE)
    assert set(runner.run_due().values()) == {None}


@pytest.mark.db
def test_a_job_waiting_for_another_is_withdrawn_not_failed(
    db: psycopg.Connection, db_url: str
) -> None:
    """The issue job waits for the day's bills: its runs are withdrawn (no row, no try used)
    until the bills run has succeeded, however many sweeps that takes."""
    now = datetime(2025, 7, 6, 4, 0, tzinfo=ZONE)
    ctx = Context(ZONE, parse_hhmm("02:00"), {}, 8)
    issue = next(job for job in registry(ctx) if job.name == "issue")
    runner = Runner(db_url, [issue], clock=lambda: now)
    for _ in range(MAX_ATTEMPTS + 2):
        assert runner.run_due() == {"issue": None}
    assert _runs(db) == []
    with pytest.raises(NotReady, match="the bills of 2025-07-06 have not run successfully yet"):
        issue.run(db, datetime(2025, 7, 6, 3, 0, tzinfo=ZONE))
    db.execute(
        "INSERT INTO job_runs (job, scheduled_for, started_at, ended_at, outcome)"
        " VALUES ('bills', %s, %s, %s, 'ok')",
        (datetime(2025, 7, 6, 2, 30, tzinfo=ZONE),) * 3,
    )
    assert runner.run_due() == {"issue": "ok"}
    assert [(r[0], r[2]) for r in _runs(db, "issue")] == [("issue", "ok")]


@pytest.mark.db
def test_a_failing_job_is_recorded_and_the_others_run(db: psycopg.Connection, db_url: str) -> None:
    def broken(conn: psycopg.Connection, at: datetime) -> dict[str, int]:
        raise ValueError("no such thing")

    now = datetime(2025, 7, 6, 3, 0, tzinfo=ZONE)
    jobs = [Job("broken", Daily(parse_hhmm("02:00"), ZONE), broken),
            Job("fine", Daily(parse_hhmm("02:00"), ZONE), lambda c, at: {"n": 1})]  # fmt: skip
    runner = Runner(db_url, jobs, clock=lambda: now)
    assert runner.run_due() == {"broken": "failed", "fine": "ok"}
    runner.run_due()
    runner.run_due()
    assert runner.run_due() == {"broken": None, "fine": None}  # three tries, then it waits
    rows = db.execute("SELECT job, outcome, error FROM job_runs ORDER BY id").fetchall()
    assert (
        rows
        == [("broken", "failed", "ValueError: no such thing"), ("fine", "ok", None)]
        + [("broken", "failed", "ValueError: no such thing")] * 2
    )


# -- real processes --------------------------------------------------------------------------


@pytest.fixture
def scheduler(
    db_url: str, tmp_path: Path
) -> Iterator[Callable[[dict[str, str]], subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(env: dict[str, str]) -> subprocess.Popen[bytes]:
        full = {k: v for k, v in os.environ.items() if not k.startswith("DOXA_")}
        full.update(DOXA_DATABASE_URL=db_url, DOXA_HOME=str(tmp_path / "home"), **env)
        with (tmp_path / f"scheduler-{len(started)}.log").open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "doxa", "scheduler", "--sweep-every", "0.5"],
                env=full, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def _wait(predicate: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _today_setup(db: psycopg.Connection) -> tuple[dict[str, str], datetime, Period]:
    """A daily time 2 hours ago (bills 1.5 hours ago), a customer whose period closed on the
    bills run's day (or within its catch-up) and readings up to now."""
    ensure_tariffs(db)
    now = datetime.now(ZONE)
    daily_at = (now - timedelta(hours=2)).strftime("%H:%M")
    bills_at = Daily(parse_hhmm(daily_at), ZONE)
    instant = Context(ZONE, parse_hhmm(daily_at), {}, 8).daily(30).latest(now)
    day = instant.date()
    # An earlier good run five days back: this run covers the four closing days since.
    db.execute(
        "INSERT INTO job_runs (job, scheduled_for, started_at, ended_at, outcome)"
        " VALUES ('bills', %s, %s, %s, 'ok')",
        (instant - timedelta(days=5),) * 3,
    )
    closing = max(d for d in closing_days(day - timedelta(days=5), day) if d.day <= 28)
    _, meter = add_customer(db, "PB01010000009", "SN-KILL", reading_day=closing.day)
    db.execute("UPDATE validation_thresholds SET value = 3600 WHERE name = 'expected_interval_s'")
    add_readings(
        db, meter, steady_readings(now - timedelta(days=45), now, timedelta(hours=1), 50.0, 0.25)
    )
    assert bills_at.latest(now) <= now
    return {"DOXA_SCHEDULER_DAILY_AT": daily_at}, instant, Period(closing.year, closing.month)


@pytest.mark.db
@pytest.mark.slow
def test_scheduler_killed_mid_job_finishes_it_once_after_restart(
    db: psycopg.Connection,
    db_url: str,
    scheduler: Callable[[dict[str, str]], subprocess.Popen[bytes]],
) -> None:
    env, instant, period = _today_setup(db)
    with psycopg.connect(db_url) as holder:
        # Hold the bills run's own lock (period, block of meter ids; the test's meter ids lie in
        # block 0): the scheduler's bills job waits inside run_bills.
        holder.execute("SELECT pg_advisory_xact_lock(%s, 0)",
                       (period_key(period),))  # fmt: skip
        first = scheduler(env)
        _wait(lambda: ("bills", instant, "running") in {r[:3] for r in _runs(db, "bills")},
              "the bills run to start")  # fmt: skip
        time.sleep(0.5)
        first.send_signal(signal.SIGKILL)
        first.wait()
        assert [r[2] for r in _runs(db, "bills")] == ["ok", "running"]
        holder.rollback()
    second = scheduler(env)
    _wait(lambda: [r[2] for r in _runs(db, "bills")] == ["ok", "interrupted", "ok"],
          "the bills run to be caught up")  # fmt: skip
    second.send_signal(signal.SIGTERM)
    assert second.wait(timeout=30) == 0
    runs = _runs(db, "bills")
    assert [r[1] for r in runs[1:]] == [instant, instant]
    assert runs[2][3]["bills"] == 1
    assert db.execute("SELECT count(*), min(period) FROM bills").fetchone() == (1, str(period))
    assert db.execute("SELECT count(*) FROM job_runs WHERE outcome = 'running'").fetchone() == (0,)


@pytest.mark.db
@pytest.mark.slow
def test_two_schedulers_run_each_job_once(
    db: psycopg.Connection,
    db_url: str,
    scheduler: Callable[[dict[str, str]], subprocess.Popen[bytes]],
) -> None:
    env, instant, _ = _today_setup(db)
    procs = [scheduler(env), scheduler(env)]
    names = {"rollup", "validate", "bills", "issue", "retention", "notices", "outage_notices",
             "usage_alerts", "prune_job_runs"}  # fmt: skip
    _wait(lambda: {r[0] for r in _runs(db) if r[2] == "ok"} >= names, "every job to run")
    time.sleep(2)  # both have fired everything at start and swept several times
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    assert [proc.wait(timeout=30) for proc in procs] == [0, 0]
    runs = _runs(db)
    assert {r[2] for r in runs} == {"ok"}
    assert len(runs) == len({(r[0], r[1]) for r in runs})  # one run per job and instant
    assert [r[1] for r in _runs(db, "bills")][1:] == [instant]
    assert db.execute("SELECT count(*) FROM bills").fetchone() == (1,)
    # The issue job waited for the bills (fired at once at start, beside them) and issued it.
    assert [r[3]["issued"] for r in _runs(db, "issue")] == [1]
    assert db.execute("SELECT status FROM bills").fetchone() == ("issued",)
    hosts = db.execute("SELECT DISTINCT pid FROM job_runs WHERE pid IS NOT NULL").fetchall()
    assert 1 <= len(hosts) <= 2


@pytest.mark.db
def test_every_run_is_shown_on_ops(db: psycopg.Connection, db_url: str) -> None:
    from test_staff_helpers import add_staff, app_factory, signed_in_client

    now = datetime(2025, 7, 6, 3, 0, tzinfo=ZONE)
    jobs = [Job("fine", Daily(parse_hhmm("02:00"), ZONE), lambda c, at: {"bills": 7}),
            Job("broken", Every(60, ZONE), lambda c, at: {"x": 1 // 0})]  # fmt: skip
    Runner(db_url, jobs, clock=lambda: now).run_due()
    add_staff(db, "minh", "engineer")
    for make in app_factory(db_url):
        client = signed_in_client(make(), "minh")
        page = client.get("/ops?lang=en").get_data(as_text=True)
        assert 'data-job="fine" data-outcome="ok"' in page
        assert "bills 7" in page
        assert 'data-job="broken" data-outcome="failed"' in page
        assert "ZeroDivisionError: integer division or modulo by zero" in page


def test_scheduler_list_skip_and_bad_settings(doxa: Callable[..., Any]) -> None:
    listed = doxa("scheduler", "--list", env={"DOXA_SCHEDULER_DAILY_AT": "01:15"})
    assert listed.code == 0
    assert listed.out.splitlines() == [
        "rollup\tdaily at 01:20 Asia/Ho_Chi_Minh",
        "validate\tdaily at 01:25 Asia/Ho_Chi_Minh",
        "bills\tdaily at 01:45 Asia/Ho_Chi_Minh",
        "issue\tdaily at 02:15 Asia/Ho_Chi_Minh",
        "retention\tdaily at 02:45 Asia/Ho_Chi_Minh",
        "outage_notices\tevery 60 s",
        "usage_alerts\tevery 900 s",
        "notices\tevery 60 s",
        "prune_job_runs\tdaily at 01:15 Asia/Ho_Chi_Minh",
    ]
    skipped = doxa("scheduler", "--list", env={"DOXA_SCHEDULER_SKIP": "notices, bills, issue"})
    assert [line.split("\t")[0] for line in skipped.out.splitlines()] == [
        "rollup", "validate", "retention", "outage_notices", "usage_alerts", "prune_job_runs"
    ]  # fmt: skip
    for env, message in (
        ({"DOXA_SCHEDULER_SKIP": "nope"}, "DOXA_SCHEDULER_SKIP: no job named 'nope'"),
        ({"DOXA_SCHEDULER_SKIP": "bills"}, "the issue job waits for the bills job; skip both"),
        ({"DOXA_RETENTION_MONTHS": "-1"}, "DOXA_RETENTION_MONTHS"),
        ({"DOXA_SCHEDULER_DAILY_AT": "25:00"}, "DOXA_SCHEDULER_DAILY_AT: expected HH:MM"),
    ):
        bad = doxa("scheduler", "--list", env=env)
        assert bad.code == 2 and message in bad.err and len(bad.err.splitlines()) == 1


@pytest.mark.db
def test_bills_of_one_reading_day_leave_the_others_alone(db: psycopg.Connection) -> None:
    from billing.run import run_bills

    ensure_tariffs(db)
    _, six = add_customer(db, "PB01010000001", "SN-6", reading_day=6)
    _, five = add_customer(db, "PB01010000002", "SN-5", reading_day=5)
    start = datetime(2025, 5, 20, tzinfo=ZONE)
    add_readings(
        db,
        six,
        steady_readings(start, datetime(2025, 7, 7, tzinfo=ZONE), timedelta(hours=1), 10.0, 0.5),
    )
    add_readings(
        db,
        five,
        steady_readings(start, datetime(2025, 7, 1, tzinfo=ZONE), timedelta(hours=1), 10.0, 0.5),
    )
    period = Period(2025, 7)
    five_report = run_bills(db, period, ZONE, reading_days={5})
    assert [s.meter_serial for s in five_report.skipped] == ["SN-5"]  # no reading after 5 July
    six_report = run_bills(db, period, ZONE, reading_days={6})
    assert (six_report.written, six_report.skipped) == (1, [])
    assert db.execute(
        "SELECT m.serial FROM bill_skips s JOIN meters m ON m.id = s.meter_id"
    ).fetchall() == [("SN-5",)]
    assert db.execute(
        "SELECT m.serial FROM bills b JOIN meters m ON m.id = b.meter_id"
    ).fetchall() == [("SN-6",)]
