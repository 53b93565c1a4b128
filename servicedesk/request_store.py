"""Service requests in the database: filing (deadline from the standard in force and the working
calendar), the customer's and the staff's lists, state changes with their notes (audited), and
the on-time share per province and month."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg.rows import class_row

from schema import audit
from servicedesk import calendar, ontime, standards, text
from servicedesk.errors import ServiceDeskError
from servicedesk.ontime import MonthShare


@dataclass(frozen=True)
class ServiceRequest:
    id: int
    customer_id: int
    customer_code: str
    customer_name: str
    kind: str
    description: str
    contact_phone: str
    province: str
    customer_class: str
    area: str
    working_days: int
    filed_at: datetime
    deadline_at: datetime
    state: str
    closed_at: datetime | None

    def overdue(self, now: datetime) -> bool:
        return calendar.is_overdue(self.deadline_at, self.closed_at, now)

    def outcome(self, now: datetime) -> ontime.Outcome:
        return ontime.outcome(self.deadline_at, self.closed_at, now)

    @property
    def next_states(self) -> tuple[str, ...]:
        return standards.TRANSITIONS[self.state]


@dataclass(frozen=True)
class Event:
    at: datetime
    actor: str
    from_state: str | None
    to_state: str
    note: str


_SELECT = """
    SELECT r.id, r.customer_id, c.code AS customer_code, c.name AS customer_name, r.kind,
           r.description, r.contact_phone, r.province, r.customer_class, r.area, r.working_days,
           r.filed_at, r.deadline_at, r.state, r.closed_at
    FROM service_requests r JOIN customers c ON c.id = r.customer_id"""


def _fetch(conn: psycopg.Connection, sql: str, params: Any) -> list[ServiceRequest]:
    with conn.cursor(row_factory=class_row(ServiceRequest)) as cur:
        return cur.execute(sql, params).fetchall()


def working_calendar(conn: psycopg.Connection) -> calendar.WorkingCalendar:
    return calendar.WorkingCalendar.of(
        r[0] for r in conn.execute("SELECT day FROM public_holidays")
    )


def all_standards(conn: psycopg.Connection) -> list[standards.Standard]:
    with conn.cursor(row_factory=class_row(standards.Standard)) as cur:
        return cur.execute(
            "SELECT id, kind, customer_class, area, working_days, effective_from"
            " FROM service_standards"
        ).fetchall()


def file(
    conn: psycopg.Connection,
    customer_id: int,
    kind: str,
    description: str,
    contact_phone: str,
    now: datetime,
    zone: ZoneInfo,
    client_address: str = "",
) -> ServiceRequest:
    """File a request for the customer; its deadline is fixed now."""
    if kind not in standards.KINDS:
        raise ServiceDeskError("unknown request kind %(kind)s", kind=kind[:40])
    text.check(description, text.DESCRIPTION_MAX, "description")
    phone = text.phone_problem(contact_phone)
    if phone is not None:
        raise ServiceDeskError("contact phone: %(problem)s", problem=phone)
    with conn.transaction():
        found = conn.execute(
            "SELECT code, province, tariff_group FROM customers WHERE id = %s", (customer_id,)
        ).fetchone()
        if found is None:
            raise ServiceDeskError("no customer %(id)s", id=customer_id)
        code, province, tariff_group = found
        areas = conn.execute(
            "SELECT customer_prefix, area FROM service_areas"
            " WHERE starts_with(%s, customer_prefix)",
            (code,),
        ).fetchall()
        area = standards.area_for(code, areas)
        klass = standards.customer_class(tariff_group)
        standard = standards.pick(
            all_standards(conn), kind, klass, area, now.astimezone(zone).date()
        )
        due = calendar.deadline(now, standard.working_days, working_calendar(conn), zone)
        row = conn.execute(
            "INSERT INTO service_requests (customer_id, kind, description, contact_phone,"
            " province, customer_class, area, standard_id, working_days, filed_at, deadline_at,"
            " client_address) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " RETURNING id",
            (
                customer_id,
                kind,
                description,
                contact_phone,
                province,
                klass,
                area,
                standard.id,
                standard.working_days,
                now,
                due,
                client_address[:64],
            ),
        ).fetchone()
        assert row is not None
        conn.execute(
            "INSERT INTO service_request_events (request_id, at, actor, to_state)"
            " VALUES (%s, %s, 'customer', 'received')",
            (row[0], now),
        )
    made = get(conn, int(row[0]))
    assert made is not None
    return made


def get(
    conn: psycopg.Connection, request_id: int, customer_id: int | None = None
) -> ServiceRequest | None:
    """One request (only if it is this customer's, when ``customer_id`` is given)."""
    if not 0 < request_id < 2**63:
        return None
    sql = _SELECT + " WHERE r.id = %(id)s"
    if customer_id is not None:
        sql += " AND r.customer_id = %(customer)s"
    found = _fetch(conn, sql, {"id": request_id, "customer": customer_id})
    return found[0] if found else None


def for_customer(
    conn: psycopg.Connection, customer_id: int, limit: int = 50
) -> list[ServiceRequest]:
    return _fetch(
        conn,
        _SELECT + " WHERE r.customer_id = %s ORDER BY r.filed_at DESC, r.id DESC LIMIT %s",
        (customer_id, limit),
    )


def events(conn: psycopg.Connection, request_id: int) -> list[Event]:
    with conn.cursor(row_factory=class_row(Event)) as cur:
        return cur.execute(
            "SELECT at, actor, from_state, to_state, note FROM service_request_events"
            " WHERE request_id = %s ORDER BY id",
            (request_id,),
        ).fetchall()


def search(
    conn: psycopg.Connection,
    now: datetime,
    *,
    province: str | None = None,
    kind: str | None = None,
    state: str | None = None,
    overdue: bool | None = None,
    limit: int = 200,
) -> list[ServiceRequest]:
    """Staff's list, soonest deadline first; ``overdue`` True: open past their deadline only,
    False: the others only."""
    where = ["true"]
    if province:
        where.append("r.province = %(province)s")
    if kind:
        where.append("r.kind = %(kind)s")
    if state == "open":
        where.append("r.closed_at IS NULL")
    elif state:
        where.append("r.state = %(state)s")
    if overdue is True:
        where.append("r.closed_at IS NULL AND r.deadline_at <= %(now)s")
    elif overdue is False:
        where.append("NOT (r.closed_at IS NULL AND r.deadline_at <= %(now)s)")
    return _fetch(
        conn,
        _SELECT + " WHERE " + " AND ".join(where) + " ORDER BY r.deadline_at, r.id LIMIT %(limit)s",
        {"province": province, "kind": kind, "state": state, "now": now, "limit": limit},
    )


def change_state(
    conn: psycopg.Connection,
    request_id: int,
    new_state: str,
    note: str,
    actor: str,
    now: datetime,
) -> ServiceRequest:
    """Move a request on (``standards.TRANSITIONS``), with a note; recorded and audited."""
    text.check(note, text.NOTE_MAX, "note")
    with conn.transaction():
        row = conn.execute(
            "SELECT state FROM service_requests WHERE id = %s FOR UPDATE", (request_id,)
        ).fetchone()
        if row is None:
            raise ServiceDeskError("no request %(id)s", id=request_id)
        standards.check_transition(row[0], new_state)
        closed = now if new_state not in standards.OPEN_STATES else None
        conn.execute(
            "UPDATE service_requests SET state = %s, closed_at = %s WHERE id = %s",
            (new_state, closed, request_id),
        )
        conn.execute(
            "INSERT INTO service_request_events (request_id, at, actor, from_state, to_state,"
            " note) VALUES (%s, %s, %s, %s, %s, %s)",
            (request_id, now, actor, row[0], new_state, note),
        )
        audit.record(
            conn,
            actor,
            "request.state",
            {"id": request_id, "from": row[0], "to": new_state, "note": note},
        )
    changed = get(conn, request_id)
    assert changed is not None
    return changed


def on_time_shares(
    conn: psycopg.Connection, now: datetime, zone: ZoneInfo, first: date, last: date
) -> list[MonthShare]:
    """``ontime.shares`` in SQL, for the local months ``first``..``last`` (first days)."""
    rows = conn.execute(
        """
        SELECT province, (date_trunc('month', deadline_at AT TIME ZONE %(tz)s))::date AS month,
               count(*) FILTER (WHERE closed_at IS NOT NULL AND closed_at < deadline_at),
               count(*) FILTER (WHERE (closed_at IS NOT NULL AND closed_at >= deadline_at)
                                   OR (closed_at IS NULL AND %(now)s >= deadline_at)),
               count(*) FILTER (WHERE closed_at IS NULL AND %(now)s < deadline_at)
        FROM service_requests
        WHERE deadline_at >= (%(first)s::date)::timestamp AT TIME ZONE %(tz)s
          AND deadline_at < ((%(last)s::date + interval '1 month')::date)::timestamp
                            AT TIME ZONE %(tz)s
        GROUP BY 1, 2
        ORDER BY 1, 2""",
        {"tz": zone.key, "now": now, "first": first, "last": last},
    ).fetchall()
    return [MonthShare(r[0], r[1], int(r[2]), int(r[3]), int(r[4])) for r in rows]
