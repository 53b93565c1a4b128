"""``doxa readings``: validation, estimation and editing of readings (contract §12).

``validate`` runs the rules (``vee.validate.validate_range``), ``exceptions`` lists what they
found (the exports' CSV/XLSX code), ``estimate`` fills gaps, ``edit`` corrects one reading. Every
change is in the audit log with actor ``cli``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import click
import psycopg

import exports
from doxa.app import App
from doxa.commands.export import _common, _run, _selection, _spec
from doxa.errors import BadInput

_DATE = click.DateTime(formats=["%Y-%m-%d"])


def _zone(app: App) -> ZoneInfo:
    return ZoneInfo(str(app.settings.timezone))


def _now() -> datetime:
    return datetime.now(UTC)


def _days(date_from: Any, date_to: Any) -> tuple[date, date]:
    start, end = date_from.date(), date_to.date()
    if end < start:
        raise BadInput(f"the end date {end} is before the start date {start}")
    if (end - start).days > 400:
        raise BadInput(f"at most 400 days at once: {start}..{end} is longer")
    return start, end


def parse_time(text: str, zone: ZoneInfo) -> datetime:
    """ISO 8601; without an offset, local time in ``zone``."""
    try:
        ts = datetime.fromisoformat(text.strip())
    except ValueError:
        raise BadInput(f"{text!r} is not an ISO 8601 time (e.g. 2026-11-03T10:30+07:00)") from None
    return ts.replace(tzinfo=zone) if ts.tzinfo is None else ts


@click.group("readings")
def command() -> None:
    """Validate, estimate and edit readings (VEE)."""


@command.command("validate")
@click.option("--from", "date_from", type=_DATE, required=True, help="First local day, YYYY-MM-DD.")
@click.option("--to", "date_to", type=_DATE, required=True, help="Last local day (included).")
@click.pass_obj
def validate_command(app: App, date_from: Any, date_to: Any) -> None:
    """Run the validation rules over every meter's readings of the local days FROM..TO.

    Exceptions are recorded once (re-running updates them); an open exception the rules no
    longer find in the range is closed; one that staff accepted stays closed. Thresholds are the
    table validation_thresholds (README: Validation, estimation and editing).
    """
    from vee.validate import validate_range

    start, end = _days(date_from, date_to)
    with psycopg.connect(app.database_url(), autocommit=True) as conn:
        counts = validate_range(conn, start, end, _now(), _zone(app))
    click.echo(f"validated {start}..{end}: {counts.summary()}")


@command.command("exceptions")
@click.option("--open", "open_only", is_flag=True, help="Only open exceptions.")
@click.option("--from", "date_from", type=_DATE, help="Only exceptions touching these days…")
@click.option("--to", "date_to", type=_DATE, help="…up to this local day (included).")
@_common
@click.pass_obj
def exceptions_command(
    app: App,
    open_only: bool,
    date_from: Any,
    date_to: Any,
    province: str | None,
    customer_prefix: str | None,
    fmt: str,
    out: str,
) -> None:
    """List validation exceptions, newest first.

    Columns: meter_serial, customer_code, rule, ts_from, ts_to, state, reason.
    """
    start = date_from.date() if date_from else None
    end = date_to.date() if date_to else None
    tz = str(app.settings.timezone)
    selection = _selection(province, customer_prefix)
    spec = _spec(lambda: exports.reading_exceptions(start, end, tz, selection, open_only))
    _run(app, spec, fmt, out)


@command.command("estimate")
@click.option("--from", "date_from", type=_DATE, required=True, help="First local day, YYYY-MM-DD.")
@click.option("--to", "date_to", type=_DATE, required=True, help="Last local day (included).")
@click.option("--meter", "meters", multiple=True, help="Only this meter serial (repeatable).")
@click.pass_obj
def estimate_command(app: App, date_from: Any, date_to: Any, meters: tuple[str, ...]) -> None:
    """Fill the gaps ending in the local days FROM..TO with readings of quality 'estimated'.

    Gaps up to estimate_linear_max_s (an hour) are linear; longer ones follow the meter's own
    profile (the same weekday and time of the previous weeks) scaled to both real readings.
    An existing reading is never overwritten.
    """
    from vee.store import estimate_range

    start, end = _days(date_from, date_to)
    with psycopg.connect(app.database_url(), autocommit=True) as conn:
        report = estimate_range(conn, start, end, _zone(app), "cli", _now(), meters)
    methods = ", ".join(f"{k} {v}" for k, v in sorted(report.methods.items())) or "none"
    click.echo(f"estimated {report.rows} reading(s) in {report.gaps} gap(s) ({methods})")
    for line in report.skipped:
        click.echo(f"skipped: {line}")


@command.command("edit")
@click.argument("serial")
@click.option("--ts", required=True, metavar="ISO_TIME", help="The reading's time.")
@click.option("--kwh", required=True, type=float, help="The register value, kWh.")
@click.option("--reason", required=True, help="Why (kept with the version and in the audit log).")
@click.pass_obj
def edit_command(app: App, serial: str, ts: str, kwh: float, reason: str) -> None:
    """Set the register of SERIAL's reading at --ts (quality 'edited'; added if missing).

    The value it had is kept as an earlier version: doxa export readings --history.
    """
    from vee.store import edit_reading

    zone = _zone(app)
    at = parse_time(ts, zone)
    with psycopg.connect(app.database_url(), autocommit=True) as conn:
        edit = edit_reading(conn, serial, at, kwh, reason, "cli", _now())
    before = "no reading" if edit.before_kwh is None else f"{edit.before_kwh:g} kWh"
    click.echo(
        f"edited {serial} at {at.astimezone(zone).isoformat()}: {before} → {kwh:g} kWh"
        f" (version {edit.version})"
    )
