"""Issuing bills (contract §11): a period's drafts become ``issued`` unless they are held, and an
issued bill never changes (the database's trigger ``bills_issued_are_final`` refuses any UPDATE
or DELETE of one, whatever the code does).

A draft is **held** — left a draft, its ``held_reason`` saying why — when

- ``over_30_percent``: its customer's consumption of the period is more than 30 % above that of
  the customer's previous issued bill (EVN re-checks such bills before sending them; the
  previous bill is the latest earlier period with an issued bill, its versions added up, so a
  corrected bill counts as corrected; a customer's first bill is never held for this);
- ``estimated_boundary``: an index it starts or ends on is estimated;
- ``open_exception``: a validation exception (``reading_exceptions``, contract §12) is open on
  its meter (or the meter it replaced) from before the period's end.

Several reasons are joined with ``;``. ``issue_period`` evaluates the holds anew each time, in
one statement for the whole period, and issues the rest in the same statement: issuing twice
issues nothing new. Staff release a held draft (:func:`release`) — it is issued at once, the
release audited with its reason. Issuing queues the customers' bill-issued notices
(``care.notices.enqueue_bill_issued``) in the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from billing.locks import lock_period
from billing.periods import Period
from doxa.errors import BillStateError
from schema import audit
from schema.identifiers import CUSTOMER_PREFIX

RISE_LIMIT_PERCENT = 30  # more than this above the previous issued bill: held
HOLD_RISE = "over_30_percent"
HOLD_ESTIMATED = "estimated_boundary"
HOLD_EXCEPTION = "open_exception"
HOLD_REASONS = (HOLD_RISE, HOLD_ESTIMATED, HOLD_EXCEPTION)


@dataclass(frozen=True)
class Held:
    bill_id: int
    customer_code: str
    meter_serial: str
    reason: str


@dataclass
class IssueResult:
    period: str
    issued: list[int] = field(default_factory=list)  # bill ids issued by this call
    held: list[Held] = field(default_factory=list)
    notices: int = 0


# The holds of every draft of the period (and prefix) and, in the same statement, the drafts
# that are not held issued, each frozen with the account name in force on its last day.
_ISSUE = f"""
WITH draft AS (
    SELECT b.id, b.customer_id, b.meter_id, m.replaces_meter_id, b.estimated,
           (b.period_end::timestamp AT TIME ZONE %(zone)s) AS end_at, c.name,
           EXISTS (SELECT 1 FROM customer_names n WHERE n.customer_id = c.id) AS renamed
      FROM bills b
      JOIN customers c ON c.id = b.customer_id
      JOIN meters m ON m.id = b.meter_id
     WHERE b.period = %(period)s AND b.status = 'draft' AND c.code LIKE %(prefix)s
       AND (%(only)s::bigint IS NULL OR b.id = %(only)s)
), customer AS (
    SELECT b.customer_id, sum(b.consumption_kwh) AS kwh,
           (SELECT max(x.period) FROM bills x WHERE x.customer_id = b.customer_id
               AND x.status = 'issued' AND x.period < %(period)s) AS previous
      FROM bills b
     WHERE b.period = %(period)s AND b.customer_id IN (SELECT customer_id FROM draft)
     GROUP BY b.customer_id
), rise AS (
    SELECT k.customer_id, k.kwh, p.kwh AS previous_kwh
      FROM customer k CROSS JOIN LATERAL (
        SELECT sum(b.consumption_kwh) AS kwh FROM bills b
         WHERE b.customer_id = k.customer_id AND b.period = k.previous
           AND b.status = 'issued') p
     WHERE k.previous IS NOT NULL
), holds AS (
    SELECT d.id, d.name, d.renamed, concat_ws(';',
        CASE WHEN r.kwh * 100 > r.previous_kwh * (100 + {RISE_LIMIT_PERCENT})
             THEN '{HOLD_RISE}' END,
        CASE WHEN d.estimated THEN '{HOLD_ESTIMATED}' END,
        CASE WHEN EXISTS (SELECT 1 FROM reading_exceptions e
                           WHERE e.state = 'open' AND e.ts_from < d.end_at
                             AND e.meter_id IN (d.meter_id, d.replaces_meter_id))
             THEN '{HOLD_EXCEPTION}' END) AS reason
      FROM draft d LEFT JOIN rise r ON r.customer_id = d.customer_id
), held AS (
    UPDATE bills b SET held_reason = h.reason
      FROM holds h
     WHERE b.id = h.id AND h.reason <> '' AND NOT %(force)s
       AND b.held_reason IS DISTINCT FROM h.reason
), issued AS (
    UPDATE bills b SET status = 'issued', issued_at = %(now)s, issued_by = %(actor)s,
           held_reason = NULL,
           customer_name = CASE WHEN h.renamed
                                THEN customer_name_on(b.customer_id, b.period_end - 1)
                                ELSE h.name END
      FROM holds h
     WHERE b.id = h.id AND (h.reason = '' OR %(force)s)
    RETURNING b.id
)
SELECT 'issued', id, NULL FROM issued
UNION ALL
SELECT 'held', id, reason FROM holds WHERE reason <> '' AND NOT %(force)s
"""


def _prefix(customer_prefix: str | None) -> str:
    prefix = (customer_prefix or "").strip().upper()
    if prefix and not CUSTOMER_PREFIX.match(prefix):
        raise BillStateError(f"invalid customer code prefix {customer_prefix!r}")
    return prefix + "%"


def _issue(
    conn: psycopg.Connection[Any],
    period: Period,
    prefix: str,
    actor: str,
    now: datetime,
    zone: ZoneInfo,
    only: int | None = None,
    force: bool = False,
) -> IssueResult:
    lock_period(conn, period)  # a run of the period in progress finishes first (billing.locks)
    # The statement's estimated cost sets off JIT compilation, which costs more than it saves.
    conn.execute("SET LOCAL jit = off")
    rows = conn.execute(
        _ISSUE,
        {
            "period": str(period),
            "prefix": prefix,
            "zone": zone.key,
            "now": now,
            "actor": actor,
            "only": only,
            "force": force,
        },
    ).fetchall()
    result = IssueResult(str(period))
    result.issued = sorted(int(r[1]) for r in rows if r[0] == "issued")
    held = {int(r[1]): str(r[2]) for r in rows if r[0] == "held"}
    if held:
        named = conn.execute(
            "SELECT b.id, c.code, m.serial FROM bills b JOIN customers c ON c.id = b.customer_id"
            " JOIN meters m ON m.id = b.meter_id WHERE b.id = ANY(%s) ORDER BY c.code, m.serial",
            (list(held),),
        ).fetchall()
        result.held = [Held(i, code, serial, held[i]) for i, code, serial in named]
    return result


def issue_period(
    conn: psycopg.Connection[Any],
    period: Period,
    prefix: str | None,
    actor: str,
    now: datetime,
    zone: ZoneInfo,
) -> IssueResult:
    """Issue the drafts of ``period`` (customer codes starting with ``prefix``; None: all) that
    are not held, in one transaction, and queue their bill-issued notices. Idempotent."""
    from care.notices import enqueue_bill_issued

    with conn.transaction():
        result = _issue(conn, period, _prefix(prefix), actor, now, zone)
        result.notices = enqueue_bill_issued(conn, result.issued, now, zone)
        audit.record(conn, actor, "bills.issue",
                     {"period": str(period), "customer_prefix": prefix or "",
                      "issued": len(result.issued), "held": len(result.held),
                      "held_bills": [h.bill_id for h in result.held][:1000]},
                     len(result.issued))  # fmt: skip
    return result


def release(
    conn: psycopg.Connection[Any],
    bill_id: int,
    actor: str,
    reason: str,
    now: datetime,
    zone: ZoneInfo,
) -> int:
    """Staff release a held (or any) draft: it is issued now despite its holds; the release, its
    reason and the holds it overrode are audited. Returns the bill id."""
    reason = " ".join(reason.split())
    if not reason:
        raise BillStateError("a release needs a reason")
    from care.notices import enqueue_bill_issued

    with conn.transaction():
        row = conn.execute(
            "SELECT period, status, held_reason, version FROM bills WHERE id = %s FOR UPDATE",
            (bill_id,),
        ).fetchone()
        if row is None:
            raise BillStateError(f"no bill {bill_id}")
        period, status, held_reason, version = row
        if status != "draft":
            raise BillStateError(f"bill {bill_id} is already issued")
        result = _issue(conn, Period.parse(period), "%", actor, now, zone, only=bill_id, force=True)
        if result.issued != [bill_id]:
            raise BillStateError(f"bill {bill_id} could not be issued")
        enqueue_bill_issued(conn, result.issued, now, zone)
        audit.record(conn, actor, "bill.release",
                     {"bill_id": bill_id, "period": period, "version": version,
                      "held_reason": held_reason, "reason": reason}, 1)  # fmt: skip
    return bill_id


def held_bills(
    conn: psycopg.Connection[Any],
    period: str | None = None,
    province: str | None = None,
    reason: str | None = None,
    limit: int = 500,
) -> Sequence[tuple[Any, ...]]:
    """Held drafts, newest period first: (id, period, code, name, province, serial, consumption,
    total, held_reason)."""
    rows = conn.execute(
        "SELECT b.id, b.period, c.code, c.name, c.province, m.serial, b.consumption_kwh,"
        " b.total_vnd, b.held_reason FROM bills b JOIN customers c ON c.id = b.customer_id"
        " JOIN meters m ON m.id = b.meter_id"
        " WHERE b.status = 'draft' AND b.held_reason IS NOT NULL"
        " AND (%(period)s::text IS NULL OR b.period = %(period)s)"
        " AND (%(province)s::text IS NULL OR c.province = %(province)s)"
        " AND (%(reason)s::text IS NULL OR %(reason)s = ANY(string_to_array(b.held_reason, ';')))"
        " ORDER BY b.period DESC, c.province, c.code, m.serial LIMIT %(limit)s",
        {"period": period, "province": province, "reason": reason, "limit": limit},
    ).fetchall()
    return rows
