"""The one write path for readings from both sources: idempotent, batched, never blocked.

A batch of units goes to the database in one transaction:

1. Serials are resolved to meter ids (a cache, filled by one query for the serials it lacks). A
   unit whose serial no meter has is rejected, as is a unit the parser already rejected: both
   become rows of ``rejected_messages`` with their reason, topic and payload. So is a unit with a
   reading no meter could measure (:mod:`collector.intake`: a register above the configured
   maximum, power beyond the model's rating, a time before the meter was installed or beyond the
   horizon). Rejection rows are rate-bound per topic prefix, and their topic, reason and payload
   are cut, so a flood of hostile messages cannot grow the table without bound.
2. Readings repeated inside the batch are dropped; the rest are written with a binary ``COPY``
   straight into ``readings`` — the common case, new readings, at close to the speed of a raw
   ``COPY``.
3. If the batch holds a reading already stored (an MQTT redelivery, a spool replay, a meter
   sending twice), that ``COPY`` fails on the unique key: the transaction is rolled back (nothing
   else was written in it yet) and the batch is written again on the idempotent path: ``COPY``
   into a temporary staging table, then ``INSERT … SELECT … ON CONFLICT (meter_id, ts) DO
   NOTHING``. Either way each reading is stored once.
4. ``meter_status.last_reading_ts`` moves forward for every meter in the batch (one statement,
   its arrays sent in binary).

:class:`DatabaseUnavailable` means "nothing was written, try again later" (the caller spools).
A batch the database refuses for a reason of its data (SQLSTATE classes 22 and 23, other than the
duplicate handled above) is retried unit by unit, each under a savepoint, so one bad unit is
rejected with the database's reason and the rest are stored.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import psycopg
from psycopg import errors

from collector.intake import IntakeLimits, MeterFacts, RejectionBound, impossible, topic_prefix
from collector.units import Unit

log = logging.getLogger(__name__)

MAX_PAYLOAD = 16 * 1024  # rejected_messages.payload is cut here
MAX_TOPIC = 256  # rejected_messages.topic is cut here (characters)
MAX_REASON = 500  # and the reason
_COLUMNS = (
    "meter_id, ts, energy_import_kwh, energy_export_kwh, power_w, voltage_v, current_a,"
    " frequency_hz, source"
)
_TYPES = ["int4", "timestamptz", "float8", "float8", "float8", "float8", "float8", "float8", "text"]
_COPY_READINGS = f"COPY readings ({_COLUMNS}) FROM STDIN (FORMAT BINARY)"
_STAGING_DDL = """
CREATE TEMP TABLE IF NOT EXISTS doxa_staging (
    meter_id integer, ts timestamptz,
    energy_import_kwh double precision, energy_export_kwh double precision,
    power_w double precision, voltage_v double precision, current_a double precision,
    frequency_hz double precision, source text
) ON COMMIT DELETE ROWS
"""
_COPY_STAGING = f"COPY doxa_staging ({_COLUMNS}) FROM STDIN (FORMAT BINARY)"
_INSERT_STAGED = (
    f"INSERT INTO readings ({_COLUMNS}) SELECT {_COLUMNS} FROM doxa_staging"
    " ON CONFLICT (meter_id, ts) DO NOTHING"
)
# Sorted by meter id so two collectors updating the same meters never deadlock. The arrays go in
# binary (%b): dumping them as text cost as much as the statement itself. A new row carries the
# meter's cadence and active flag, by which /ops finds stale meters with an index range scan
# (migration 1310; its triggers keep them in step with ``meters`` after that): supplying them
# here keeps the row trigger that would fill them from firing for every row of the upsert.
_STATUS = """
INSERT INTO meter_status AS ms (meter_id, last_reading_ts, cadence, active)
SELECT u.meter_id, u.ts, meter_cadence(m.protocol, m.collector_id), m.active
  FROM unnest(%b::integer[], %b::timestamptz[]) AS u(meter_id, ts)
  JOIN meters m ON m.id = u.meter_id
 ORDER BY 1
ON CONFLICT (meter_id) DO UPDATE SET last_reading_ts = EXCLUDED.last_reading_ts
WHERE ms.last_reading_ts IS NULL OR ms.last_reading_ts < EXCLUDED.last_reading_ts
"""
# A meter's installation time is ``meters.installed_at`` (issue 13's migration adds it: a
# replacement meter's swap time); read through to_jsonb so this works with or without it.
_RESOLVE = (
    "SELECT serial, id, model, (to_jsonb(m) ->> 'installed_at')::timestamptz"
    " FROM meters m WHERE serial = ANY(%s)"
)
_COPY_REJECTED = (
    "COPY rejected_messages (received_at, collector_id, source, topic, meter_serial, reason,"
    " payload) FROM STDIN (FORMAT BINARY)"
)
_REJECTED_TYPES = ["timestamptz", "text", "text", "text", "text", "text", "bytea"]

Row = tuple[int, datetime, float, float | None, float | None, float | None, float | None,
            float | None, str]  # fmt: skip


class DatabaseUnavailable(RuntimeError):
    """Nothing of the batch was written; the database (or its schema) is not usable now."""


@dataclass
class WriteResult:
    """What one batch did: rows inserted, readings that were already stored, units rejected
    (``rejected`` holds (source, reason) per rejected unit)."""

    inserted: int = 0
    duplicates: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)
    newest: dict[int, datetime] = field(default_factory=dict)  # per meter id, this batch


def _text(value: str | None, limit: int | None = None) -> str | None:
    """Text PostgreSQL accepts: no NUL characters, no lone surrogates (a rejected message's topic
    or reason may quote anything), at most ``limit`` characters (cut ones end in "…")."""
    if value is None:
        return None
    if limit is not None and len(value) > limit:
        value = value[: limit - 1] + "…"  # (before the NUL escapes: cut first, never slow)
    text = value.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\\0")
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"


def _is_data_error(exc: psycopg.Error) -> bool:
    """The batch's data, not the database, is the problem (server- or client-side)."""
    state = exc.sqlstate or ""
    return state.startswith(("22", "23")) or (not state and isinstance(exc, psycopg.DataError))


class Writer:
    """Owns one database connection (opened lazily, reopened after a failure) and the serial →
    meter id cache. Not thread-safe: one thread writes.

    ``fast_path=False`` always takes the staging path (the benchmark compares the two).

    ``meter_status.last_reading_ts`` is health information, not data: it is upserted with the
    batch that comes at least ``status_interval`` seconds after the previous upsert (carrying
    every meter's newest reading since), and on :meth:`close`. Upserting it with every batch
    cost more than the batch's ``COPY`` at 1,000 readings."""

    def __init__(
        self,
        conninfo: str,
        collector_id: str,
        connect_timeout: float = 5.0,
        fast_path: bool = True,
        status_interval: float = 1.0,
        limits: IntakeLimits | None = None,
    ) -> None:
        self.conninfo = conninfo
        self.collector_id = collector_id
        self.connect_timeout = connect_timeout
        self.fast_path = fast_path
        self.status_interval = status_interval
        self._conn: psycopg.Connection | None = None
        self._ids: dict[str, int] = {}  # meters are never deleted, so ids stay valid
        self._facts: dict[int, MeterFacts] = {}  # model and installation time, per meter id
        self.limits = limits or IntakeLimits()
        self._pending_status: dict[int, datetime] = {}  # committed, not yet in meter_status
        self._status_at = float("-inf")
        # A test hook: called inside each batch's transaction after its readings went in; an
        # exception from it rolls the batch back and reaches the pipeline as a writer failure.
        self.fault_hook: Callable[[Sequence[Unit]], None] | None = None

    @property
    def limits(self) -> IntakeLimits:
        """The intake bounds applied to every unit (collector/intake.py); setting them starts a
        new rejection rate window."""
        return self._limits

    @limits.setter
    def limits(self, limits: IntakeLimits) -> None:
        self._limits = limits
        self._bound = RejectionBound(limits)

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self.close()
            conn = psycopg.connect(
                self.conninfo,
                connect_timeout=max(1, int(self.connect_timeout)),
                application_name=f"doxa-collector:{self.collector_id}",
                options="-c statement_timeout=60000",
            )
            conn.execute(_STAGING_DDL)
            conn.commit()
            self._conn = conn
        return self._conn

    def close(self) -> None:
        """Write the meters' pending status (best effort), then close the connection."""
        if self._pending_status and self._conn is not None and not self._conn.broken:
            with contextlib.suppress(psycopg.Error), self._conn.transaction():
                self._write_status(self._conn, {})
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None

    def write(self, units: Sequence[Unit]) -> WriteResult:
        """Write a batch; raises :class:`DatabaseUnavailable` when nothing could be written."""
        try:
            conn = self._connection()
            try:
                result = self._write_transaction(conn, units)
            except psycopg.Error as exc:
                if not _is_data_error(exc) or conn.broken:
                    raise
                log.warning("batch refused (%s); writing it message by message", exc.sqlstate)
                with conn.transaction():
                    result = self._write_one_by_one(conn, units)
                    wrote_status = self._status_if_due(conn, result.newest)
                self._status_committed(result.newest, wrote_status)
            return result
        except psycopg.Error as exc:
            self.close()
            raise DatabaseUnavailable(str(exc).strip().splitlines()[0] if str(exc) else "") from exc

    # -- internals -----------------------------------------------------------------------------

    def _write_transaction(self, conn: psycopg.Connection, units: Sequence[Unit]) -> WriteResult:
        """The batch in one transaction: straight ``COPY`` first, the idempotent path if the batch
        holds a reading already stored. (No savepoint: the ``COPY`` is the transaction's first
        write, so rolling the transaction back loses nothing else; this saves two round trips
        per batch.)"""
        if self.fast_path:
            try:
                with conn.transaction():
                    result = self._write_batch(conn, units, direct=True)
                    wrote_status = self._status_if_due(conn, result.newest)
                self._status_committed(result.newest, wrote_status)
                return result
            except errors.UniqueViolation:
                pass  # something in the batch is stored already: the idempotent path
        with conn.transaction():
            result = self._write_batch(conn, units, direct=False)
            wrote_status = self._status_if_due(conn, result.newest)
        self._status_committed(result.newest, wrote_status)
        return result

    def _status_if_due(self, conn: psycopg.Connection, newest: dict[int, datetime]) -> bool:
        """Inside the batch's transaction: upsert the meters' status if it is time."""
        if time.monotonic() - self._status_at < self.status_interval:
            return False
        self._write_status(conn, newest)
        return True

    def _write_status(self, conn: psycopg.Connection, newest: dict[int, datetime]) -> None:
        merged = dict(self._pending_status)
        for meter_id, ts in newest.items():
            if merged.get(meter_id, ts) <= ts:
                merged[meter_id] = ts
        if merged:
            status = sorted(merged.items())
            conn.execute(_STATUS, ([m for m, _ in status], [ts for _, ts in status]))

    def _status_committed(self, newest: dict[int, datetime], written: bool) -> None:
        """After the batch committed: either its status went with it, or it waits."""
        if written:
            self._pending_status.clear()
            self._status_at = time.monotonic()
            return
        pending = self._pending_status
        for meter_id, ts in newest.items():
            if pending.get(meter_id, ts) <= ts:
                pending[meter_id] = ts

    def _resolve(self, conn: psycopg.Connection, serials: Iterable[str]) -> dict[str, int]:
        # (A serial PostgreSQL cannot hold is simply unknown.)
        ids = self._ids
        missing = [s for s in set(serials) if s not in ids and "\x00" not in s]
        if missing:
            found = conn.execute(
                _RESOLVE,
                (missing,),
            ).fetchall()
            for serial, meter_id, model, installed_at in found:
                ids[serial] = meter_id
                self._facts[meter_id] = MeterFacts(model, installed_at)
        return ids

    def _write_batch(
        self, conn: psycopg.Connection, units: Sequence[Unit], *, direct: bool
    ) -> WriteResult:
        """Write the batch's readings (``direct``: one ``COPY`` into ``readings``, which fails on
        a reading already stored; else through the staging table), the meters' status and the
        rejections. Readings go first: nothing precedes them in the transaction."""
        result = WriteResult()
        rejected: list[tuple[Unit, str]] = []
        ids = self._resolve(conn, (r.serial for u in units if u.reason is None for r in u.readings))
        rows: list[Row] = []
        seen: set[tuple[int, datetime]] = set()
        newest: dict[int, datetime] = {}
        duplicates = 0
        for unit in units:
            if unit.reason is not None:
                rejected.append((unit, unit.reason))
                continue
            readings = unit.readings
            unknown = None
            for r in readings:
                if r.serial not in ids:
                    unknown = r.serial
                    break
            if unknown is not None:
                rejected.append((unit, f"unknown meter serial {unknown!r:.80}"))
                continue
            why = self._impossible(unit, ids)
            if why is not None:
                rejected.append((unit, why))
                continue
            source = unit.source
            for r in readings:
                meter_id = ids[r.serial]
                ts = r.ts
                key = (meter_id, ts)
                if key in seen:
                    duplicates += 1
                    continue
                seen.add(key)
                rows.append(
                    (meter_id, ts, r.energy_import_kwh, r.energy_export_kwh, r.power_w,
                     r.voltage_v, r.current_a, r.frequency_hz, source)
                )  # fmt: skip
                latest = newest.get(meter_id)
                if latest is None or latest < ts:
                    newest[meter_id] = ts
        with conn.cursor() as cur:
            if rows:
                if direct:
                    self._copy(cur, _COPY_READINGS, rows)
                    result.inserted = len(rows)
                else:
                    # (Staged rows go at commit; in the one-by-one path earlier units' rows are
                    # still there, and inserting them again is a no-op.)
                    self._copy(cur, _COPY_STAGING, rows)
                    cur.execute(_INSERT_STAGED)
                    result.inserted = max(cur.rowcount, 0)
                duplicates += len(rows) - result.inserted
                result.newest = newest
            if rejected:
                self._record_rejections(cur, rejected)
        if self.fault_hook is not None:
            self.fault_hook(units)
        result.duplicates = duplicates
        result.rejected = [(u.source, reason) for u, reason in rejected]
        return result

    def _impossible(self, unit: Unit, ids: dict[str, int]) -> str | None:
        """The first reading of ``unit`` no meter could measure, as a reason (collector.intake)."""
        limits, facts, received, backfill = (
            self.limits, self._facts, unit.received_at, unit.source == "backfill"
        )  # fmt: skip
        many = len(unit.readings) > 1
        for i, r in enumerate(unit.readings):
            meter = facts.get(ids[r.serial]) or MeterFacts()
            why = impossible(r, meter, limits, received_at=received, backfill=backfill)
            if why is not None:
                return f"reading {i + 1} of {len(unit.readings)}: {why}" if many else why
        return None

    def _copy(self, cur: psycopg.Cursor, statement: str, rows: list[Row]) -> None:
        with cur.copy(statement) as copy:
            copy.set_types(_TYPES)
            write_row = copy.write_row
            for row in rows:
                write_row(row)

    def _write_one_by_one(self, conn: psycopg.Connection, units: Sequence[Unit]) -> WriteResult:
        total = WriteResult()
        refused: list[tuple[Unit, str]] = []
        for unit in units:
            try:
                with conn.transaction():  # a savepoint inside the outer transaction
                    part = self._write_batch(conn, [unit], direct=False)
            except psycopg.Error as exc:
                if not _is_data_error(exc):
                    raise
                detail = exc.diag.message_primary or str(exc)
                refused.append((unit, f"the database refused the reading: {detail}"))
                continue
            total.inserted += part.inserted
            total.duplicates += part.duplicates
            total.rejected.extend(part.rejected)
            for meter_id, ts in part.newest.items():
                if total.newest.get(meter_id, ts) <= ts:
                    total.newest[meter_id] = ts
        if refused:
            with conn.cursor() as cur:
                self._record_rejections(cur, refused)
            total.rejected.extend((u.source, reason) for u, reason in refused)
        return total

    def _record_rejections(self, cur: psycopg.Cursor, rejected: list[tuple[Unit, str]]) -> None:
        """One row per rejection, within the rate bound (collector.intake.RejectionBound); the
        rest are counted by the caller as rejected and logged here per topic prefix."""
        bound = self._bound
        kept = [
            (unit, reason)
            for unit, reason in rejected
            if bound.admit(topic_prefix(unit.topic, unit.source), unit.received_at)
        ]
        newly = bound.newly_suppressed()
        if newly:
            limits = self.limits
            log.warning(
                "more than %d rejections under topic prefix %s (or %d in all) within %g s: "
                "further ones are counted in the metrics, not stored",
                limits.rejections_per_prefix,
                ", ".join(repr(_text(p, 64)) for p in newly[:5]) + (" …" if len(newly) > 5 else ""),
                limits.rejections_total,
                limits.rejection_window,
            )
        if not kept:
            return
        with cur.copy(_COPY_REJECTED) as copy:
            copy.set_types(_REJECTED_TYPES)
            for unit, reason in kept:
                serial = unit.serial or (unit.readings[0].serial if unit.readings else None)
                payload = unit.payload[:MAX_PAYLOAD] if unit.payload is not None else None
                copy.write_row(
                    (
                        unit.received_at,
                        self.collector_id,
                        unit.source,
                        _text(unit.topic, MAX_TOPIC),
                        _text(serial, 64),
                        _text(reason, MAX_REASON),
                        payload,
                    )
                )
