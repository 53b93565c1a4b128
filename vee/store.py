"""Estimates, edits and exceptions in the database (contract §12): the I/O around the pure
``vee.estimate`` and the SQL of ``vee.validate``, shared by ``doxa readings`` and the staff page.

- :func:`estimate_range` fills every gap of the range (two readings further apart than the gap
  rule allows, the register not falling between them) with rows of quality ``estimated`` at the
  meter's expected instants; an existing reading is never overwritten.
- :func:`edit_reading` sets a reading's register (or adds one) with quality ``edited``.
- Both keep every version in ``reading_versions`` (version 1 of an edited reading is the value
  it arrived with) and write the audit log.
- :func:`list_exceptions`, :func:`accept`, :func:`accept_matching`: the exception queue.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from doxa.errors import BadInput
from metering.calendar import local_midnight
from metering.register import Point
from schema import audit
from schema.identifiers import CUSTOMER_PREFIX
from vee.estimate import estimate_gap, slots
from vee.rules import RULES
from vee.validate import load_thresholds

MAX_REASON = 500
ESTIMATE_SOURCE = "manual"  # readings.source of rows Doxa made (estimated or added by an edit)


class VeeError(BadInput):
    """An edit, estimate or acceptance that cannot be done as asked; one line says why."""


@dataclass
class EstimateReport:
    gaps: int = 0
    rows: int = 0
    methods: Counter[str] = field(default_factory=Counter)
    skipped: list[str] = field(default_factory=list)  # gaps not estimated, and why


@dataclass(frozen=True)
class Edit:
    serial: str
    ts: datetime
    before_kwh: float | None  # None: there was no reading at that instant
    before_quality: str | None
    after_kwh: float
    version: int


def check_reason(reason: str) -> str:
    text = " ".join((reason or "").split())
    if not text:
        raise VeeError("a reason is required")
    if len(text) > MAX_REASON:
        raise VeeError(f"the reason is too long ({len(text)} characters, at most {MAX_REASON})")
    return text


def _meter(conn: psycopg.Connection[Any], serial: str) -> int:
    row = conn.execute("SELECT id FROM meters WHERE serial = %s", (serial,)).fetchone()
    if row is None:
        raise VeeError(f"unknown meter serial {serial!r}")
    return int(row[0])


# -- estimation ---------------------------------------------------------------------------------

_GAPS = """
SELECT meter_id, pts, pkwh, ts, kwh FROM (
    SELECT r.meter_id, r.ts, r.energy_import_kwh AS kwh,
           lag(r.ts) OVER w AS pts, lag(r.energy_import_kwh) OVER w AS pkwh
      FROM readings r
     WHERE r.ts >= %(lo)s AND r.ts <= %(end)s AND abs(r.energy_import_kwh) < 'Infinity'
       AND (%(meters)s::int[] IS NULL OR r.meter_id = ANY(%(meters)s::int[]))
    WINDOW w AS (PARTITION BY r.meter_id ORDER BY r.ts)
) p
 WHERE pts IS NOT NULL AND ts > %(start)s AND extract(epoch FROM ts - pts) > %(gap_s)s
 ORDER BY meter_id, pts"""

_HISTORY = """
SELECT ts, energy_import_kwh FROM readings
 WHERE meter_id = %s AND ts >= %s AND ts <= %s AND abs(energy_import_kwh) < 'Infinity'
 ORDER BY ts"""


def estimate_range(
    conn: psycopg.Connection[Any],
    date_from: date,
    date_to: date,
    zone: ZoneInfo,
    actor: str,
    now: datetime,
    serials: Sequence[str] = (),
) -> EstimateReport:
    """Fill the gaps that end in local days ``date_from``..``date_to`` (of ``serials``, or of
    every meter) with estimated readings; one transaction, audited."""
    if date_to < date_from:
        raise VeeError(f"the end date {date_to} is before the start date {date_from}")
    report = EstimateReport()
    with conn.transaction():
        t = load_thresholds(conn)
        meters = [_meter(conn, s) for s in serials] or None
        start = local_midnight(date_from, zone)
        end = local_midnight(date_to + timedelta(days=1), zone)
        span = timedelta(seconds=t.estimate_linear_max_s)
        weeks = int(t.estimate_profile_weeks)
        spacing = timedelta(seconds=t.gap_s)
        gaps = conn.execute(
            _GAPS,
            {
                "lo": start - timedelta(days=62),
                "start": start,
                "end": end,
                "gap_s": t.gap_s,
                "meters": meters,
            },
        ).fetchall()
        for meter_id, pts, pkwh, ts, kwh in gaps:
            before, after = Point(pts, pkwh), Point(ts, kwh)
            if kwh < pkwh - t.rollback_tolerance_kwh:
                report.skipped.append(
                    f"meter {meter_id}: the register fell from {pkwh:g} to {kwh:g} kWh across"
                    f" the gap {pts.isoformat()}–{ts.isoformat()} (a reset or rollback first)"
                )
                continue
            at = slots(pts, ts, t.expected_interval_s)
            history: list[Point] = []
            if ts - pts > span:
                rows = conn.execute(
                    _HISTORY, (meter_id, pts - weeks * timedelta(days=7) - spacing, ts)
                ).fetchall()
                history = [Point(a, b) for a, b in rows if a <= pts or a >= ts]
            method, values = estimate_gap(
                before, after, at, history, linear_max=span, weeks=weeks, max_spacing=spacing
            )
            reason = (
                f"estimated ({method}) between the readings of"
                f" {pts.astimezone(zone):%Y-%m-%d %H:%M} ({pkwh:g} kWh) and"
                f" {ts.astimezone(zone):%Y-%m-%d %H:%M} ({kwh:g} kWh)"
            )
            written = _insert_estimates(
                conn, meter_id, list(zip(at, values, strict=True)), actor, now, reason
            )
            report.gaps += 1
            report.rows += written
            report.methods[method] += written
        audit.record(
            conn,
            actor,
            "readings.estimate",
            {
                "from": str(date_from),
                "to": str(date_to),
                "meters": list(serials),
                "gaps": report.gaps,
                "methods": dict(report.methods),
                "skipped": len(report.skipped),
            },
            report.rows,
        )
    return report


def _insert_estimates(
    conn: psycopg.Connection[Any],
    meter_id: int,
    values: list[tuple[datetime, Decimal]],
    actor: str,
    now: datetime,
    reason: str,
) -> int:
    if not values:
        return 0
    rows = conn.execute(
        """
        WITH new AS (
            INSERT INTO readings (meter_id, ts, energy_import_kwh, quality, source, received_at)
            SELECT %(m)s, v.ts, v.kwh, 'estimated', %(source)s, %(now)s
              FROM unnest(%(ts)s::timestamptz[], %(kwh)s::float8[]) AS v(ts, kwh)
            ON CONFLICT (meter_id, ts) DO NOTHING
            RETURNING meter_id, ts, energy_import_kwh
        )
        INSERT INTO reading_versions (meter_id, ts, version, energy_import_kwh, quality, source,
                                      actor, changed_at, reason)
        SELECT meter_id, ts, 1, energy_import_kwh, 'estimated', %(source)s, %(actor)s, %(now)s,
               %(reason)s
          FROM new""",
        {
            "m": meter_id,
            "ts": [ts for ts, _ in values],
            "kwh": [float(v) for _, v in values],
            "source": ESTIMATE_SOURCE,
            "now": now,
            "actor": actor,
            "reason": reason,
        },
    )
    return rows.rowcount


# -- editing ------------------------------------------------------------------------------------


def edit_reading(
    conn: psycopg.Connection[Any],
    serial: str,
    ts: datetime,
    kwh: float,
    reason: str,
    actor: str,
    now: datetime,
) -> Edit:
    """Set the register of ``serial``'s reading at ``ts`` to ``kwh`` (adding the reading when
    there is none), quality ``edited``; every version is kept and the change audited."""
    text = check_reason(reason)
    if not math.isfinite(kwh) or kwh < 0:
        raise VeeError(f"the register must be a number of kWh, at least 0 (got {kwh!r})")
    if ts.tzinfo is None:
        raise VeeError("the reading time needs a time zone")
    with conn.transaction():
        meter_id = _meter(conn, serial)
        row = conn.execute(
            "SELECT energy_import_kwh, quality, source, received_at FROM readings"
            " WHERE meter_id = %s AND ts = %s FOR UPDATE",
            (meter_id, ts),
        ).fetchone()
        last = conn.execute(
            "SELECT max(version) FROM reading_versions WHERE meter_id = %s AND ts = %s",
            (meter_id, ts),
        ).fetchone()
        version = int(last[0]) if last and last[0] is not None else 0
        if row is not None and version == 0:
            conn.execute(
                "INSERT INTO reading_versions VALUES (%s, %s, 1, %s, %s, %s, %s, %s, %s)",
                (meter_id, ts, row[0], row[1], row[2], row[2], row[3], "as received"),
            )
            version = 1
        if row is None:
            conn.execute(
                "INSERT INTO readings (meter_id, ts, energy_import_kwh, quality, source,"
                " received_at) VALUES (%s, %s, %s, 'edited', %s, %s)",
                (meter_id, ts, kwh, ESTIMATE_SOURCE, now),
            )
            source = ESTIMATE_SOURCE
        else:
            conn.execute(
                "UPDATE readings SET energy_import_kwh = %s, quality = 'edited'"
                " WHERE meter_id = %s AND ts = %s",
                (kwh, meter_id, ts),
            )
            source = row[2]
        version += 1
        conn.execute(
            "INSERT INTO reading_versions VALUES (%s, %s, %s, %s, 'edited', %s, %s, %s, %s)",
            (meter_id, ts, version, kwh, source, actor, now, text),
        )
        edit = Edit(
            serial, ts, None if row is None else row[0], None if row is None else row[1], kwh,
            version,
        )  # fmt: skip
        audit.record(
            conn,
            actor,
            "reading.edit",
            {
                "meter": serial,
                "ts": ts.isoformat(),
                "before_kwh": edit.before_kwh,
                "before_quality": edit.before_quality,
                "after_kwh": kwh,
                "version": version,
                "reason": text,
            },
            1,
        )
    return edit


@dataclass(frozen=True)
class Version:
    version: int
    kwh: float
    quality: str
    actor: str
    changed_at: datetime
    reason: str


def versions(conn: psycopg.Connection[Any], meter_id: int, ts: datetime) -> list[Version]:
    """Every version of one reading, oldest first (one, as stored, when never edited)."""
    rows = conn.execute(
        "SELECT version, energy_import_kwh, quality, actor, changed_at, reason"
        " FROM reading_versions WHERE meter_id = %s AND ts = %s ORDER BY version",
        (meter_id, ts),
    ).fetchall()
    if rows:
        return [Version(*r) for r in rows]
    row = conn.execute(
        "SELECT 1, energy_import_kwh, quality, source, received_at, ''"
        " FROM readings WHERE meter_id = %s AND ts = %s",
        (meter_id, ts),
    ).fetchone()
    return [Version(*row)] if row else []


# -- the exception queue ------------------------------------------------------------------------


@dataclass(frozen=True)
class ExceptionRow:
    id: int
    meter_id: int
    meter_serial: str
    customer_code: str
    province: str
    rule: str
    severity: str
    ts_from: datetime
    ts_to: datetime
    state: str
    reason: str
    closed_by: str | None
    close_reason: str | None


@dataclass(frozen=True)
class Filter:
    """Which exceptions: a rule, a province, a customer-code prefix, open only."""

    rule: str | None = None
    province: str | None = None
    customer_prefix: str | None = None
    open_only: bool = True

    def where(self, params: dict[str, Any]) -> str:
        conditions = ["true"]
        if self.open_only:
            conditions.append("e.state = 'open'")
        if self.rule:
            if self.rule not in RULES:
                raise VeeError(f"unknown rule {self.rule!r} (one of {', '.join(RULES)})")
            params["rule"] = self.rule
            conditions.append("e.rule = %(rule)s")
        if self.province:
            params["province"] = self.province
            conditions.append("c.province = %(province)s")
        if self.customer_prefix:
            prefix = self.customer_prefix.strip().upper()
            if not CUSTOMER_PREFIX.match(prefix):
                raise VeeError(f"invalid customer code prefix {self.customer_prefix!r}")
            params["prefix"] = prefix + "%"
            conditions.append("c.code LIKE %(prefix)s")
        return " AND ".join(conditions)


_EXCEPTION_COLUMNS = """
SELECT e.id, e.meter_id, m.serial, c.code, c.province, e.rule, e.severity, e.ts_from, e.ts_to,
       e.state, e.reason, e.closed_by, e.close_reason
  FROM reading_exceptions e
  JOIN meters m ON m.id = e.meter_id
  JOIN customers c ON c.id = m.customer_id"""


def list_exceptions(
    conn: psycopg.Connection[Any], which: Filter, limit: int = 200
) -> list[ExceptionRow]:
    params: dict[str, Any] = {"limit": limit}
    where = which.where(params)
    rows = conn.execute(
        f"{_EXCEPTION_COLUMNS} WHERE {where} ORDER BY e.ts_from DESC, e.id DESC LIMIT %(limit)s",
        params,
    ).fetchall()
    return [ExceptionRow(*r) for r in rows]


def get_exception(conn: psycopg.Connection[Any], exception_id: int) -> ExceptionRow | None:
    row = conn.execute(f"{_EXCEPTION_COLUMNS} WHERE e.id = %s", (exception_id,)).fetchone()
    return ExceptionRow(*row) if row else None


def accept(
    conn: psycopg.Connection[Any],
    ids: Sequence[int],
    actor: str,
    reason: str,
    now: datetime,
) -> int:
    """Close the open exceptions ``ids`` as accepted by ``actor`` with ``reason``; audited.
    Returns how many were open."""
    text = check_reason(reason)
    with conn.transaction():
        rows = conn.execute(
            "UPDATE reading_exceptions SET state = 'closed', closed_at = %s, closed_by = %s,"
            " close_reason = %s WHERE id = ANY(%s) AND state = 'open'"
            " RETURNING id, meter_id, rule",
            (now, actor, text, list(ids)),
        ).fetchall()
        if rows:
            audit.record(
                conn,
                actor,
                "exception.accept",
                {
                    "ids": [r[0] for r in rows],
                    "rules": sorted({r[2] for r in rows}),
                    "before_state": "open",
                    "reason": text,
                },
                len(rows),
            )
    return len(rows)


def accept_matching(
    conn: psycopg.Connection[Any], which: Filter, actor: str, reason: str, now: datetime
) -> int:
    """Bulk acceptance: every open exception of a rule in an area (province and/or prefix)."""
    if not which.rule or not (which.province or which.customer_prefix):
        raise VeeError("bulk acceptance needs a rule and a province or customer-code prefix")
    params: dict[str, Any] = {}
    where = Filter(which.rule, which.province, which.customer_prefix, True).where(params)
    ids = [
        r[0]
        for r in conn.execute(
            f"SELECT e.id FROM reading_exceptions e JOIN meters m ON m.id = e.meter_id"
            f" JOIN customers c ON c.id = m.customer_id WHERE {where}",
            params,
        ).fetchall()
    ]
    return accept(conn, ids, actor, reason, now) if ids else 0


def open_counts_by_province(conn: psycopg.Connection[Any]) -> list[tuple[str, int]]:
    """Open exceptions per province (the engineers' page), largest first."""
    rows = conn.execute(
        "SELECT c.province, count(*) FROM reading_exceptions e JOIN meters m"
        " ON m.id = e.meter_id JOIN customers c ON c.id = m.customer_id"
        " WHERE e.state = 'open' GROUP BY c.province ORDER BY count(*) DESC, c.province"
    ).fetchall()
    return [(p or "", int(n)) for p, n in rows]
