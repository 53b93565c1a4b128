"""The database side of ``/account`` and ``/staff/reviews``: a customer's contact details and
notice choices, their requests for changes staff must review, and the staff decisions. I/O.

Every change is written to ``audit_log`` with the value before it. Name, address and "I am the
new owner" are never edited by the customer: each is a request (``account_requests``), at most
one open per kind, that staff approve or reject with a reason. Approving a new owner runs
:func:`change_owner`: the change of owner of ``doxa customers transfer`` (issue 13).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from care.contacts import N_
from doxa.errors import LifecycleError
from schema import audit

REQUEST_KINDS = ("name", "address", "new_owner")
CHANNELS = ("sms", "email", "both")
LANGUAGES = ("vi", "en")


class ReviewError(ValueError):
    """A request cannot be decided (already decided, unknown); the message says why."""


@dataclass(frozen=True)
class Account:
    customer_id: int
    code: str
    name: str
    address: str
    province: str
    phone: str | None
    email: str | None
    preferred_channel: str
    language: str
    notify_bill: bool
    notify_threshold: bool
    notify_outage: bool
    threshold_kwh: int | None
    threshold_pct: int | None


_PREFERENCE_COLUMNS = ("preferred_channel", "language", "notify_bill", "notify_threshold",
                       "notify_outage", "threshold_kwh", "threshold_pct")  # fmt: skip


def account(conn: psycopg.Connection, customer_id: int) -> Account | None:
    row = conn.execute(
        "SELECT c.id, c.code, c.name, c.address, c.province, k.phone, k.email,"
        " coalesce(k.preferred_channel, 'sms'), coalesce(k.language, 'vi'),"
        " coalesce(k.notify_bill, true), coalesce(k.notify_threshold, false),"
        " coalesce(k.notify_outage, true), k.threshold_kwh, k.threshold_pct"
        " FROM customers c LEFT JOIN customer_contacts k ON k.customer_id = c.id"
        " WHERE c.id = %s",
        (customer_id,),
    ).fetchone()
    return Account(*row) if row else None


def save_preferences(
    conn: psycopg.Connection,
    customer_id: int,
    values: dict[str, Any],
    now: datetime,
    actor: str,
    client_addr: str = "",
) -> dict[str, tuple[Any, Any]]:
    """Set the notice choices in ``values`` (keys of :data:`_PREFERENCE_COLUMNS`); returns and
    audits what changed as ``{column: (old, new)}``."""
    unknown = set(values) - set(_PREFERENCE_COLUMNS)
    if unknown:
        raise ValueError(f"unknown preference(s): {', '.join(sorted(unknown))}")
    with conn.transaction():
        before = account(conn, customer_id)
        if before is None:
            raise ValueError(f"no customer {customer_id}")
        changed = {k: (getattr(before, k), v) for k, v in values.items() if getattr(before, k) != v}
        if not changed:
            return {}
        merged = {k: getattr(before, k) for k in _PREFERENCE_COLUMNS} | values
        columns = ", ".join(_PREFERENCE_COLUMNS)
        conn.execute(
            f"INSERT INTO customer_contacts (customer_id, {columns}, updated_at)"
            f" VALUES (%s, {', '.join(['%s'] * len(_PREFERENCE_COLUMNS))}, %s)"
            " ON CONFLICT (customer_id) DO UPDATE SET "
            + ", ".join(f"{c} = EXCLUDED.{c}" for c in _PREFERENCE_COLUMNS)
            + ", updated_at = EXCLUDED.updated_at",
            (customer_id, *(merged[c] for c in _PREFERENCE_COLUMNS), now),
        )
        audit.record(conn, actor, "account.preferences",
                     {"customer_id": customer_id, "ip": client_addr,
                      "old": {k: o for k, (o, _) in changed.items()},
                      "new": {k: n for k, (_, n) in changed.items()}})  # fmt: skip
    return changed


def remove_contact(
    conn: psycopg.Connection, customer_id: int, channel: str, actor: str, now: datetime
) -> str | None:
    """Forget the customer's phone or email (no code needed to remove); returns the old one."""
    column = {"phone": "phone", "email": "email"}[channel]
    with conn.transaction():
        row = conn.execute(
            f"SELECT {column} FROM customer_contacts WHERE customer_id = %s FOR UPDATE",
            (customer_id,),
        ).fetchone()
        if row is None or row[0] is None:
            return None
        conn.execute(
            f"UPDATE customer_contacts SET {column} = NULL, updated_at = %s WHERE customer_id = %s",
            (now, customer_id),
        )
        audit.record(conn, actor, f"account.{channel}",
                     {"customer_id": customer_id, "old": row[0], "new": None})  # fmt: skip
    return str(row[0])


# -- requests ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    id: int
    customer_id: int
    customer_code: str
    province: str
    kind: str
    current_value: str
    requested_value: str
    note: str
    state: str
    created_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    decision_reason: str | None


_REQUEST_SELECT = (
    "SELECT r.id, r.customer_id, c.code, c.province, r.kind, r.current_value,"
    " r.requested_value, r.note, r.state, r.created_at, r.decided_at, r.decided_by,"
    " r.decision_reason FROM account_requests r JOIN customers c ON c.id = r.customer_id"
)


def file_request(
    conn: psycopg.Connection,
    customer_id: int,
    kind: str,
    requested: str,
    note: str,
    actor: str,
    now: datetime,
) -> tuple[Request, bool]:
    """File (or, when one of this kind is open, replace the text of) a request for staff review;
    returns it and whether it is new."""
    if kind not in REQUEST_KINDS:
        raise ValueError(f"unknown request kind {kind!r}")
    with conn.transaction():
        current = conn.execute(
            "SELECT CASE WHEN %s = 'address' THEN address ELSE name END FROM customers"
            " WHERE id = %s",
            (kind, customer_id),
        ).fetchone()
        if current is None:
            raise ValueError(f"no customer {customer_id}")
        row = conn.execute(
            "INSERT INTO account_requests (customer_id, kind, current_value, requested_value,"
            " note, created_at) VALUES (%s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (customer_id, kind) WHERE state = 'pending' DO UPDATE"
            " SET requested_value = EXCLUDED.requested_value, note = EXCLUDED.note,"
            " created_at = EXCLUDED.created_at"
            " RETURNING id, xmax = 0",
            (customer_id, kind, current[0], requested, note, now),
        ).fetchone()
        assert row is not None
        audit.record(conn, actor, "account.request",
                     {"customer_id": customer_id, "request_id": row[0], "kind": kind,
                      "current": current[0], "requested": requested, "note": note})  # fmt: skip
        request = get_request(conn, int(row[0]))
    assert request is not None
    return request, bool(row[1])


def get_request(conn: psycopg.Connection, request_id: int) -> Request | None:
    row = conn.execute(_REQUEST_SELECT + " WHERE r.id = %s", (request_id,)).fetchone()
    return Request(*row) if row else None


def customer_requests(conn: psycopg.Connection, customer_id: int, limit: int = 20) -> list[Request]:
    rows = conn.execute(
        _REQUEST_SELECT + " WHERE r.customer_id = %s ORDER BY r.created_at DESC, r.id DESC"
        " LIMIT %s",
        (customer_id, limit),
    ).fetchall()
    return [Request(*r) for r in rows]


def pending_requests(
    conn: psycopg.Connection, province: str | None = None, limit: int = 200
) -> list[Request]:
    """Open requests, oldest first, of one province or all."""
    sql = _REQUEST_SELECT + " WHERE r.state = 'pending'"
    params: list[Any] = []
    if province:
        sql += " AND c.province = %s"
        params.append(province)
    rows = conn.execute(sql + " ORDER BY r.created_at, r.id LIMIT %s", [*params, limit]).fetchall()
    return [Request(*r) for r in rows]


def request_provinces(conn: psycopg.Connection) -> list[str]:
    rows = conn.execute(
        "SELECT DISTINCT c.province FROM account_requests r JOIN customers c"
        " ON c.id = r.customer_id WHERE r.state = 'pending' ORDER BY 1"
    ).fetchall()
    return [r[0] for r in rows]


def change_owner(
    conn: psycopg.Connection,
    customer_id: int,
    new_name: str,
    actor: str,
    at: datetime,
    zone: ZoneInfo | None = None,
) -> None:
    """A change of owner of the account from the local day of ``at`` on: the change of owner of
    ``doxa customers transfer`` (``schema.lifecycle.transfer_customer``), so bills whose period
    ends by then keep the old name; audited there."""
    from schema.lifecycle import transfer_customer

    zone = zone or ZoneInfo("UTC")
    try:
        transfer_customer(conn, customer_id, new_name, at.astimezone(zone).date(), actor=actor,
                          now=at, zone=zone, note="approved owner review")  # fmt: skip
    except LifecycleError as exc:
        raise ReviewError(str(exc)) from exc


def _set_customer_field(
    conn: psycopg.Connection,
    customer_id: int,
    column: str,
    value: str,
    actor: str,
    action: str,
    at: datetime,
) -> None:
    assert column in ("name", "address")
    old = conn.execute(
        f"SELECT {column} FROM customers WHERE id = %s FOR UPDATE", (customer_id,)
    ).fetchone()
    if old is None:
        raise ReviewError(f"no customer {customer_id}")
    conn.execute(
        f"UPDATE customers SET {column} = %s, updated_at = %s WHERE id = %s",
        (value, at, customer_id),
    )
    audit.record(conn, actor, action, {"customer_id": customer_id, "field": column,
                                       "old": old[0], "new": value})  # fmt: skip


def decide(
    conn: psycopg.Connection,
    request_id: int,
    approve: bool,
    reason: str,
    actor: str,
    now: datetime,
    zone: ZoneInfo | None = None,
) -> Request:
    """Approve (apply the change) or reject a pending request, with the staff's reason; a new
    owner takes the account from the local day (in ``zone``) of ``now``."""
    with conn.transaction():
        row = conn.execute(
            "SELECT customer_id, kind, requested_value, state FROM account_requests"
            " WHERE id = %s FOR UPDATE",
            (request_id,),
        ).fetchone()
        if row is None:
            raise ReviewError(N_("No such request."))
        customer_id, kind, requested, state = row
        if state != "pending":
            raise ReviewError(N_("This request has already been decided."))
        if approve:
            if kind == "new_owner":
                change_owner(conn, customer_id, requested, actor, now, zone)
            else:
                _set_customer_field(conn, customer_id, kind, requested, actor,
                                    f"customer.{kind}", now)  # fmt: skip
        conn.execute(
            "UPDATE account_requests SET state = %s, decided_at = %s, decided_by = %s,"
            " decision_reason = %s WHERE id = %s",
            ("approved" if approve else "rejected", now, actor, reason, request_id),
        )
        audit.record(conn, actor, "review.approve" if approve else "review.reject",
                     {"request_id": request_id, "customer_id": customer_id, "kind": kind,
                      "requested": requested, "reason": reason})  # fmt: skip
        decided = get_request(conn, request_id)
    assert decided is not None
    return decided
