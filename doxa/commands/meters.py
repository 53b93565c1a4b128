"""``doxa meters``: the inventory of customers and meters."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import psycopg

from doxa.app import App
from doxa.errors import BadInput
from protocols.modbus.models import MODEL_NAMES
from schema.inventory import import_inventory, known_tariff_groups, parse_inventory


@click.group("meters")
def command() -> None:
    """Customers and meters."""


@command.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path, allow_dash=True))
@click.pass_obj
def import_command(app: App, file: Path) -> None:
    """Import customers and meters from an inventory CSV (all or nothing; re-import updates)."""
    try:
        raw = sys.stdin.buffer.read() if str(file) == "-" else file.read_bytes()
    except OSError as exc:
        raise BadInput(f"cannot read {file}: {exc.strerror}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise BadInput(f"{file}: line {line} is not UTF-8 text") from exc
    with psycopg.connect(app.database_url()) as conn:
        rows = parse_inventory(text, tariff_groups=known_tariff_groups(conn), models=MODEL_NAMES)
        customers, meters = import_inventory(conn, rows)
    click.echo(f"imported {meters} meter(s) of {customers} customer(s) from {file}")
