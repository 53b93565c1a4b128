"""``doxa rollup`` and ``doxa retention``: the daily rollup and raw-readings retention (contract
§14), the same functions the scheduler runs (``schema.rollup``, ``schema.retention``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click
import psycopg

from doxa.app import App
from doxa.errors import BadInput
from schema.retention import apply_retention
from schema.rollup import MAX_DAYS, rollup_days

_DATE = click.DateTime(formats=["%Y-%m-%d"])


@click.command("rollup")
@click.option("--from", "date_from", type=_DATE, required=True, help="First local day, YYYY-MM-DD.")
@click.option("--to", "date_to", type=_DATE, required=True, help="Last local day (included).")
@click.pass_obj
def rollup_command(app: App, date_from: Any, date_to: Any) -> None:
    """Roll up the local days FROM..TO of every meter into the daily table (meter_days) and the
    completeness per province (province_days). Idempotent; the scheduler does the last days
    each night, this catches up back-filled history."""
    first, last = date_from.date(), date_to.date()
    if first > last:
        raise BadInput(f"--from {first} is after --to {last}")
    if (last - first).days >= MAX_DAYS:
        raise BadInput(f"at most {MAX_DAYS} days at once")
    settings = app.settings
    with psycopg.connect(app.database_url(), autocommit=True) as conn:
        counts = rollup_days(
            conn,
            first,
            last,
            zone=settings.timezone,
            mqtt_interval=settings.mqtt_interval,
            poll_interval=settings.poll_interval,
        )
    click.echo(f"rollup {first}..{last}: {counts}")


@click.command("retention")
@click.option(
    "--months",
    type=int,
    default=None,
    help="Keep this many months of raw readings (default DOXA_RETENTION_MONTHS).",
)
@click.pass_obj
def retention_command(app: App, months: int | None) -> None:
    """Drop raw readings chunks older than N months (DOXA_RETENTION_MONTHS; 0 keeps all), after
    rolling up any day of them not rolled up yet. Bills and the daily rollup stay."""
    keep = app.settings.retention_months if months is None else months
    if keep < 0:
        raise BadInput(f"--months must be 0 or more, not {keep}")
    with psycopg.connect(app.database_url(), autocommit=True) as conn:
        counts = apply_retention(conn, datetime.now(UTC), months=keep, zone=app.settings.timezone,
                                 mqtt_interval=app.settings.mqtt_interval,
                                 poll_interval=app.settings.poll_interval)  # fmt: skip
    click.echo(str(counts))
