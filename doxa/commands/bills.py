"""``doxa bills``: computing a period's bills (contract §8)."""

from __future__ import annotations

import click
import psycopg

from billing.periods import Period
from billing.run import run_bills
from doxa.app import App


@click.group("bills")
def command() -> None:
    """Customers' bills."""


@command.command("run")
@click.option("--period", required=True, metavar="YYYY-MM", help="The month the periods end in.")
@click.pass_obj
def run_command(app: App, period: str) -> None:
    """Compute the bills of every customer whose period ends in month YYYY-MM.

    A customer with reading day d is billed from day d of the previous month to day d of YYYY-MM
    (00:00 in DOXA_TIMEZONE). Re-running replaces draft bills and never duplicates; issued bills
    are kept. Meters that cannot be billed yet (no reading on one side of a boundary, no tariff
    in force…) are listed with the reason, and the command still exits 0; exit 2 means a bad
    period, 1 a database failure.
    """
    parsed = Period.parse(period)  # PeriodError: exit 2
    with psycopg.connect(app.database_url()) as conn:
        report = run_bills(conn, parsed, app.settings.timezone)  # BillingDataError: exit 1
    kept = f", {len(report.kept_issued)} kept (already issued)" if report.kept_issued else ""
    click.echo(
        f"bills {report.period}: {report.written} computed ({report.estimated} estimated)"
        f"{kept}, {len(report.skipped)} skipped"
    )
    for skip in report.skipped:
        click.echo(f"skipped {skip.customer_code} meter {skip.meter_serial}: {skip.reason}")
