"""``doxa meters``: the inventory of customers and meters."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import click
import psycopg

from doxa.app import App
from doxa.commands.times import instant
from doxa.errors import BadInput
from protocols.modbus.models import MODEL_NAMES
from schema.inventory import import_inventory, known_tariff_groups, parse_inventory
from schema.lifecycle import decommission_meter, replace_meter


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


@command.command("replace")
@click.argument("old_serial")
@click.option("--new-serial", required=True, help="The serial of the meter put in.")
@click.option(
    "--at",
    "at_text",
    required=True,
    metavar="ISO_TIME",
    help="When the meters were swapped (DOXA_TIMEZONE unless it names an offset).",
)
@click.option("--old-final-kwh", type=float, required=True, help="The old meter's last index.")
@click.option(
    "--new-start-kwh",
    type=float,
    default=0.0,
    show_default=True,
    help="The new meter's index when put in.",
)
@click.option("--note", default="", help="Why, or the work order (audited).")
@click.option("--model", help="The new meter's model (default: the old one's).")
@click.option("--host", help="Its gateway host (default: the old one's).")
@click.option("--port", type=click.IntRange(1, 65535), help="Its gateway port.")
@click.option("--unit-id", type=click.IntRange(1, 247), help="Its Modbus unit id.")
@click.option("--multiplier", type=float, help="Its CT ratio (default: the old one's).")
@click.pass_obj
def replace_command(app: App, old_serial: str, new_serial: str, at_text: str,
                    old_final_kwh: float, new_start_kwh: float, note: str, model: str | None,
                    host: str | None, port: int | None, unit_id: int | None,
                    multiplier: float | None) -> None:  # fmt: skip
    """Record that meter OLD_SERIAL was replaced: it stops at --old-final-kwh and the new meter
    (same customer, same protocol fields unless given) starts at --new-start-kwh.

    The use across the swap is billed once, on the new meter's bill; the old meter is no longer
    polled and the new serial is polled and accepted at once.
    """
    from decimal import Decimal

    zone = app.settings.timezone
    at = instant(at_text, zone)
    if model is not None and model.lower() not in MODEL_NAMES:
        raise BadInput(f"--model: {model!r} is not one of {', '.join(sorted(MODEL_NAMES))}")
    fields = {"model": model.lower() if model else None, "host": host, "port": port,
              "unit_id": unit_id,
              "multiplier": Decimal(str(multiplier)) if multiplier else None}  # fmt: skip
    with psycopg.connect(app.database_url()) as conn:
        done = replace_meter(conn, old_serial, new_serial, at, old_final_kwh,
                             new_start_kwh=new_start_kwh, note=note, actor="cli", now=_now(),
                             zone=zone, fields=fields)  # fmt: skip
    click.echo(
        f"meter {done.old_serial} replaced by {done.new_serial} at {at.isoformat()}"
        f" (old final {old_final_kwh:g} kWh, new start {new_start_kwh:g} kWh)"
    )


@command.command("decommission")
@click.argument("serial")
@click.option(
    "--at",
    "at_text",
    required=True,
    metavar="ISO_TIME",
    help="When it was taken out (DOXA_TIMEZONE unless it names an offset).",
)
@click.option("--final-kwh", type=float, help="Its last index (default: its last reading).")
@click.option("--note", default="", help="Why (audited).")
@click.pass_obj
def decommission_command(
    app: App, serial: str, at_text: str, final_kwh: float | None, note: str
) -> None:
    """Take meter SERIAL out of service: no longer polled or expected, not billed after its last
    period (which ends at --at), kept with its history."""
    zone = app.settings.timezone
    at = instant(at_text, zone)
    with psycopg.connect(app.database_url()) as conn:
        decommission_meter(conn, serial, at, final_kwh=final_kwh, note=note, actor="cli",
                           now=_now(), zone=zone)  # fmt: skip
    click.echo(f"meter {serial} decommissioned at {at.isoformat()}")


def _now() -> datetime:
    return datetime.now(UTC)
