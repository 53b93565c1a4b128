"""The life of a meter and of an account (contract §11): replacement, decommissioning, change of
owner. I/O; each change in one transaction, audited with the values before it, and each meter
change bumps ``inventory_version`` so collectors pick it up within seconds (they check the
version every ``inventory_interval``, 5 s by default).

- **Replacement** (:func:`replace_meter`): the old meter is retired at the swap instant (no
  longer polled, listed as stale or expected on ``/ops``, nor billed for periods ending after
  the swap) and a new meter row takes its place for the same customer, with the old one's
  protocol fields unless given; the swap is the new meter's ``meter_resets`` row (old final
  value, new start value), so the one register rule bills the period across it once: the old
  register's use up to the swap plus the new one's after (``schema.register_inputs``). The same
  serial as new serial records a register replacement on the same meter.
- **Decommissioning** (:func:`decommission_meter`): the meter is retired, kept with its history;
  its final reading (the value given, else its last reading carried to the instant as an
  *estimated* reading, so the final bill is held for a look) closes its last bill.
- **Change of owner** (:func:`transfer_customer`): the account's name from a date on; bills
  whose period ends on or before that date keep the old name (``customer_name_on``), issued
  bills keep the name they were issued with.

Neither a replacement nor a decommissioning may fall inside a period already issued for the
meter: correct the bill after recording it would be needed, so it is refused and says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from doxa.errors import LifecycleError
from metering.calendar import local_midnight
from metering.register import DROP_NOISE_KWH
from schema import audit
from schema.identifiers import SERIAL

MAX_NAME = 200
# How far ahead of the clock an instant may be (clocks of staff machines drift).
CLOCK_SLACK = timedelta(minutes=10)
_METER_COLUMNS = (
    "id, serial, customer_id, protocol, model, host, port, unit_id, multiplier, collector_id,"
    " households, framing, request_delay_ms, timeout_ms, active, retired_at"
)


@dataclass(frozen=True)
class Replaced:
    old_serial: str
    new_serial: str
    new_meter_id: int


def _bump(conn: psycopg.Connection[Any]) -> None:
    conn.execute("UPDATE inventory_version SET version = version + 1, changed_at = now()")


def _meter(conn: psycopg.Connection[Any], serial: str) -> dict[str, Any]:
    cur = conn.execute(
        f"SELECT {_METER_COLUMNS} FROM meters WHERE serial = %s FOR NO KEY UPDATE", (serial,)
    )
    row = cur.fetchone()
    if row is None:
        raise LifecycleError(f"no meter {serial!r}")
    meter = dict(zip([c.name for c in cur.description or ()], row, strict=True))
    if meter["retired_at"] is not None:
        raise LifecycleError(
            f"meter {serial} was already retired at {meter['retired_at'].isoformat()}"
        )
    return meter


def _check_instant(conn: psycopg.Connection[Any], meter: dict[str, Any], at: datetime,
                   now: datetime, zone: ZoneInfo) -> None:  # fmt: skip
    if at.tzinfo is None:
        raise LifecycleError("the instant needs a time zone")
    if at > now + CLOCK_SLACK:
        raise LifecycleError(f"{at.isoformat()} is in the future")
    row = conn.execute(
        "SELECT b.period, b.period_end FROM bills b WHERE b.meter_id = %s AND b.status = 'issued'"
        " ORDER BY b.period_end DESC LIMIT 1",
        (meter["id"],),
    ).fetchone()
    if row is not None:
        period, end = row
        if at < local_midnight(end, zone):
            raise LifecycleError(
                f"meter {meter['serial']} has an issued bill of {period} ending {end}: the change"
                f" at {at.isoformat()} falls inside it"
            )


def _kwh(value: float, what: str) -> float:
    if not math.isfinite(value) or value < 0 or value >= 1e11:
        raise LifecycleError(f"{what} must be a register value in kWh, not {value:g}")
    return value


def replace_meter(
    conn: psycopg.Connection[Any],
    old_serial: str,
    new_serial: str,
    at: datetime,
    old_final_kwh: float,
    *,
    new_start_kwh: float = 0.0,
    note: str = "",
    actor: str,
    now: datetime,
    zone: ZoneInfo,
    fields: dict[str, Any] | None = None,
) -> Replaced:
    """Record that ``old_serial`` was replaced by ``new_serial`` at ``at`` (see the module
    docstring). ``fields`` may give the new meter's ``model``, ``host``, ``port``, ``unit_id``,
    ``multiplier``."""
    if not SERIAL.match(new_serial):
        raise LifecycleError(f"{new_serial!r} is not a meter serial")
    old_final_kwh = _kwh(old_final_kwh, "the old meter's final value")
    new_start_kwh = _kwh(new_start_kwh, "the new meter's start value")
    with conn.transaction():
        conn.execute("LOCK TABLE meters IN SHARE ROW EXCLUSIVE MODE")
        old = _meter(conn, old_serial)
        _check_instant(conn, old, at, now, zone)
        last = conn.execute(
            "SELECT ts, energy_import_kwh FROM readings WHERE meter_id = %s AND ts < %s"
            " AND ts >= %s ORDER BY ts DESC LIMIT 1",
            (old["id"], at, at - timedelta(days=400)),
        ).fetchone()
        if last is not None and old_final_kwh < last[1] - DROP_NOISE_KWH:
            raise LifecycleError(
                f"the old meter's final value {old_final_kwh:g} kWh is below its last reading,"
                f" {last[1]:g} kWh at {last[0].isoformat()}"
            )
        if new_serial == old_serial:
            conn.execute(
                "INSERT INTO meter_resets (meter_id, ts, old_final_kwh, new_start_kwh, note)"
                " VALUES (%s, %s, %s, %s, %s)",
                (old["id"], at, old_final_kwh, new_start_kwh, note),
            )
            new_id = int(old["id"])
        else:
            if conn.execute("SELECT 1 FROM meters WHERE serial = %s", (new_serial,)).fetchone():
                raise LifecycleError(f"meter {new_serial} already exists")
            conn.execute(
                "UPDATE meters SET active = false, retired_at = %s, retired_reason = 'replaced',"
                " updated_at = %s WHERE id = %s",
                (at, now, old["id"]),
            )
            new = {k: old[k] for k in ("protocol", "model", "host", "port", "unit_id",
                                        "multiplier", "collector_id", "households", "framing",
                                        "request_delay_ms", "timeout_ms")}  # fmt: skip
            new.update({k: v for k, v in (fields or {}).items() if v is not None})
            try:
                with conn.transaction():
                    row = conn.execute(
                        "INSERT INTO meters (serial, customer_id, protocol, model, host, port,"
                        " unit_id, multiplier, collector_id, households, framing,"
                        " request_delay_ms, timeout_ms, replaces_meter_id, installed_at)"
                        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                        " RETURNING id",
                        (new_serial, old["customer_id"], *new.values(), old["id"], at),
                    ).fetchone()
            except psycopg.errors.UniqueViolation as exc:
                raise LifecycleError(
                    f"{new['host']}:{new['port']} unit {new['unit_id']} belongs to another meter"
                ) from exc
            assert row is not None
            new_id = int(row[0])
            conn.execute(
                "INSERT INTO meter_resets (meter_id, ts, old_final_kwh, new_start_kwh, note)"
                " VALUES (%s, %s, %s, %s, %s)",
                (new_id, at, old_final_kwh, new_start_kwh, note),
            )
            # The old meter's own register ends on its final value: its bill of a period ending
            # at the swap, and its closing index there, read it.
            conn.execute(
                "INSERT INTO readings (meter_id, ts, energy_import_kwh, quality, source)"
                " VALUES (%s, %s, %s, 'actual', 'manual') ON CONFLICT DO NOTHING",
                (old["id"], at, old_final_kwh),
            )
        _bump(conn)
        audit.record(conn, actor, "meter.replace",
                     {"old_serial": old_serial, "new_serial": new_serial, "at": at.isoformat(),
                      "old_final_kwh": old_final_kwh, "new_start_kwh": new_start_kwh,
                      "note": note, "before": _jsonable(old), "new_meter_id": new_id})  # fmt: skip
    return Replaced(old_serial, new_serial, new_id)


def decommission_meter(
    conn: psycopg.Connection[Any],
    serial: str,
    at: datetime,
    *,
    final_kwh: float | None = None,
    note: str = "",
    actor: str,
    now: datetime,
    zone: ZoneInfo,
) -> None:
    """Retire ``serial`` at ``at`` (see the module docstring)."""
    if final_kwh is not None:
        final_kwh = _kwh(final_kwh, "the final value")
    with conn.transaction():
        meter = _meter(conn, serial)
        _check_instant(conn, meter, at, now, zone)
        at_row = conn.execute(
            "SELECT energy_import_kwh FROM readings WHERE meter_id = %s AND ts = %s",
            (meter["id"], at),
        ).fetchone()
        final: tuple[float, str] | None = None
        if at_row is not None:
            if final_kwh is not None and abs(at_row[0] - final_kwh) > 1e-9:
                raise LifecycleError(
                    f"meter {serial} has a reading of {at_row[0]:g} kWh at {at.isoformat()},"
                    f" not {final_kwh:g}"
                )
        elif final_kwh is not None:
            final = (final_kwh, "actual")
        else:
            last = conn.execute(
                "SELECT energy_import_kwh FROM readings WHERE meter_id = %s AND ts < %s"
                " AND ts >= %s ORDER BY ts DESC LIMIT 1",
                (meter["id"], at, at - timedelta(days=62)),
            ).fetchone()
            if last is not None:
                final = (float(last[0]), "estimated")
        if final is not None:
            conn.execute(
                "INSERT INTO readings (meter_id, ts, energy_import_kwh, quality, source)"
                " VALUES (%s, %s, %s, %s, 'manual')",
                (meter["id"], at, *final),
            )
        conn.execute(
            "UPDATE meters SET active = false, retired_at = %s, retired_reason = 'decommissioned',"
            " updated_at = %s WHERE id = %s",
            (at, now, meter["id"]),
        )
        _bump(conn)
        audit.record(conn, actor, "meter.decommission",
                     {"serial": serial, "at": at.isoformat(), "final_kwh": final_kwh,
                      "final_reading": list(final) if final else None, "note": note,
                      "before": _jsonable(meter)})  # fmt: skip


def transfer_customer(
    conn: psycopg.Connection[Any],
    customer: str | int,
    name: str,
    on: date,
    *,
    actor: str,
    now: datetime,
    zone: ZoneInfo,
    note: str = "",
) -> str:
    """A change of owner of the account ``customer`` (its code, or its id) from day ``on``;
    returns the name it replaced."""
    name = " ".join(name.split())
    if not name or len(name) > MAX_NAME:
        raise LifecycleError(f"the new name must be 1–{MAX_NAME} characters")
    today = now.astimezone(zone).date()
    if on > today:
        raise LifecycleError(f"a change of owner cannot be dated in the future ({on})")
    with conn.transaction():
        column = "id" if isinstance(customer, int) else "code"
        key = customer if isinstance(customer, int) else customer.strip().upper()
        row = conn.execute(
            f"SELECT id, code, name FROM customers WHERE {column} = %s FOR UPDATE", (key,)
        ).fetchone()
        if row is None:
            raise LifecycleError(f"no customer {customer}")
        customer_id, code, current = row
        latest = conn.execute(
            "SELECT max(effective_from) FROM customer_names WHERE customer_id = %s",
            (customer_id,),
        ).fetchone()
        if latest is not None and latest[0] is not None and on < latest[0]:
            raise LifecycleError(
                f"customer {code} changed owner on {latest[0]}: a change must be on or after it"
            )
        previous = conn.execute(
            "SELECT customer_name_on(%s, %s)", (customer_id, on - timedelta(days=1))
        ).fetchone()
        before = str(previous[0]) if previous else str(current)
        conn.execute(
            "INSERT INTO customer_names (customer_id, effective_from, name, previous_name, actor,"
            " note, recorded_at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (customer_id, on, name, before, actor, note, now),
        )
        conn.execute(
            "UPDATE customers SET name = %s, updated_at = %s WHERE id = %s",
            (name, now, customer_id),
        )
        audit.record(conn, actor, "customer.transfer",
                     {"customer_id": customer_id, "customer_code": code,
                      "effective_from": on.isoformat(), "old": before, "current_before": current,
                      "new": name, "note": note})  # fmt: skip
    return before


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else
                str(v) if not isinstance(v, int | str | bool | type(None)) else v)
            for k, v in row.items()}  # fmt: skip
