"""``doxa backfill``: the explicit path for history older than the intake horizon (issue 20).

The collector rejects readings more than DOXA_READING_HORIZON_DAYS old (a hostile or broken
sender must not write into closed billing periods); an operator loads older history here. Same
payload as MQTT's native format, same parser and the same bounds (register, power, the meter's
installation time, nothing in the future), only without the horizon. All or nothing: any bad
line is reported with its number and nothing is written; writes are idempotent, so running it
again (after a failure midway) stores each reading once. Audited (``readings.backfill``).
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import click
import psycopg

from doxa.app import App
from doxa.errors import BadInput, Failure
from schema import audit

_BATCH = 1000  # lines (units) per write


@click.command("backfill")
@click.option("--meter", "serial", required=True, metavar="SERIAL", help="The meter's serial.")
@click.option(
    "--reason", required=True, metavar="TEXT", help="Why this history is loaded (audited)."
)
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path, allow_dash=True))
@click.pass_obj
def command(app: App, serial: str, reason: str, file: Path) -> None:
    """Load a meter's history from FILE, one native payload per line (a JSON object or array, as
    on MQTT; '-' reads stdin). Older than the collector's horizon is allowed; the other intake
    bounds apply."""
    from collector.intake import MeterFacts, impossible
    from collector.units import Unit
    from collector.writer import DatabaseUnavailable, Writer
    from doxa.commands.collect import intake_limits
    from protocols.errors import PayloadError
    from protocols.payloads import parse_payload

    if not reason.strip():
        raise BadInput("--reason must not be empty")
    try:
        raw = sys.stdin.buffer.read() if str(file) == "-" else file.read_bytes()
    except OSError as exc:
        raise BadInput(f"cannot read {file}: {exc.strerror}") from exc
    settings = app.settings
    limits = intake_limits(settings)
    now = datetime.now(UTC)
    url = app.database_url()
    with psycopg.connect(url, autocommit=True) as conn:
        meter = conn.execute(
            "SELECT model, (to_jsonb(m) ->> 'installed_at')::timestamptz FROM meters m"
            " WHERE serial = %s",
            (serial,),
        ).fetchone()
    if meter is None:
        raise BadInput(f"no meter {serial!r}")
    facts = MeterFacts(meter[0], meter[1])
    units: list[Unit] = []
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            readings = parse_payload("native", serial, line, tz=settings.timezone, now=now)
        except PayloadError as exc:
            raise BadInput(f"{file}: line {number}: {exc.reason}") from None
        for reading in readings:
            why = impossible(reading, facts, limits, received_at=now, backfill=True)
            if why is not None:
                raise BadInput(f"{file}: line {number}: {why}")
        units.append(Unit("backfill", tuple(readings), serial=serial, received_at=now))
    if not units:
        raise BadInput(f"{file}: no readings")
    writer = Writer(url, "cli-backfill", limits=limits)
    inserted = duplicates = 0
    try:
        for start in range(0, len(units), _BATCH):
            result = writer.write(units[start : start + _BATCH])
            inserted += result.inserted
            duplicates += result.duplicates
    except DatabaseUnavailable as exc:  # (batches already written stay: re-running is safe)
        raise Failure(f"the database is unavailable: {exc}") from exc
    finally:
        writer.close()
    readings_count = sum(len(u.readings) for u in units)
    with psycopg.connect(url, autocommit=True) as conn:
        audit.record(
            conn,
            "cli",
            "readings.backfill",
            {
                "meter_serial": serial,
                "reason": reason,
                "file": str(file),
                "from": min(r.ts for u in units for r in u.readings).isoformat(),
                "to": max(r.ts for u in units for r in u.readings).isoformat(),
                "duplicates": duplicates,
            },
            inserted,
        )
    click.echo(
        f"back-filled {inserted} reading(s) of {serial} from {readings_count} in {file}"
        + (f" ({duplicates} already stored)" if duplicates else "")
    )
