"""Correcting an issued bill (contract §11): ``doxa bills correct CODE --period P --reason T``.

The issued bill stays as it is (the database refuses to change it). The bill is computed again
from what is known now — a reading edited or estimated, a replacement recorded late — by the
same code as ``doxa bills run`` (``billing.run``), and a new version is issued at once, linked
to the one before it (``corrects_bill_id``), holding the **difference**: its consumption and
amounts are the recomputed bill's minus the sum of the versions before it, so the versions of a
meter's period always add up to its corrected bill (what the customer owes in all), and its
indices and breakdown are the recomputed bill's (the breakdown's ``correction`` names the
version corrected, the reason, and the totals before and after).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg.types.json import Jsonb

from billing.locks import lock_period
from billing.periods import Period
from billing.run import _bill_meter, _Run, load_tariffs, load_vat_rates, meters_to_bill
from doxa.errors import BillStateError, NoClosing, TariffError
from schema import audit
from schema.register_inputs import registers

_AMOUNTS = ("consumption_kwh", "amount_vnd", "vat_vnd", "total_vnd")


@dataclass(frozen=True)
class Correction:
    bill_id: int  # the new version
    meter_serial: str
    version: int
    difference: dict[str, int]  # consumption_kwh, amount_vnd, vat_vnd, total_vnd


def correct(
    conn: psycopg.Connection[Any],
    customer_code: str,
    period: Period,
    reason: str,
    actor: str,
    now: datetime,
    zone: ZoneInfo,
    meter_serial: str | None = None,
) -> list[Correction]:
    """Issue a correcting version of each issued bill of the customer's ``period`` (one meter's,
    when ``meter_serial`` is given) whose recomputed bill differs; raises
    :class:`BillStateError` when there is nothing to correct."""
    reason = " ".join(reason.split())
    if not reason:
        raise BillStateError("a correction needs a reason")
    code = customer_code.strip().upper()
    with conn.transaction():
        conn.execute("SELECT set_config('TimeZone', %s, true)", (zone.key,))
        lock_period(conn, period)  # one correction (or run, or issue) of a period at a time
        issued = conn.execute(
            "SELECT b.meter_id, m.serial, max(b.version), sum(b.consumption_kwh),"
            " sum(b.amount_vnd), sum(b.vat_vnd), sum(b.total_vnd),"
            " (array_agg(b.id ORDER BY b.version DESC))[1],"
            " (array_agg(b.customer_name ORDER BY b.version))[1]"
            " FROM bills b JOIN customers c ON c.id = b.customer_id"
            " JOIN meters m ON m.id = b.meter_id"
            " WHERE c.code = %s AND b.period = %s AND b.status = 'issued'"
            " AND (%s::text IS NULL OR m.serial = %s)"
            " GROUP BY b.meter_id, m.serial ORDER BY m.serial",
            (code, str(period), meter_serial, meter_serial),
        ).fetchall()
        if not issued:
            raise BillStateError(
                f"customer {code} has no issued bill of {period} to correct"
                " (a draft is recomputed by `doxa bills run`)"
            )
        run = _Run(period, zone, load_tariffs(conn), load_vat_rates(conn), set())
        ids = {int(r[0]) for r in issued}
        meters = {m.meter_id: m for m in meters_to_bill(conn, period) if m.meter_id in ids}
        windows = {i: m.window(period, zone) for i, m in meters.items()}
        found = registers(
            conn,
            {i: (w.start, w.end) for i, w in windows.items() if w},
            {i: m.serial for i, m in meters.items()},
            {i: m.predecessor for i, m in meters.items() if m.predecessor},
        )
        out = []
        for meter_id, serial, version, *before, last_id, name in issued:
            meter = meters.get(meter_id)
            if meter is None or windows.get(meter_id) is None:
                raise BillStateError(f"meter {serial} is no longer billed for {period}")
            try:
                row = _bill_meter(run, meter, found[meter_id], windows[meter_id])
            except (NoClosing, TariffError) as exc:
                raise BillStateError(
                    f"meter {serial}: the bill cannot be computed now: {exc}"
                ) from exc
            after = dict(zip(_AMOUNTS, (int(v) for v in row[8:12]), strict=True))
            previous = dict(zip(_AMOUNTS, (int(v) for v in before), strict=True))
            difference = {k: after[k] - previous[k] for k in _AMOUNTS}
            if not any(difference.values()):
                continue
            detail = row[13].obj | {
                "correction": {
                    "corrects_bill_id": last_id,
                    "corrects_version": version,
                    "reason": reason,
                    "before": previous,
                    "after": after,
                }
            }
            new = conn.execute(
                "INSERT INTO bills (customer_id, meter_id, period, period_start, period_end, days,"
                " start_index_kwh, end_index_kwh, consumption_kwh, amount_vnd, vat_vnd, total_vnd,"
                " estimated, breakdown, households, status, version, corrects_bill_id,"
                " correction_reason, customer_name, issued_at, issued_by)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'issued',"
                " %s, %s, %s, %s, %s, %s) RETURNING id",
                (*row[:8], *difference.values(), row[12], Jsonb(detail), row[14],
                 version + 1, last_id, reason, name, now, actor),
            ).fetchone()  # fmt: skip
            assert new is not None
            out.append(Correction(int(new[0]), serial, version + 1, difference))
            audit.record(conn, actor, "bill.correct",
                         {"customer_code": code, "period": str(period), "meter": serial,
                          "bill_id": int(new[0]), "corrects_bill_id": last_id,
                          "version": version + 1, "reason": reason, "before": previous,
                          "after": after}, 1)  # fmt: skip
        if not out:
            raise BillStateError(
                f"nothing to correct: {code}'s bill of {period} computed now is the one issued"
            )
    return out
