"""``doxa customers``: the accounts (contract §11)."""

from __future__ import annotations

from datetime import UTC, datetime

import click
import psycopg

from doxa.app import App
from doxa.commands.times import day
from schema.lifecycle import transfer_customer


@click.group("customers")
def command() -> None:
    """Customers' accounts."""


@command.command("transfer")
@click.argument("code")
@click.option("--name", required=True, help="The new owner's name.")
@click.option("--at", "at_text", metavar="DATE", help="From this day, YYYY-MM-DD (default: today).")
@click.option("--note", default="", help="The contract or request it rests on (audited).")
@click.pass_obj
def transfer_command(app: App, code: str, name: str, at_text: str | None, note: str) -> None:
    """A change of owner: account CODE bears NAME from --at on; bills whose period ends on or
    before that day keep the old name, and an issued bill keeps the name it was issued with."""
    zone = app.settings.timezone
    now = datetime.now(UTC)
    on = day(at_text) if at_text else now.astimezone(zone).date()
    with psycopg.connect(app.database_url()) as conn:
        before = transfer_customer(conn, code, name, on, actor="cli", now=now, zone=zone,
                                   note=note)  # fmt: skip
    new = " ".join(name.split())
    click.echo(f"customer {code.strip().upper()}: {before!r} → {new!r} from {on}")
