"""``doxa scheduler``: run the periodic jobs until SIGTERM (contract §15; ``operations``)."""

from __future__ import annotations

import logging
import signal
import threading

import click

from doxa.app import App
from doxa.commands.notify import channels
from doxa.errors import BadInput


@click.command("scheduler")
@click.option(
    "--list", "list_jobs", is_flag=True, help="List the jobs and their schedules, then exit."
)
@click.option("--sweep-every", type=click.FloatRange(min=0.1), default=60.0, show_default=True,
              metavar="SECONDS", help="Seconds between runs of what is owed (a failed, killed or"
              " contended run).")  # fmt: skip
@click.pass_obj
def command(app: App, list_jobs: bool, sweep_every: float) -> None:
    """Run the periodic jobs until SIGTERM or Ctrl-C: each day (DOXA_SCHEDULER_DAILY_AT) the
    rollup, validation, the bills of the customers whose reading day it is, their issue (what is
    not held) and retention; the planned-outage notices, usage alerts and the delivery of due
    notices every minute or so.

    Several schedulers may run at once (two hosts): each job runs once per scheduled instant. At
    start, a run missed while no scheduler was running is caught up, once. Every run is a row of
    job_runs, shown on /ops.
    """
    from operations.jobs import Context, registry
    from operations.scheduler import Runner, serve

    settings = app.settings
    ctx = Context(
        zone=settings.timezone,
        daily_at=settings.scheduler_daily_at,
        channels=channels(app),  # type: ignore[arg-type]
        notify_max_attempts=settings.notify_max_attempts,
        notices_every=settings.scheduler_notices_every,
        retention_months=settings.retention_months,
        mqtt_interval=settings.mqtt_interval,
        poll_interval=settings.poll_interval,
    )
    jobs = registry(ctx)
    skip = set(settings.scheduler_skip or ())
    unknown = skip - {job.name for job in jobs}
    if unknown:
        raise BadInput(f"DOXA_SCHEDULER_SKIP: no job named {sorted(unknown)[0]!r}")
    if "bills" in skip and "issue" not in skip:
        raise BadInput("DOXA_SCHEDULER_SKIP: the issue job waits for the bills job; skip both")
    jobs = tuple(job for job in jobs if job.name not in skip)
    if list_jobs:
        for job in jobs:
            click.echo(f"{job.name}\t{job.schedule}")
        return
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    runner = Runner(app.database_url(), jobs)
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        serve(runner, stop, ready=lambda: click.echo(
            f"scheduler running {len(jobs)} job(s): {', '.join(j.name for j in jobs)}",
            err=True), sweep_every=sweep_every)  # fmt: skip
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    click.echo("scheduler stopped", err=True)
