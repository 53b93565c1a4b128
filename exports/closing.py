"""The closing-index export's rows, from the metering rule: each meter's register at the close of
a period (its customer's reading day of that month, 00:00 local) is
:meth:`metering.register.Register.index_at`, the very index its bill ends on, fetched by
``schema.register_inputs`` a batch of :data:`BATCH` meters at a time (three statements a batch)
while the meters stream from a server-side cursor, so memory stays flat whatever the fleet.

``estimated`` and ``index_kwh`` are empty when a side has no reading within the search window (or
a glitch straddles the close); ``before_*``/``after_*`` name the known values the index rests on.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import psycopg

from metering.calendar import local_midnight
from metering.register import Point
from schema.register_inputs import registers

if TYPE_CHECKING:
    from exports import ExportSpec

BATCH = 2000


def iso(value: datetime | None, zone: ZoneInfo) -> str | None:
    """A time as the SQL exports write it: ISO 8601 in ``zone`` with its offset, fractions of a
    second only when there are some."""
    return None if value is None else value.astimezone(zone).isoformat()


def _number(p: Point | None) -> float | Decimal | None:
    return None if p is None else p.kwh  # type: ignore[return-value]


def rows(conn: psycopg.Connection[Any], spec: ExportSpec) -> Iterator[tuple[Any, ...]]:
    """The export's rows, in the order of its meters query (customer code, meter serial)."""
    zone = ZoneInfo(spec.timezone)
    year, month = spec.params["year"], spec.params["month"]
    with conn.cursor(name="doxa_closing") as cur:
        cur.itersize = BATCH
        cur.execute(spec.query, spec.params)
        while batch := cur.fetchmany(BATCH):
            at = {m: local_midnight(date(year, month, day), zone) for m, _, _, day in batch}
            found = registers(conn, {m: [t] for m, t in at.items()})
            for meter_id, serial, code, _ in batch:
                index = found[meter_id].index_at(at[meter_id])
                known = index.kwh is not None
                yield (
                    code,
                    serial,
                    iso(at[meter_id], zone),
                    index.kwh,
                    ("true" if index.estimated else "false") if known else None,
                    iso(index.before.ts if index.before else None, zone),
                    _number(index.before),
                    iso(index.after.ts if index.after else None, zone),
                    _number(index.after),
                )
