"""The audit log: who did what, when, and to how many rows (sign-ins, exports, staff actions).

Actions in use: ``login``, ``login_failed``, ``logout``, ``export.readings``,
``export.closing_indices``, ``export.bills``, ``api.readings`` (an API read of readings: meter,
customer code, range, rows returned), ``token.create``, ``token.revoke``, ``user.add``,
``user.passwd`` (with the sessions it ended), ``password_failed`` (a wrong current password on
``/staff/password``), ``collector.forget``, ``bills.issue``, ``bill.release``,
``bill.correct``, ``meter.replace``, ``meter.decommission``, ``customer.transfer`` (each with
the values before it), ``readings.retention`` (raw chunks dropped: cutoff and time ranges) and
``rejected.retention`` (rejected messages deleted after their retention: how many, the span of
their arrival). The actor is a staff username, ``cli``, ``scheduler`` or ``collector:ID``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb


@dataclass(frozen=True)
class AuditEntry:
    ts: datetime
    actor: str
    action: str
    detail: dict[str, Any]
    row_count: int | None


def record(
    conn: psycopg.Connection,
    actor: str,
    action: str,
    detail: Mapping[str, Any] | None = None,
    row_count: int | None = None,
) -> None:
    """Append one entry (in the caller's transaction, or at once on an autocommit connection)."""
    conn.execute(
        "INSERT INTO audit_log (actor, action, detail, row_count) VALUES (%s, %s, %s, %s)",
        (actor, action, Jsonb(dict(detail or {})), row_count),
    )


def recent(
    conn: psycopg.Connection, limit: int = 50, action: str | None = None
) -> list[AuditEntry]:
    """The newest entries first, optionally of one action (``export.`` matches a prefix)."""
    if action is None:
        rows = conn.execute(
            "SELECT ts, actor, action, detail, row_count FROM audit_log"
            " ORDER BY ts DESC, id DESC LIMIT %s",
            (limit,),
        ).fetchall()
    else:
        pattern = action.replace("%", r"\%").replace("_", r"\_")
        pattern = pattern + "%" if pattern.endswith(".") else pattern
        rows = conn.execute(
            "SELECT ts, actor, action, detail, row_count FROM audit_log WHERE action LIKE %s"
            " ORDER BY ts DESC, id DESC LIMIT %s",
            (pattern, limit),
        ).fetchall()
    return [AuditEntry(*row) for row in rows]
