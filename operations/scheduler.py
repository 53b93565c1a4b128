"""``doxa scheduler``: run the registry's jobs (``operations.jobs``) on time, once each. I/O.

Every run of a job is owed for one *scheduled instant* (its schedule's latest fire time) and is
a row of ``job_runs`` (job, scheduled_for, started, ended, outcome, counts, error):

- **Never two at once.** A run holds ``pg_try_advisory_lock`` keyed by the job's name on its own
  connection for as long as it works; a second scheduler (another host) that fires the same job
  meanwhile skips it, and one that fires later sees the ``ok`` row and skips it too. So two
  schedulers run each job once per instant (a partial unique index on ``ok`` rows makes it a
  database rule as well).
- **Caught up once.** At start every job fires at once: when its latest instant has no ``ok``
  row, it runs, once, for that instant (the missed instants before it are coalesced; a job that
  needs the days it missed, as the bills job does, reads them from ``job_runs``). A run that was
  killed is left ``running``; the next holder of the job's lock marks it ``interrupted`` (the
  lock proves its process is gone) and runs the instant again.
- **A failing job never stops the others**: its exception is the row's ``error`` (outcome
  ``failed``) and the next fire tries again.
- **A job that waits for another** (the issue job for the day's bills) raises :class:`NotReady`:
  its run is withdrawn (the row deleted, a line logged), not counted as a try, and the next sweep
  tries again — at start every job fires at once, before the one it waits for has finished.

APScheduler (``BackgroundScheduler``) only wakes the process: one APScheduler job per registry
entry with that entry's trigger, ``max_instances=1``, ``coalesce=True``, run in its thread pool
so a long bills run does not hold up the notices. The clock is injected (``Runner.clock``), so a
test can drive :meth:`Runner.run_due` through a day without waiting for it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from operations.schedule import Schedule

log = logging.getLogger(__name__)
Clock = Callable[[], datetime]
# Runs of one job for one instant (killed or failed) after which it waits for its next instant.
MAX_ATTEMPTS = 3
# Seconds between the sweeps that run what is owed: an instant whose run failed, was killed, or
# was skipped while another scheduler held the job.
SWEEP_EVERY = 60.0
JobFn = Callable[[psycopg.Connection[Any], datetime], Mapping[str, int]]


class NotReady(Exception):
    """Raised by a job whose input is not there yet; the message says what it waits for."""


@dataclass(frozen=True)
class Job:
    """One registry entry: a name (``[a-z_]+``), when it is due, and what it does.

    ``run(conn, scheduled_for)`` gets an autocommit connection and the instant it runs for (aware,
    in the local zone: ``scheduled_for.date()`` is the local day) and returns its counts."""

    name: str
    schedule: Schedule
    run: JobFn


def _utcnow() -> datetime:
    return datetime.now(UTC)


def lock_key(job: str) -> int:
    """The job's advisory-lock key: a hash of its name (no clash with other Doxa locks)."""
    digest = hashlib.sha256(b"doxa-job\x1f" + job.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@dataclass
class Runner:
    database_url: str
    jobs: Sequence[Job]
    clock: Clock = _utcnow

    def run_due(self, now: datetime | None = None) -> dict[str, str | None]:
        """Run every job whose latest instant is not done yet (one after the other)."""
        now = now if now is not None else self.clock()
        return {job.name: self._attempt(job, job.schedule.latest(now)) for job in self.jobs}

    def fire(self, job: Job) -> str | None:
        """What APScheduler calls: the run owed for the latest instant at the clock's now."""
        return self._attempt(job, job.schedule.latest(self.clock()))

    def _attempt(self, job: Job, scheduled_for: datetime) -> str | None:
        """:meth:`run`, with the database away waited out: one line logged, the sweep tries
        again (a run cut off by it is ``interrupted`` then)."""
        try:
            return self.run(job, scheduled_for)
        except psycopg.OperationalError as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            log.warning("job %s: database unavailable (%s); trying again later", job.name, first)
            return None

    def run(self, job: Job, scheduled_for: datetime) -> str | None:
        """Run ``job`` for ``scheduled_for`` unless done or running elsewhere; the outcome, or
        None when nothing ran."""
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (lock_key(job.name),)).fetchone()
            if not (row and row[0]):
                log.info("job %s: running in another scheduler", job.name)
                return None
            done = conn.execute(
                "SELECT 1 FROM job_runs WHERE job = %s AND scheduled_for = %s AND outcome = 'ok'",
                (job.name, scheduled_for),
            ).fetchone()
            if done:
                return None
            tries = conn.execute(
                "SELECT count(*) FROM job_runs WHERE job = %s AND scheduled_for = %s",
                (job.name, scheduled_for),
            ).fetchone()
            if tries and tries[0] >= MAX_ATTEMPTS:
                return None
            # We hold the job's lock: a run still marked running died with its process.
            conn.execute(
                "UPDATE job_runs SET outcome = 'interrupted', ended_at = %s,"
                " error = 'the scheduler stopped during the run'"
                " WHERE job = %s AND outcome = 'running'",
                (self.clock(), job.name),
            )
            run_id = conn.execute(
                "INSERT INTO job_runs (job, scheduled_for, started_at, outcome, host, pid)"
                " VALUES (%s, %s, %s, 'running', %s, %s) RETURNING id",
                (job.name, scheduled_for, self.clock(), socket.gethostname(), os.getpid()),
            ).fetchone()
            assert run_id is not None
            outcome, counts, error = "ok", {}, None
            try:
                counts = {str(k): int(v) for k, v in job.run(conn, scheduled_for).items()}
            except NotReady as exc:
                if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    conn.rollback()
                conn.execute("DELETE FROM job_runs WHERE id = %s", (run_id[0],))
                conn.execute("SELECT pg_advisory_unlock(%s)", (lock_key(job.name),))
                log.info("job %s for %s: waiting (%s)", job.name, scheduled_for.isoformat(), exc)
                return None
            except Exception as exc:  # the outermost boundary of one run: record it, go on
                if conn.closed or conn.broken:
                    raise
                log.exception("job %s failed", job.name)
                outcome, error = "failed", f"{type(exc).__name__}: {exc}"[:2000]
                if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    conn.rollback()
            conn.execute(
                "UPDATE job_runs SET ended_at = %s, outcome = %s, counts = %s, error = %s"
                " WHERE id = %s",
                (self.clock(), outcome, Jsonb(counts), error, run_id[0]),
            )
            conn.execute("SELECT pg_advisory_unlock(%s)", (lock_key(job.name),))
            log.info("job %s for %s: %s %s", job.name, scheduled_for.isoformat(), outcome, counts)
            return outcome


def serve(
    runner: Runner,
    stop: threading.Event,
    ready: Callable[[], None] | None = None,
    sweep_every: float = SWEEP_EVERY,
) -> None:
    """Run the jobs on their triggers until ``stop`` is set; every job fires once at start (the
    catch-up), and every ``sweep_every`` seconds whatever is still owed is run (at most
    :data:`MAX_ATTEMPTS` times per instant). A run in progress is finished before this returns."""
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.interval import IntervalTrigger

    scheduler = BackgroundScheduler(
        timezone=UTC,
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        executors={"default": {"type": "threadpool", "max_workers": len(runner.jobs) + 1}},
    )
    now = datetime.now(UTC)
    for job in runner.jobs:
        scheduler.add_job(runner.fire, job.schedule.trigger(), args=(job,), id=job.name,
                          name=job.name, next_run_time=now)  # fmt: skip
    scheduler.add_job(runner.run_due, IntervalTrigger(seconds=sweep_every), id="_sweep",
                      name="sweep")  # fmt: skip
    scheduler.start()
    if ready is not None:
        ready()
    try:
        stop.wait()
    finally:
        scheduler.shutdown(wait=True)
