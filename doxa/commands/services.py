"""``doxa services``: the embedded local database that commands use when DOXA_DATABASE_URL is
unset (started on first use, left running until stopped here)."""

from __future__ import annotations

import click

from doxa.app import App


@click.group("services")
def command() -> None:
    """The embedded local TimescaleDB cluster under DOXA_HOME."""


@command.command("status")
@click.pass_obj
def status(app: App) -> None:
    """Say whether the embedded cluster is running, and its URL."""
    pg = app.embedded_postgres()
    if pg.running_pid() is None:
        click.echo(f"embedded database: stopped ({pg.root})")
    else:
        click.echo(f"embedded database: running at {pg.url()} ({pg.root})")


@command.command("start")
@click.pass_obj
def start(app: App) -> None:
    """Start the embedded cluster (commands also start it on first use)."""
    pg = app.embedded_postgres()
    pg.start()
    click.echo(f"embedded database: running at {pg.url()}")


@command.command("stop")
@click.pass_obj
def stop(app: App) -> None:
    """Stop the embedded cluster."""
    app.embedded_postgres().stop()
    click.echo("embedded database: stopped")
