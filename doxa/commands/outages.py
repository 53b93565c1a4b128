"""``doxa outages``: planned outages from a script, as on the staff page ``/staff/outages``
(contract §13). Every change is written to the audit log with actor ``cli``."""

from __future__ import annotations

import csv
import sys
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import click
import psycopg

from doxa.app import App
from doxa.errors import BadInput
from servicedesk import outage_store, outages
from servicedesk.errors import ServiceDeskError

LIST_COLUMNS = ("id", "province", "customer_prefix", "start", "end", "reason", "state")


def _zone(app: App) -> ZoneInfo:
    return ZoneInfo(str(app.settings.timezone))


def _now() -> datetime:
    return datetime.now(UTC)


@click.group("outages")
def command() -> None:
    """Planned outages that customers see on their page and at /outages."""


@command.command("add")
@click.option("--province", required=True, help="The province, as in the inventory.")
@click.option("--customer-prefix", help="Only customer codes starting with this (a branch).")
@click.option(
    "--customer",
    "customers",
    multiple=True,
    metavar="CODE",
    help="Only this customer; repeat for several (instead of a prefix).",
)
@click.option("--start", required=True, metavar="ISO_TIME", help="When the power goes off.")
@click.option("--end", required=True, metavar="ISO_TIME", help="When it comes back.")
@click.option("--reason", required=True, help="Why, as customers will read it (≤ 500 chars).")
@click.pass_obj
def add_command(
    app: App,
    province: str,
    customer_prefix: str | None,
    customers: tuple[str, ...],
    start: str,
    end: str,
    reason: str,
) -> None:
    """Plan an outage. Times are ISO 8601; without an offset they are local (DOXA_TIMEZONE).

    Example: doxa outages add --province 'Bình Dương' --customer-prefix PB0101
    --start 2026-12-05T08:00 --end 2026-12-05T16:00 --reason 'Bảo trì lưới điện'
    """
    zone = _zone(app)
    try:
        area = outages.make_area(
            province, customer_prefix, outages.parse_codes(" ".join(customers))
        )
        starts_at, ends_at = outages.parse_time(start, zone), outages.parse_time(end, zone)
        with psycopg.connect(app.database_url(), autocommit=True) as conn:
            made = outage_store.add(conn, area, starts_at, ends_at, reason, "cli", _now())
            covered = outage_store.covered_customers(conn, made.id)
    except ServiceDeskError as exc:
        raise BadInput(str(exc)) from exc
    click.echo(f"added outage {made.id} (covers {covered} customers)")


@command.command("list")
@click.option("--province", help="Only outages of this province.")
@click.pass_obj
def list_command(app: App, province: str | None) -> None:
    """Every outage as CSV, newest start first: id,province,customer_prefix,start,end,reason,
    state, then customer_codes (the listed customers, space-separated). ``state`` is planned
    (ahead), ongoing, ended or cancelled."""
    zone = _zone(app)
    now = _now()
    with psycopg.connect(app.database_url(), autocommit=True) as conn:
        found = outage_store.listing(conn, province, limit=100_000)
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow((*LIST_COLUMNS, "customer_codes"))
    for o in found:
        out.writerow(
            (
                o.id,
                o.province,
                o.customer_prefix or "",
                o.starts_at.astimezone(zone).isoformat(),
                o.ends_at.astimezone(zone).isoformat(),
                o.reason,
                o.display_state(now),
                " ".join(o.customer_codes),
            )
        )


@command.command("cancel")
@click.argument("outage_id", type=int)
@click.option("--note", required=True, help="Why it is cancelled (kept in the audit log).")
@click.pass_obj
def cancel_command(app: App, outage_id: int, note: str) -> None:
    """Cancel a planned outage that has not ended; customers already told are told again."""
    try:
        with psycopg.connect(app.database_url(), autocommit=True) as conn:
            outage_store.cancel(conn, outage_id, note, "cli", _now())
    except ServiceDeskError as exc:
        raise BadInput(str(exc)) from exc
    click.echo(f"cancelled outage {outage_id}")


@command.command("notices")
@click.pass_obj
def notices_command(app: App) -> None:
    """List the notices due now (CSV; nothing is recorded or sent): outage_id,customer_code,kind.
    kind is planned (24 hours ahead), changed or cancelled."""
    with psycopg.connect(app.database_url(), autocommit=True) as conn:
        due = outage_store.due_notices(conn, _now())
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(("outage_id", "outage_version", "customer_code", "kind"))
    for n in due:
        out.writerow((n.outage_id, n.outage_version, n.customer_code, n.kind))
