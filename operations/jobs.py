"""The scheduler's jobs: **the registry** (:func:`registry`) and the jobs Doxa has today. I/O.

A job is ``run(conn, scheduled_for) -> {count name: number}``: ``conn`` is an autocommit
connection (use ``with conn.transaction():`` for all-or-nothing work), ``scheduled_for`` the
instant the run is for, aware and in the local zone (``scheduled_for.date()`` is the local day
it belongs to). Re-running a job for the same instant must be harmless: a run killed half-way is
run again after a restart (``operations.scheduler``).

To add a job, add one entry to :func:`registry`, e.g.
``Job("validate", ctx.daily(10), validate_recent_days)``. Daily jobs that depend on each other
run in order by their start times (``ctx.daily(minutes after DOXA_SCHEDULER_DAILY_AT)``): the
rollup, validation, bills, issue, retention.
"""

from __future__ import annotations

import logging
import time as time_
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from billing.issue import issue_period
from billing.periods import Period
from billing.run import run_bills
from care.channels import Channel
from metering.expected import MQTT_INTERVAL_S, POLL_INTERVAL_S
from operations.schedule import Daily, Every
from operations.scheduler import Job, JobFn, NotReady

log = logging.getLogger(__name__)

# The bills job catches up at most this many closing days it missed (scheduler down a week).
BILLS_CATCH_UP_DAYS = 7
# On its first run the bills job also bills the two days before: the Decree 137 reading day is
# fixed ±1 day, and a scheduler started just after midnight would miss the day before.
BILLS_FIRST_RUN_DAYS = 2
# Reading days are 1–28 (customers.reading_day): the 29th–31st close no period.
LAST_READING_DAY = 28
# Rows of job_runs kept; older ones are deleted by the daily prune_job_runs job.
RUNS_KEPT = timedelta(days=90)
# The scheduler's id in the outbox (claims of its notices job).
NOTIFY_WORKER_ID = "doxa-scheduler"
# The actor of what the scheduler does, in the audit log and on issued bills.
ACTOR = "scheduler"


@dataclass(frozen=True)
class Context:
    """What the registry's jobs are configured with (built by ``doxa scheduler`` from the
    settings)."""

    zone: ZoneInfo
    daily_at: time
    channels: Mapping[str, Channel]
    notify_max_attempts: int
    notices_every: int = 60
    retention_months: int = 0  # DOXA_RETENTION_MONTHS: 0 keeps every raw reading
    mqtt_interval: float = MQTT_INTERVAL_S  # DOXA_MQTT_INTERVAL, the rollup's completeness
    poll_interval: float = POLL_INTERVAL_S  # DOXA_POLL_INTERVAL
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))  # the runner's

    def daily(self, minutes_after: int = 0) -> Daily:
        """Daily at DOXA_SCHEDULER_DAILY_AT plus ``minutes_after`` (the order of the day)."""
        start = datetime.combine(date(2000, 1, 1), self.daily_at) + timedelta(minutes=minutes_after)
        return Daily(start.time(), self.zone)

    def every(self, seconds: int) -> Every:
        return Every(seconds, self.zone)


def registry(ctx: Context) -> tuple[Job, ...]:
    """Every job of ``doxa scheduler``: one entry each."""
    return (
        Job("rollup", ctx.daily(5), roll_up(ctx.mqtt_interval, ctx.poll_interval)),
        Job("validate", ctx.daily(10), validate_recent_days),
        Job("bills", ctx.daily(30), bills_of_reading_days),
        Job("issue", ctx.daily(60), issue_closed_periods),
        Job(
            "retention",
            ctx.daily(90),
            apply_retention(ctx.retention_months, ctx.mqtt_interval, ctx.poll_interval),
        ),
        Job("outage_notices", ctx.every(60), choose_outage_notices),
        Job("usage_alerts", ctx.every(900), check_usage_alerts),
        Job(
            "notices",
            ctx.every(ctx.notices_every),
            deliver_notices(ctx.channels, ctx.notify_max_attempts, ctx.clock),
        ),
        Job("prune_job_runs", ctx.daily(0), prune_job_runs),
    )


# -- the jobs ------------------------------------------------------------------------------------


def closing_days(last_ok: date | None, day: date) -> list[date]:
    """The closing days a bills run for ``day`` covers: those since the last successful run (at
    most :data:`BILLS_CATCH_UP_DAYS`), or ``day`` and the two before on a first run."""
    first = (
        day - timedelta(days=BILLS_FIRST_RUN_DAYS) if last_ok is None else last_ok + timedelta(1)
    )
    first = max(first, day - timedelta(days=BILLS_CATCH_UP_DAYS - 1))
    return [first + timedelta(days=k) for k in range((day - first).days + 1)]


def validate_recent_days(conn: psycopg.Connection[Any], scheduled_for: datetime) -> dict[str, int]:
    """Run the validation rules (``vee.validate``) over the two local days before the run's
    day, before the bills job: an exception found at a period's end holds that bill's draft.
    Two days, so readings that arrived late on the day before are looked at again."""
    from vee.validate import validate_range

    zone = scheduled_for.tzinfo
    assert isinstance(zone, ZoneInfo)
    day = scheduled_for.date()
    counts = validate_range(conn, day - timedelta(days=2), day - timedelta(days=1),
                            scheduled_for, zone)  # fmt: skip
    return {"opened": counts.opened, "updated": counts.updated, "reopened": counts.reopened,
            "closed": counts.closed, "open_total": counts.open_total}  # fmt: skip


def _last_ok_day(conn: psycopg.Connection[Any], job: str, scheduled_for: datetime) -> date | None:
    """The local day of ``job``'s latest successful run before ``scheduled_for``."""
    row = conn.execute(
        "SELECT max(scheduled_for) FROM job_runs"
        " WHERE job = %s AND outcome = 'ok' AND scheduled_for < %s",
        (job, scheduled_for),
    ).fetchone()
    zone = scheduled_for.tzinfo
    return row[0].astimezone(zone).date() if row and row[0] else None


def periods_closing(last_ok: date | None, day: date) -> dict[Period, set[int]]:
    """The periods, with their reading days, that closed on the days a run for ``day`` covers
    (:func:`closing_days`)."""
    by_period: dict[Period, set[int]] = defaultdict(set)
    for closing in closing_days(last_ok, day):
        if closing.day <= LAST_READING_DAY:
            by_period[Period(closing.year, closing.month)].add(closing.day)
    return by_period


def bills_of_reading_days(conn: psycopg.Connection[Any], scheduled_for: datetime) -> dict[str, int]:
    """Bill the customers whose period closed on the run's local day (their reading day: the
    period ``YYYY-MM`` of that day), and those of the closing days missed since the last
    successful run. Drafts are replaced, issued bills kept (``billing.run``)."""
    zone = scheduled_for.tzinfo
    assert isinstance(zone, ZoneInfo)
    by_period = periods_closing(_last_ok_day(conn, "bills", scheduled_for), scheduled_for.date())
    counts = {"periods": 0, "reading_days": 0, "bills": 0, "estimated": 0, "skipped": 0,
              "kept_issued": 0}  # fmt: skip
    for period, days in sorted(by_period.items()):
        report = run_bills(conn, period, zone, reading_days=days)
        counts["periods"] += 1
        counts["reading_days"] += len(days)
        counts["bills"] += report.written
        counts["estimated"] += report.estimated
        counts["skipped"] += len(report.skipped)
        counts["kept_issued"] += len(report.kept_issued)
    return counts


def issue_closed_periods(conn: psycopg.Connection[Any], scheduled_for: datetime) -> dict[str, int]:
    """Issue the drafts that are not held (``billing.issue``, as ``doxa bills issue``) of the
    periods the day's bills job billed — the period of each closing day since the last
    successful issue run — once that bills run has succeeded (until then it waits:
    :class:`~operations.scheduler.NotReady`); held drafts wait for staff. Leave
    it out (``DOXA_SCHEDULER_SKIP=issue``) where staff issue every period by hand."""
    zone = scheduled_for.tzinfo
    assert isinstance(zone, ZoneInfo)
    day = scheduled_for.date()
    bills_day = _last_ok_day(conn, "bills", scheduled_for + timedelta(days=1))
    if bills_day != day:
        raise NotReady(f"the bills of {day} have not run successfully yet")
    counts = {"periods": 0, "issued": 0, "held": 0, "notices": 0}
    for period in sorted(periods_closing(_last_ok_day(conn, "issue", scheduled_for), day)):
        result = issue_period(conn, period, None, ACTOR, scheduled_for, zone)
        counts["periods"] += 1
        counts["issued"] += len(result.issued)
        counts["held"] += len(result.held)
        counts["notices"] += result.notices
    return counts


def roll_up(mqtt_interval: float, poll_interval: float) -> JobFn:
    """The daily rollup (``schema.rollup.rollup_job``): the last days for every meter, and each
    meter's days not final yet."""
    from schema.rollup import rollup_job

    def job(conn: psycopg.Connection[Any], scheduled_for: datetime) -> dict[str, int]:
        zone = scheduled_for.tzinfo
        assert isinstance(zone, ZoneInfo)
        counts = rollup_job(conn, scheduled_for, zone=zone, mqtt_interval=mqtt_interval,
                            poll_interval=poll_interval)  # fmt: skip
        return {"days": counts.days, "meters": counts.meters, "rows": counts.rows,
                "final": counts.final}  # fmt: skip

    return job


def apply_retention(months: int, mqtt_interval: float, poll_interval: float) -> JobFn:
    """Retention (``schema.retention``): drop the raw readings chunks older than ``months``
    months (0 keeps everything) once their days are rolled up."""
    from schema import retention

    def job(conn: psycopg.Connection[Any], scheduled_for: datetime) -> dict[str, int]:
        zone = scheduled_for.tzinfo
        assert isinstance(zone, ZoneInfo)
        counts = retention.apply_retention(conn, scheduled_for, months=months, zone=zone,
                                           mqtt_interval=mqtt_interval,
                                           poll_interval=poll_interval,
                                           actor=ACTOR)  # fmt: skip
        return {"chunks_dropped": counts.chunks_dropped, "days_rolled_up": counts.days_rolled_up}

    return job


def choose_outage_notices(conn: psycopg.Connection[Any], scheduled_for: datetime) -> dict[str, int]:
    """Planned-outage notices: ``servicedesk`` chooses whom to tell what (24 hours ahead, on a
    change, on cancellation), ``care`` renders and queues them (as ``doxa notify run`` does)."""
    from care import notices
    from servicedesk import outage_store

    zone = scheduled_for.tzinfo
    assert isinstance(zone, ZoneInfo)
    chosen = outage_store.choose_notices(
        conn,
        scheduled_for,
        lambda c, due: notices.enqueue_outage_notices(c, due, scheduled_for, zone),
    )
    return {"chosen": len(chosen)}


def check_usage_alerts(conn: psycopg.Connection[Any], scheduled_for: datetime) -> dict[str, int]:
    """Usage alerts of the customers whose month so far passed their level (``care.notices``)."""
    from care import notices

    zone = scheduled_for.tzinfo
    assert isinstance(zone, ZoneInfo)
    return {"queued": notices.check_thresholds(conn, scheduled_for, zone)}


def deliver_notices(
    channels: Mapping[str, Channel],
    max_attempts: int,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> JobFn:
    """Deliver what is due in the outbox, batch after batch, with ``care.worker``'s
    ``drain_once`` (claim → send → mark), until nothing is due or a minute has gone."""
    from care.worker import Worker

    def job(conn: psycopg.Connection[Any], scheduled_for: datetime) -> dict[str, int]:
        from care import outbox

        worker = Worker("", channels, NOTIFY_WORKER_ID, clock=clock, max_attempts=max_attempts)
        # The job's lock makes this run the only holder of the scheduler's worker id: rows it
        # left in flight when killed are due again at once.
        released = outbox.release(conn, NOTIFY_WORKER_ID)
        handled = 0
        deadline = time_.monotonic() + 60
        try:
            while time_.monotonic() < deadline:
                batch = worker.drain_once(conn)
                handled += batch
                if not batch:
                    break
        finally:
            worker.close()
        return {"handled": handled, "sent": worker.sent, "released": released}

    return job


def prune_job_runs(conn: psycopg.Connection[Any], scheduled_for: datetime) -> dict[str, int]:
    """Delete the runs older than :data:`RUNS_KEPT`."""
    cur = conn.execute("DELETE FROM job_runs WHERE started_at < %s", (scheduled_for - RUNS_KEPT,))
    return {"deleted": cur.rowcount}


Registry = Callable[[Context], tuple[Job, ...]]
