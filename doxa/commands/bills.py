"""``doxa bills``: computing, issuing and correcting a period's bills (contract §8, §11)."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime

import click
import psycopg

from billing.correct import correct
from billing.issue import issue_period
from billing.periods import Period
from billing.run import MeterRange, RunReport, run_bills, split_ranges
from doxa.app import App
from doxa.errors import BadInput


def _run_range(
    url: str, period: Period, zone_key: str, reading_day: int | None, meter_range: MeterRange
) -> RunReport:
    """One worker process of ``--workers``: its own connection, its own range of meters."""
    from zoneinfo import ZoneInfo

    with psycopg.connect(url) as conn:
        return run_bills(
            conn, period, ZoneInfo(zone_key), reading_day=reading_day, meter_range=meter_range
        )


@click.group("bills")
def command() -> None:
    """Customers' bills."""


@command.command("run")
@click.option("--period", required=True, metavar="YYYY-MM", help="The month the periods end in.")
@click.option(
    "--reading-day",
    type=int,
    default=None,
    metavar="N",
    help="Only the customers whose reading day is N (1-28).",
)
@click.option(
    "--workers",
    type=int,
    default=1,
    show_default=True,
    metavar="K",
    help="Processes splitting the meters by ranges of meter ids.",
)
@click.pass_obj
def run_command(app: App, period: str, reading_day: int | None, workers: int) -> None:
    """Compute the bills of every customer whose period ends in month YYYY-MM.

    A customer with reading day d is billed from day d of the previous month to day d of YYYY-MM
    (00:00 in DOXA_TIMEZONE). Re-running replaces draft bills and never duplicates; issued bills
    are kept. Meters that cannot be billed yet (no reading on one side of a boundary, no tariff
    in force…) are listed with the reason, and the command still exits 0; exit 2 means a bad
    period, reading day or worker count, 1 a database failure.
    """
    parsed = Period.parse(period)  # PeriodError: exit 2
    if reading_day is not None and not 1 <= reading_day <= 28:
        raise BadInput(f"--reading-day must be 1-28, not {reading_day}")
    if not 1 <= workers <= 64:
        raise BadInput(f"--workers must be 1-64, not {workers}")
    url = app.database_url()
    zone = app.settings.timezone
    if workers == 1:
        with psycopg.connect(url) as conn:
            report = run_bills(conn, parsed, zone, reading_day=reading_day)  # BillingDataError
    else:
        with psycopg.connect(url) as conn:
            ranges = split_ranges(conn, workers, reading_day=reading_day)
        report = RunReport(str(parsed))
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max(1, len(ranges)), mp_context=context) as pool:
            futures = [
                pool.submit(_run_range, url, parsed, zone.key, reading_day, r) for r in ranges
            ]
            for future in futures:
                part = future.result()
                report.written += part.written
                report.estimated += part.estimated
                report.kept_issued += part.kept_issued
                report.skipped += part.skipped
        report.skipped.sort(key=lambda s: (s.customer_code, s.meter_serial))
    kept = f", {len(report.kept_issued)} kept (already issued)" if report.kept_issued else ""
    click.echo(
        f"bills {report.period}: {report.written} computed ({report.estimated} estimated)"
        f"{kept}, {len(report.skipped)} skipped"
    )
    for skip in report.skipped:
        click.echo(f"skipped {skip.customer_code} meter {skip.meter_serial}: {skip.reason}")


def _now() -> datetime:
    return datetime.now(UTC)


@command.command("issue")
@click.option("--period", required=True, metavar="YYYY-MM", help="The month the periods end in.")
@click.option("--customer-prefix", metavar="P", help="Only customer codes starting with P.")
@click.pass_obj
def issue_command(app: App, period: str, customer_prefix: str | None) -> None:
    """Issue the period's draft bills that are not held; an issued bill never changes.

    A draft is held (left a draft, with its reason) when its consumption is more than 30 % above
    the customer's previous issued bill (over_30_percent), when it rests on an estimated index
    (estimated_boundary), or when a validation exception is open on its meter (open_exception).
    Staff release held bills at /staff/bills. Issuing again issues nothing new. Prints how many
    were issued and how many are held, then one line per held bill.
    """
    parsed = Period.parse(period)
    with psycopg.connect(app.database_url()) as conn:
        result = issue_period(conn, parsed, customer_prefix, "cli", _now(), app.settings.timezone)
    click.echo(f"bills {result.period}: {len(result.issued)} issued, {len(result.held)} held")
    for h in result.held:
        click.echo(f"held {h.customer_code} meter {h.meter_serial}: {h.reason}")


@command.command("correct")
@click.argument("code")
@click.option("--period", required=True, metavar="YYYY-MM", help="The period of the bill.")
@click.option("--reason", required=True, help="Why the bill is corrected (audited, shown).")
@click.option("--meter", "meter_serial", help="Only this meter's bill (default: every meter's).")
@click.pass_obj
def correct_command(
    app: App, code: str, period: str, reason: str, meter_serial: str | None
) -> None:
    """Re-bill an issued bill: it stays, and a new version holding the difference is issued.

    The bill is computed again from the readings and the inventory as they are now; exit 2 when
    the customer has no issued bill of the period or nothing changed.
    """
    parsed = Period.parse(period)
    with psycopg.connect(app.database_url()) as conn:
        made = correct(conn, code, parsed, reason, "cli", _now(), app.settings.timezone,
                       meter_serial)  # fmt: skip
    for c in made:
        d = c.difference
        click.echo(
            f"corrected {code.strip().upper()} meter {c.meter_serial} {parsed}: version"
            f" {c.version} (bill {c.bill_id}), {d['consumption_kwh']:+d} kWh,"
            f" {d['total_vnd']:+d} VND with VAT"
        )
