"""``doxa export``: readings, closing indices and bills as CSV or XLSX (contract §3).

The same code as the staff pages' exports (``exports``); every run is written to the
audit log with actor ``cli`` and its row count.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any, BinaryIO

import click
import psycopg

import exports
from doxa.app import App
from doxa.errors import BadInput
from metering.register import MAX_GAP, SEARCH_WINDOW
from schema import audit

_DATE = click.DateTime(formats=["%Y-%m-%d"])


def _common(fn: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(
        (
            click.option("--province", help="Only customers of this province."),
            click.option(
                "--customer-prefix",
                help="Only customer codes starting with this (a branch, e.g. PB0101).",
            ),
            click.option(
                "--format",
                "fmt",
                type=click.Choice(exports.FORMATS),
                default="csv",
                show_default=True,
            ),
            click.option(
                "--out",
                default="-",
                show_default=True,
                help="File to write; '-' is standard output.",
            ),
        )
    ):
        fn = option(fn)
    return fn


@click.group("export")
def command() -> None:
    """Export readings, closing indices and bills as CSV or XLSX."""


@contextlib.contextmanager
def _output(out: str, fmt: str) -> Iterator[BinaryIO]:
    """Standard output, or a file that appears only once the export is complete."""
    if out == "-":
        if fmt == "xlsx" and sys.stdout.isatty():
            raise BadInput("will not write an XLSX workbook to a terminal; use --out FILE")
        sys.stdout.flush()
        stream = sys.stdout.buffer
        yield stream
        stream.flush()
        return
    target = Path(out)
    directory = target.parent if str(target.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=directory)
    except OSError as exc:
        raise BadInput(f"cannot write {out}: {exc.strerror}") from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _run(app: App, spec: exports.ExportSpec, fmt: str, out: str) -> None:
    # Read from the replica when DOXA_DATABASE_READ_URL names one; the audit row goes to the
    # primary.
    with psycopg.connect(app.read_database_url(), autocommit=True) as read:
        meters = tuple(spec.detail.get("meters", ()))
        unknown = exports.unknown_meters(read, meters)
        if unknown:
            raise BadInput(f"unknown meter serial {unknown[0]!r}")
        with _output(out, fmt) as stream:
            rows = exports.write_export(read, spec, fmt, stream)
    with psycopg.connect(app.database_url(), autocommit=True) as conn:
        audit.record(
            conn,
            "cli",
            f"export.{spec.kind}",
            {**spec.detail, "format": fmt, "via": "cli", "os_user": _os_user(), "out": out},
            rows,
        )
    if out != "-":
        click.echo(f"exported {rows} row(s) to {out}", err=True)


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def _spec(build: Callable[[], exports.ExportSpec]) -> exports.ExportSpec:
    try:
        return build()
    except exports.ExportError as exc:
        raise BadInput(str(exc)) from exc


def _selection(
    province: str | None, customer_prefix: str | None, meters: tuple[str, ...] = ()
) -> exports.Selection:
    return exports.Selection(
        province=province or None, customer_prefix=customer_prefix or None, meters=meters
    )


@command.command("readings")
@click.option("--from", "date_from", type=_DATE, required=True, help="First local day, YYYY-MM-DD.")
@click.option("--to", "date_to", type=_DATE, required=True, help="Last local day (included).")
@click.option("--meter", "meters", multiple=True, help="Only this meter serial (repeatable).")
@click.option(
    "--history",
    is_flag=True,
    help="One row per version of each reading, with version, actor, changed_at and reason.",
)
@_common
@click.pass_obj
def readings_command(
    app: App,
    date_from: Any,
    date_to: Any,
    meters: tuple[str, ...],
    history: bool,
    province: str | None,
    customer_prefix: str | None,
    fmt: str,
    out: str,
) -> None:
    """Readings of the local days FROM..TO (both included), by time then meter serial.

    Columns: meter_serial, customer_code, ts (ISO 8601 in DOXA_TIMEZONE with its offset),
    energy_import_kwh, energy_export_kwh, power_w, voltage_v, current_a, quality; with
    --history also version, actor, changed_at, reason (every version of an edited or
    estimated reading, oldest first).
    """
    start: date = date_from.date()
    end: date = date_to.date()
    tz = str(app.settings.timezone)
    selection = _selection(province, customer_prefix, tuple(dict.fromkeys(meters)))
    spec = _spec(lambda: exports.readings(start, end, tz, selection, history=history))
    _run(app, spec, fmt, out)


@command.command("bills")
@click.option("--period", required=True, help="Billing period, YYYY-MM.")
@click.option("--status", type=click.Choice(exports.BILL_STATUSES),
              help="Only bills in this state (held: drafts held back from issue).")  # fmt: skip
@_common
@click.pass_obj
def bills_command(
    app: App,
    period: str,
    status: str | None,
    province: str | None,
    customer_prefix: str | None,
    fmt: str,
    out: str,
) -> None:
    """Bills of a period, by customer code, meter serial then version.

    Columns: customer_code, meter_serial, period_start, period_end, days, start_index_kwh,
    end_index_kwh, consumption_kwh, amount_vnd (before VAT), vat_vnd, total_vnd, estimated,
    status (draft, held or issued), version (a correction is a further version holding the
    difference), households, held_reason.
    """
    selection = _selection(province, customer_prefix)
    _run(app, _spec(lambda: exports.bills(period, selection, status)), fmt, out)


@command.command(
    "closing-indices",
    help="Every active meter's register at the close of a period (reading day, 00:00 local)."
    "\n\nThe index its bill ends on: interpolated between the nearest readings on either side;"
    f" estimated when they are more than {MAX_GAP.seconds // 3600} hours apart or one is not"
    f" an actual reading; empty when a side has no reading within {SEARCH_WINDOW.days} days.",
)
@click.option("--period", required=True, help="Billing period, YYYY-MM.")
@_common
@click.pass_obj
def closing_command(
    app: App, period: str, province: str | None, customer_prefix: str | None, fmt: str, out: str
) -> None:
    tz = str(app.settings.timezone)
    selection = _selection(province, customer_prefix)
    _run(app, _spec(lambda: exports.closing_indices(period, tz, selection)), fmt, out)


@command.command("greenbutton")
@click.option("--meter", "meters", multiple=True, required=True,
              help="Meter serial (repeatable: one UsagePoint each).")  # fmt: skip
@click.option("--from", "date_from", type=_DATE, required=True, help="First local day, YYYY-MM-DD.")
@click.option("--to", "date_to", type=_DATE, required=True, help="Last local day (included).")
@click.option(
    "--out", default="-", show_default=True, help="File to write; '-' is standard output."
)
@click.pass_obj
def greenbutton_command(
    app: App, meters: tuple[str, ...], date_from: Any, date_to: Any, out: str
) -> None:
    """A Green Button (NAESB ESPI) Atom feed of the meter's interval use, FROM..TO.

    The same file the customer page offers: one IntervalReading per interval between consecutive
    readings, its value in Wh (powerOfTenMultiplier 0), computed by the metering rule; one
    IntervalBlock per local day in DOXA_TIMEZONE; ids of the UsagePoint, MeterReading and
    ReadingType the same in every download.
    """
    from datetime import UTC, datetime

    from exports import greenbutton

    start: date = date_from.date()
    end: date = date_to.date()
    zone = app.settings.timezone
    with psycopg.connect(app.database_url(), autocommit=True) as conn:
        try:
            body, intervals = greenbutton.export(conn, meters, start, end, zone, datetime.now(UTC))
        except exports.ExportError as exc:
            raise BadInput(str(exc)) from exc
        with _output(out, "xml") as stream:
            stream.write(body)
        audit.record(
            conn,
            "cli",
            "export.greenbutton",
            {"meters": list(meters), "from": str(start), "to": str(end), "via": "cli",
             "os_user": _os_user(), "out": out},
            intervals,
        )  # fmt: skip
    if out != "-":
        click.echo(f"exported {intervals} interval(s) to {out}", err=True)
