"""``doxa db``: schema management."""

from __future__ import annotations

import click

from doxa.app import App
from schema.migrate import migrate


@click.group("db")
def command() -> None:
    """Database schema."""


@command.command("migrate")
@click.pass_obj
def migrate_command(app: App) -> None:
    """Create or upgrade the schema (safe to run twice, and concurrently)."""
    applied = migrate(app.database_url())
    if applied:
        click.echo(f"applied {len(applied)} migration(s): {', '.join(applied)}")
    else:
        click.echo("schema is up to date")
