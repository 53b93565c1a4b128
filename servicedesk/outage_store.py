"""Planned outages in the database: add, edit, cancel (each audited), the lists the pages show,
and choosing the notices due (``outages.notice_due`` over the customers concerned)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import class_row

from schema import audit
from servicedesk import outages, text
from servicedesk.errors import ServiceDeskError
from servicedesk.outages import Area, LastNotice, NoticeKind

# outages.Area.covers in SQL: outage ``o`` covers customer ``c``.
COVERS_SQL = """(o.province = c.province
    AND (o.customer_prefix IS NULL OR starts_with(c.code, o.customer_prefix))
    AND (cardinality(o.customer_codes) = 0 OR c.code = ANY (o.customer_codes)))"""
_COLUMNS = (
    "id, province, customer_prefix, customer_codes, starts_at, ends_at, reason, state, version,"
    " created_by, created_at, updated_by, updated_at, cancel_note"
)


@dataclass(frozen=True)
class Outage:
    id: int
    province: str
    customer_prefix: str | None
    customer_codes: list[str]
    starts_at: datetime
    ends_at: datetime
    reason: str
    state: str
    version: int
    created_by: str
    created_at: datetime
    updated_by: str
    updated_at: datetime
    cancel_note: str | None

    @property
    def area(self) -> Area:
        return Area(self.province, self.customer_prefix, tuple(self.customer_codes))

    def display_state(self, now: datetime) -> str:
        return outages.display_state(self.state, self.starts_at, self.ends_at, now)

    @property
    def scope(self) -> str:
        """Whom it covers, without naming anyone: ``province``, ``branch`` or ``customers``."""
        if self.customer_codes:
            return "customers"
        return "branch" if self.customer_prefix else "province"

    def as_record(self) -> dict[str, Any]:
        """What the audit log keeps of it (before and after a change)."""
        return {
            "province": self.province,
            "customer_prefix": self.customer_prefix,
            "customer_codes": list(self.customer_codes),
            "start": self.starts_at.isoformat(),
            "end": self.ends_at.isoformat(),
            "reason": self.reason,
            "state": self.state,
            "version": self.version,
        }


def _fetch(
    conn: psycopg.Connection, sql: str, params: Sequence[Any] | dict[str, Any]
) -> list[Outage]:
    with conn.cursor(row_factory=class_row(Outage)) as cur:
        return cur.execute(sql, params).fetchall()


def get(conn: psycopg.Connection, outage_id: int, *, lock: bool = False) -> Outage | None:
    if not 0 < outage_id < 2**63:
        return None
    found = _fetch(
        conn,
        f"SELECT {_COLUMNS} FROM planned_outages WHERE id = %s{' FOR UPDATE' if lock else ''}",
        (outage_id,),
    )
    return found[0] if found else None


def _check_area(conn: psycopg.Connection, area: Area) -> None:
    """The province has customers; every listed customer exists and is in it."""
    known = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM customers WHERE province = %s)", (area.province,)
    ).fetchone()
    if not known or not known[0]:
        raise ServiceDeskError("no customers in province %(province)s", province=area.province)
    if area.customer_codes:
        rows = conn.execute(
            "SELECT code FROM customers WHERE code = ANY (%s) AND province = %s",
            (list(area.customer_codes), area.province),
        ).fetchall()
        missing = sorted(set(area.customer_codes) - {r[0] for r in rows})
        if missing:
            raise ServiceDeskError(
                "no customer %(code)s in %(province)s", code=missing[0], province=area.province
            )


def add(
    conn: psycopg.Connection,
    area: Area,
    starts_at: datetime,
    ends_at: datetime,
    reason: str,
    actor: str,
    now: datetime,
) -> Outage:
    outages.check_times(starts_at, ends_at, now)
    text.check(reason, text.REASON_MAX, "reason")
    with conn.transaction():
        _check_area(conn, area)
        row = conn.execute(
            "INSERT INTO planned_outages (province, customer_prefix, customer_codes, starts_at,"
            " ends_at, reason, created_by, updated_by, created_at, updated_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (
                area.province,
                area.customer_prefix,
                list(area.customer_codes),
                starts_at,
                ends_at,
                reason,
                actor,
                actor,
                now,
                now,
            ),
        ).fetchone()
        assert row is not None
        made = get(conn, int(row[0]))
        assert made is not None
        audit.record(conn, actor, "outage.add", {"id": made.id, **made.as_record()})
    return made


def edit(
    conn: psycopg.Connection,
    outage_id: int,
    area: Area,
    starts_at: datetime,
    ends_at: datetime,
    reason: str,
    actor: str,
    now: datetime,
) -> Outage:
    """Change an outage that is planned and has not ended; its version goes up when anything a
    customer is told changes (nothing changed: nothing written)."""
    outages.check_times(starts_at, ends_at, now)
    text.check(reason, text.REASON_MAX, "reason")
    with conn.transaction():
        before = get(conn, outage_id, lock=True)
        if before is None:
            raise ServiceDeskError("no outage %(id)s", id=outage_id)
        if before.state != "planned" or before.ends_at <= now:
            raise ServiceDeskError(
                "outage %(id)s is %(state)s", id=outage_id, state=before.display_state(now)
            )
        if (before.area, before.starts_at, before.ends_at, before.reason) == (
            area,
            starts_at,
            ends_at,
            reason,
        ):
            return before
        _check_area(conn, area)
        conn.execute(
            "UPDATE planned_outages SET province = %s, customer_prefix = %s, customer_codes = %s,"
            " starts_at = %s, ends_at = %s, reason = %s, version = version + 1,"
            " updated_by = %s, updated_at = %s WHERE id = %s",
            (
                area.province,
                area.customer_prefix,
                list(area.customer_codes),
                starts_at,
                ends_at,
                reason,
                actor,
                now,
                outage_id,
            ),
        )
        after = get(conn, outage_id)
        assert after is not None
        audit.record(
            conn,
            actor,
            "outage.edit",
            {"id": outage_id, "before": before.as_record(), "after": after.as_record()},
        )
    return after


def cancel(
    conn: psycopg.Connection, outage_id: int, note: str, actor: str, now: datetime
) -> Outage:
    """Cancel a planned outage that has not ended, with a note saying why."""
    text.check(note, text.NOTE_MAX, "note")
    with conn.transaction():
        before = get(conn, outage_id, lock=True)
        if before is None:
            raise ServiceDeskError("no outage %(id)s", id=outage_id)
        if before.state != "planned" or before.ends_at <= now:
            raise ServiceDeskError(
                "outage %(id)s is %(state)s", id=outage_id, state=before.display_state(now)
            )
        conn.execute(
            "UPDATE planned_outages SET state = 'cancelled', cancel_note = %s, updated_by = %s,"
            " updated_at = %s WHERE id = %s",
            (note, actor, now, outage_id),
        )
        after = get(conn, outage_id)
        assert after is not None
        audit.record(
            conn,
            actor,
            "outage.cancel",
            {"id": outage_id, "note": note, "before": before.as_record()},
        )
    return after


def listing(
    conn: psycopg.Connection, province: str | None = None, limit: int = 1000
) -> list[Outage]:
    """Every outage (of one province), newest start first."""
    where = "WHERE province = %(province)s" if province else ""
    return _fetch(
        conn,
        f"SELECT {_COLUMNS} FROM planned_outages {where}"
        " ORDER BY starts_at DESC, id DESC LIMIT %(limit)s",
        {"province": province, "limit": limit},
    )


def upcoming_in(
    conn: psycopg.Connection, province: str | None, now: datetime, limit: int = 200
) -> list[Outage]:
    """Planned outages (of one province) that have not ended, soonest first (the public page
    and API)."""
    where = " AND province = %(province)s" if province is not None else ""
    return _fetch(
        conn,
        f"SELECT {_COLUMNS} FROM planned_outages"
        f" WHERE state = 'planned' AND ends_at > %(now)s{where}"
        " ORDER BY starts_at, id LIMIT %(limit)s",
        {"province": province, "now": now, "limit": limit},
    )


def upcoming_for_customer(
    conn: psycopg.Connection, customer_id: int, now: datetime, limit: int = 10
) -> list[Outage]:
    """The planned outages covering this customer that have not ended, soonest first."""
    columns = ", ".join(f"o.{c.strip()}" for c in _COLUMNS.split(","))
    return _fetch(
        conn,
        f"SELECT {columns} FROM planned_outages o JOIN customers c ON {COVERS_SQL}"
        " WHERE c.id = %s AND o.state = 'planned' AND o.ends_at > %s"
        " ORDER BY o.starts_at, o.id LIMIT %s",
        (customer_id, now, limit),
    )


def covered_customers(conn: psycopg.Connection, outage_id: int) -> int:
    row = conn.execute(
        f"SELECT count(*) FROM planned_outages o JOIN customers c ON {COVERS_SQL} WHERE o.id = %s",
        (outage_id,),
    ).fetchone()
    return int(row[0]) if row else 0


# -- notices -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DueNotice:
    outage_id: int
    outage_version: int
    customer_id: int
    customer_code: str
    kind: NoticeKind
    starts_at: datetime
    ends_at: datetime
    reason: str
    province: str
    customer_prefix: str | None


_CANDIDATES_SQL = f"""
    WITH live AS (
        SELECT * FROM planned_outages WHERE ends_at > %(now)s
    ), last AS (
        SELECT DISTINCT ON (n.outage_id, n.customer_id)
               n.outage_id, n.customer_id, n.kind, n.outage_version
        FROM outage_notices n JOIN live ON live.id = n.outage_id
        ORDER BY n.outage_id, n.customer_id, n.seq DESC
    ), candidates AS (
        SELECT o.id AS outage_id, c.id AS customer_id
        FROM live o JOIN customers c ON {COVERS_SQL}
        WHERE o.state = 'planned' AND o.starts_at - %(lead)s <= %(now)s AND %(now)s < o.starts_at
        UNION
        SELECT outage_id, customer_id FROM last
    )
    SELECT o.id, o.version, o.starts_at, o.ends_at, o.reason, o.province, o.customer_prefix,
           c.id, c.code,
           (o.state = 'planned' AND {COVERS_SQL}) AS covered, l.kind, l.outage_version
    FROM candidates k
    JOIN live o ON o.id = k.outage_id
    JOIN customers c ON c.id = k.customer_id
    LEFT JOIN last l ON l.outage_id = k.outage_id AND l.customer_id = k.customer_id
    ORDER BY o.id, c.id"""


def due_notices(conn: psycopg.Connection, now: datetime) -> list[DueNotice]:
    """Every notice due at ``now`` (nothing is recorded: see :func:`choose_notices`)."""
    due = []
    rows = conn.execute(_CANDIDATES_SQL, {"now": now, "lead": outages.NOTICE_LEAD})
    for row in rows:
        oid, version, start, end, reason, province, prefix, cid, code, covered = row[:10]
        kind, told_version = row[10:]
        last = LastNotice(kind, told_version) if kind is not None else None
        found = outages.notice_due(
            covered=bool(covered), version=version, starts_at=start, ends_at=end, last=last, now=now
        )
        if found is not None:
            due.append(
                DueNotice(oid, version, cid, code, found, start, end, reason, province, prefix)
            )
    return due


# Hands the notices just chosen to the outbox, in the same transaction.
Enqueue = Callable[[psycopg.Connection, list[DueNotice]], object]


def choose_notices(
    conn: psycopg.Connection, now: datetime, enqueue: Enqueue | None = None
) -> list[DueNotice]:
    """Record the notices due at ``now`` and hand them to ``enqueue`` (the outbox), in one
    transaction: a notice is handed over exactly once, even when two runs overlap (the second
    run's insert finds the first's rows and hands over nothing)."""
    with conn.transaction():
        due = due_notices(conn, now)
        if not due:
            return []
        rows = conn.execute(
            "INSERT INTO outage_notices (outage_id, customer_id, outage_version, kind, chosen_at)"
            " SELECT o, c, v, k, %s FROM unnest(%s::bigint[], %s::bigint[], %s::int[], %s::text[])"
            " AS t(o, c, v, k) ON CONFLICT DO NOTHING RETURNING outage_id, customer_id,"
            " outage_version, kind",
            (
                now,
                [n.outage_id for n in due],
                [n.customer_id for n in due],
                [n.outage_version for n in due],
                [n.kind for n in due],
            ),
        ).fetchall()
        inserted = set(rows)
        chosen = [
            n for n in due if (n.outage_id, n.customer_id, n.outage_version, n.kind) in inserted
        ]
        if enqueue is not None and chosen:
            enqueue(conn, chosen)
    return chosen
