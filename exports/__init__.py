"""Exports of readings, closing indices and bills as CSV or XLSX: one code path for the CLI
(``doxa export``) and the staff pages.

Each export is one SQL query (an :class:`ExportSpec`) that already gives every value its final
form: times ISO 8601 in the local time zone with its offset, booleans ``true``/``false``, empty
where nothing was reported (contract §3). The two formats then only carry those values:

- **CSV** is PostgreSQL's own ``COPY (query) TO STDOUT (FORMAT csv, HEADER)`` output, passed on in
  ~256 KiB chunks: no row is parsed or formatted in Python, the first bytes leave as soon as the
  first rows are found, and memory holds one chunk whatever the size.
- **XLSX** reads the same query through a server-side cursor into XlsxWriter in
  ``constant_memory`` mode (rows go to a temporary file as they are written) and streams the
  finished workbook from disk. Numbers are numbers, dates are dates, booleans are booleans; a
  sheet holds at most Excel's 1,048,576 rows, then the export goes on in the next sheet.

Readings are ordered by time then meter serial: PostgreSQL reads the range in time order through
the hypertable's time index (the order rows were written in, so pages are read once, in order)
and only sorts the meters of each instant, so output starts at once and nothing big is sorted.
Day ranges are local days (both ends inclusive). Closing indices are not SQL: their rows come
from the metering rule (``metering.register``, contract §8 and §10), the same index the bill ends
on, made in Python for a batch of meters at a time by ``exports.closing`` (``ExportSpec.rows``);
both formats write those rows with the same text as the SQL exports (``_csv_text``).
"""

from __future__ import annotations

import csv
import io
import math
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, BinaryIO
from zoneinfo import ZoneInfo

import psycopg
import xlsxwriter
from psycopg import sql

from billing.periods import FIRST_YEAR, LAST_YEAR, Period
from doxa.errors import ExportError, PeriodError
from schema.identifiers import CUSTOMER_PREFIX

FORMATS = ("csv", "xlsx")
MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
CHUNK_BYTES = 256 * 1024
XLSX_MAX_ROWS = 1_048_576  # Excel's limit per sheet, the header row included
XLSX_FETCH_ROWS = 1_000
# The days anything may be asked for (exports, the API, the customers' pages): the years a
# billing period may have; outside, date arithmetic overflows and nothing was ever metered.
FIRST_DAY, LAST_DAY = date(FIRST_YEAR, 1, 1), date(LAST_YEAR, 12, 31)
# The longest readings range the website exports at once (staff page, customer download); the
# command line has no such bound.
MAX_EXPORT_DAYS = 400


@dataclass(frozen=True)
class Column:
    name: str
    kind: str = "text"  # text | number | date | bool: how XLSX stores the value


@dataclass(frozen=True)
class Selection:
    """Which customers' meters: all, one province, a customer-code prefix (a branch), a list of
    meter serials; given filters all apply."""

    province: str | None = None
    customer_prefix: str | None = None
    meters: tuple[str, ...] = ()

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.province:
            out["province"] = self.province
        if self.customer_prefix:
            out["customer_prefix"] = self.customer_prefix
        if self.meters:
            out["meters"] = list(self.meters)
        return out


@dataclass(frozen=True)
class ExportSpec:
    """One export: its columns and the query giving them, ready for either format."""

    kind: str  # readings | closing_indices | bills
    columns: tuple[Column, ...]
    query: sql.Composable
    params: Mapping[str, Any]
    timezone: str
    filename: str  # without extension
    detail: Mapping[str, Any] = field(default_factory=dict)  # what the audit log records
    # Rows made in Python from ``query``'s rows (the closing indices, from the metering rule);
    # None: the query's rows are the export's.
    rows: Callable[[psycopg.Connection[Any], ExportSpec], Iterator[tuple[Any, ...]]] | None = None


@dataclass
class ExportProgress:
    """Filled in while an export streams: rows sent so far, and whether it ran to the end.

    CSV counts the rows of each chunk once the consumer has taken it, so an export cut short
    says how many rows went out; XLSX counts the rows written into the workbook, which is
    streamed only once complete (a cut-off XLSX download is not a usable file)."""

    rows: int = 0
    complete: bool = False


# -- the queries -------------------------------------------------------------------------------

READINGS_COLUMNS = (
    Column("meter_serial"),
    Column("customer_code"),
    Column("ts"),
    Column("energy_import_kwh", "number"),
    Column("energy_export_kwh", "number"),
    Column("power_w", "number"),
    Column("voltage_v", "number"),
    Column("current_a", "number"),
    Column("quality"),
)
BILLS_COLUMNS = (
    Column("customer_code"),
    Column("meter_serial"),
    Column("period_start", "date"),
    Column("period_end", "date"),
    Column("days", "number"),
    Column("start_index_kwh", "number"),
    Column("end_index_kwh", "number"),
    Column("consumption_kwh", "number"),
    Column("amount_vnd", "number"),
    Column("vat_vnd", "number"),
    Column("total_vnd", "number"),
    Column("estimated", "bool"),
    # Contract §11: a correction is one more row (version 2, 3…) holding the difference.
    Column("status"),  # draft | held | issued
    Column("version", "number"),
    Column("households", "number"),
    Column("held_reason"),
)
BILL_STATUSES = ("draft", "held", "issued")
CLOSING_COLUMNS = (
    Column("customer_code"),
    Column("meter_serial"),
    Column("closing_at"),
    Column("index_kwh", "number"),
    Column("estimated", "bool"),
    Column("before_ts"),
    Column("before_kwh", "number"),
    Column("after_ts"),
    Column("after_kwh", "number"),
)


def _iso(expr: str) -> str:
    """SQL for a timestamptz as ISO 8601 in the session's zone with its offset; fractions of a
    second only when there are some (as Python's ``isoformat``)."""
    return (
        f"CASE WHEN {expr} = date_trunc('second', {expr})"
        f" THEN to_char({expr}, 'YYYY-MM-DD\"T\"HH24:MI:SSTZH:TZM')"
        f" ELSE to_char({expr}, 'YYYY-MM-DD\"T\"HH24:MI:SS.USTZH:TZM') END"
    )


def _bool(expr: str) -> str:
    return f"CASE WHEN {expr} THEN 'true' WHEN NOT {expr} THEN 'false' END"


def _where(selection: Selection, params: dict[str, Any]) -> str:
    """The selection's conditions on ``c`` (customers) and ``m`` (meters); fills ``params``."""
    conditions = ["true"]
    if selection.province:
        params["province"] = selection.province
        conditions.append("c.province = %(province)s")
    if selection.customer_prefix:
        prefix = selection.customer_prefix.strip().upper()
        if not CUSTOMER_PREFIX.match(prefix):
            raise ExportError(f"invalid customer code prefix {selection.customer_prefix!r}")
        params["prefix"] = prefix + "%"
        conditions.append("c.code LIKE %(prefix)s")
    if selection.meters:
        params["meters"] = list(selection.meters)
        conditions.append("m.serial = ANY(%(meters)s)")
    return " AND ".join(conditions)


def local_day_start(day: date, tz: str) -> datetime:
    return datetime.combine(day, time(), ZoneInfo(tz))


def parse_period(period: str) -> tuple[int, int]:
    try:
        parsed = Period.parse(period)
    except PeriodError:
        raise ExportError(
            f"invalid period {period!r}: expected YYYY-MM, a month from {FIRST_YEAR} to {LAST_YEAR}"
        ) from None
    return parsed.year, parsed.month


def in_range(day: date) -> bool:
    return FIRST_DAY <= day <= LAST_DAY


def check_days(date_from: date, date_to: date, max_days: int | None = None) -> None:
    """Raise :class:`ExportError` unless FROM..TO is a range of allowed days, in order, of at
    most ``max_days`` days (both ends included)."""
    for day in (date_from, date_to):
        if not in_range(day):
            raise ExportError(f"{day} is out of range: days go from {FIRST_DAY} to {LAST_DAY}")
    if date_to < date_from:
        raise ExportError(f"the end date {date_to} is before the start date {date_from}")
    if max_days is not None and (date_to - date_from).days >= max_days:
        raise ExportError(f"at most {max_days} days at once: {date_from}..{date_to} is longer")


def readings(
    date_from: date,
    date_to: date,
    tz: str,
    selection: Selection = Selection(),
    max_days: int | None = None,
    history: bool = False,
) -> ExportSpec:
    """Readings of local days ``date_from``..``date_to`` (inclusive), by time then meter; at
    most ``max_days`` days when given (the website passes :data:`MAX_EXPORT_DAYS`). With
    ``history``, one row per version of each reading (contract §12)."""
    check_days(date_from, date_to, max_days)
    params: dict[str, Any] = {
        "start": local_day_start(date_from, tz),
        "end": local_day_start(date_to + timedelta(days=1), tz),
    }
    where = _where(selection, params)
    if history:
        return _readings_history(date_from, date_to, tz, selection, params, where)
    query = f"""
        SELECT m.serial AS meter_serial, c.code AS customer_code, {_iso("r.ts")} AS ts,
               r.energy_import_kwh, r.energy_export_kwh, r.power_w, r.voltage_v, r.current_a,
               r.quality
        FROM readings r
        JOIN meters m ON m.id = r.meter_id
        JOIN customers c ON c.id = m.customer_id
        WHERE r.ts >= %(start)s AND r.ts < %(end)s AND {where}
        ORDER BY r.ts, m.serial"""
    return ExportSpec(
        kind="readings",
        columns=READINGS_COLUMNS,
        query=sql.SQL(query),  # type: ignore[arg-type]  # built from constants above
        params=params,
        timezone=tz,
        filename=f"readings_{date_from}_{date_to}",
        detail={"from": str(date_from), "to": str(date_to), **selection.describe()},
    )


READINGS_HISTORY_COLUMNS = (
    *READINGS_COLUMNS,
    Column("version", "number"),
    Column("actor"),
    Column("changed_at"),
    Column("reason"),
)


def _readings_history(
    date_from: date,
    date_to: date,
    tz: str,
    selection: Selection,
    params: dict[str, Any],
    where: str,
) -> ExportSpec:
    """Every version of each reading (``reading_versions``; a reading never edited or estimated
    is its one version, by its source, when it arrived), oldest version first."""
    query = f"""
        SELECT m.serial AS meter_serial, c.code AS customer_code, {_iso("r.ts")} AS ts,
               coalesce(v.energy_import_kwh, r.energy_import_kwh) AS energy_import_kwh,
               r.energy_export_kwh, r.power_w, r.voltage_v, r.current_a,
               coalesce(v.quality, r.quality) AS quality, coalesce(v.version, 1) AS version,
               coalesce(v.actor, r.source) AS actor,
               {_iso("coalesce(v.changed_at, r.received_at)")} AS changed_at,
               coalesce(v.reason, '') AS reason
        FROM readings r
        JOIN meters m ON m.id = r.meter_id
        JOIN customers c ON c.id = m.customer_id
        LEFT JOIN reading_versions v ON v.meter_id = r.meter_id AND v.ts = r.ts
        WHERE r.ts >= %(start)s AND r.ts < %(end)s AND {where}
        ORDER BY r.ts, m.serial, v.version"""
    return ExportSpec(
        kind="readings",
        columns=READINGS_HISTORY_COLUMNS,
        query=sql.SQL(query),  # type: ignore[arg-type]  # built from constants above
        params=params,
        timezone=tz,
        filename=f"readings-history_{date_from}_{date_to}",
        detail={"from": str(date_from), "to": str(date_to), "history": True,
                **selection.describe()},
    )  # fmt: skip


EXCEPTIONS_COLUMNS = (
    Column("meter_serial"),
    Column("customer_code"),
    Column("rule"),
    Column("ts_from"),
    Column("ts_to"),
    Column("state"),
    Column("reason"),
)


def reading_exceptions(
    date_from: date | None,
    date_to: date | None,
    tz: str,
    selection: Selection = Selection(),
    open_only: bool = False,
) -> ExportSpec:
    """Validation exceptions (contract §12), those touching local days FROM..TO when given,
    newest first."""
    params: dict[str, Any] = {"open": open_only, "start": None, "end": None}
    if date_from is not None or date_to is not None:
        if date_from is None or date_to is None:
            raise ExportError("give both --from and --to, or neither")
        check_days(date_from, date_to)
        params["start"] = local_day_start(date_from, tz)
        params["end"] = local_day_start(date_to + timedelta(days=1), tz)
    where = _where(selection, params)
    query = f"""
        SELECT m.serial AS meter_serial, c.code AS customer_code, e.rule,
               {_iso("e.ts_from")} AS ts_from, {_iso("e.ts_to")} AS ts_to, e.state, e.reason
        FROM reading_exceptions e
        JOIN meters m ON m.id = e.meter_id
        JOIN customers c ON c.id = m.customer_id
        WHERE (NOT %(open)s OR e.state = 'open')
          AND (%(start)s::timestamptz IS NULL OR e.ts_to >= %(start)s::timestamptz)
          AND (%(end)s::timestamptz IS NULL OR e.ts_from < %(end)s::timestamptz)
          AND {where}
        ORDER BY e.ts_from DESC, m.serial, e.rule"""
    detail: dict[str, Any] = {"open": open_only, **selection.describe()}
    if date_from is not None:
        detail.update({"from": str(date_from), "to": str(date_to)})
    return ExportSpec(
        kind="reading_exceptions",
        columns=EXCEPTIONS_COLUMNS,
        query=sql.SQL(query),  # type: ignore[arg-type]  # built from constants above
        params=params,
        timezone=tz,
        filename="reading-exceptions",
        detail=detail,
    )


_STATUS = "CASE WHEN b.status = 'draft' AND b.held_reason IS NOT NULL THEN 'held' ELSE b.status END"


def bills(period: str, selection: Selection = Selection(), status: str | None = None) -> ExportSpec:
    """The bills of a period (``YYYY-MM``), by customer code, meter serial then version; only
    those of ``status`` (draft, held, issued) when given."""
    parse_period(period)
    params: dict[str, Any] = {"period": period.strip()}
    where = _where(selection, params)
    if status is not None:
        if status not in BILL_STATUSES:
            raise ExportError(f"invalid status {status!r}: one of {', '.join(BILL_STATUSES)}")
        params["status"] = status
        where += f" AND {_STATUS} = %(status)s"
    query = f"""
        SELECT c.code AS customer_code, m.serial AS meter_serial, b.period_start, b.period_end,
               b.days, b.start_index_kwh, b.end_index_kwh, b.consumption_kwh, b.amount_vnd,
               b.vat_vnd, b.total_vnd, {_bool("b.estimated")} AS estimated,
               {_STATUS} AS status, b.version, b.households, b.held_reason
        FROM bills b
        JOIN customers c ON c.id = b.customer_id
        JOIN meters m ON m.id = b.meter_id
        WHERE b.period = %(period)s AND {where}
        ORDER BY c.code, m.serial, b.version"""
    return ExportSpec(
        kind="bills",
        columns=BILLS_COLUMNS,
        query=sql.SQL(query),  # type: ignore[arg-type]  # built from constants above
        params=params,
        timezone="UTC",
        filename=f"bills_{period.strip()}",
        detail={
            "period": period.strip(),
            **selection.describe(),
            **({"status": status} if status else {}),
        },
    )


def closing_indices(period: str, tz: str, selection: Selection = Selection()) -> ExportSpec:
    """Every meter in service at the close of ``period`` (its customer's reading day of that
    month, 00:00 local: not yet retired then, already installed), by customer code then meter
    serial: the metering rule's index, as the bill ends on it (``exports.closing``)."""
    from exports import closing

    year, month = parse_period(period)
    params: dict[str, Any] = {"year": year, "month": month, "tz": tz}
    where = _where(selection, params)
    close = "make_timestamptz(%(year)s, %(month)s, c.reading_day, 0, 0, 0, %(tz)s)"
    query = f"""
        SELECT m.id, m.serial, c.code, c.reading_day
        FROM meters m
        JOIN customers c ON c.id = m.customer_id
        WHERE (m.active OR m.retired_at >= {close})
          AND (m.installed_at IS NULL OR m.installed_at < {close}) AND {where}
        ORDER BY c.code, m.serial"""
    return ExportSpec(
        kind="closing_indices",
        columns=CLOSING_COLUMNS,
        query=sql.SQL(query),  # type: ignore[arg-type]  # built from constants above
        params=params,
        timezone=tz,
        filename=f"closing-indices_{period.strip()}",
        detail={"period": period.strip(), **selection.describe()},
        rows=closing.rows,
    )


def provinces(conn: psycopg.Connection) -> list[str]:
    """The customers' provinces, for the filter's choices: a skip scan of the province index, so
    a few dozen index probes whatever the number of customers."""
    rows = conn.execute(
        """
        WITH RECURSIVE p AS (
            (SELECT province FROM customers ORDER BY province LIMIT 1)
            UNION ALL
            SELECT (SELECT c.province FROM customers c WHERE c.province > p.province
                    ORDER BY c.province LIMIT 1)
            FROM p WHERE p.province IS NOT NULL
        )
        SELECT province FROM p WHERE province IS NOT NULL AND province <> ''"""
    ).fetchall()
    return [row[0] for row in rows]


def unknown_meters(conn: psycopg.Connection, serials: tuple[str, ...]) -> list[str]:
    """The serials in ``serials`` that name no meter (so a typo is an error, not an empty file)."""
    if not serials:
        return []
    known = {
        row[0]
        for row in conn.execute(
            "SELECT serial FROM meters WHERE serial = ANY(%s)", (list(serials),)
        ).fetchall()
    }
    return [s for s in serials if s not in known]


# -- the two formats ---------------------------------------------------------------------------


def _set_session(conn: psycopg.Connection, spec: ExportSpec) -> None:
    """Within the export's transaction: its time zone, ISO dates and exact floats."""
    conn.execute(
        "SELECT set_config('TimeZone', %s, true), set_config('DateStyle', 'ISO, YMD', true),"
        " set_config('extra_float_digits', '1', true)",
        (spec.timezone,),
    )


def iter_csv(
    conn: psycopg.Connection,
    spec: ExportSpec,
    progress: ExportProgress | None = None,
    chunk_bytes: int = CHUNK_BYTES,
) -> Iterator[bytes]:
    """The export as CSV with its header, in chunks of about :data:`CHUNK_BYTES`."""
    progress = progress if progress is not None else ExportProgress()
    if spec.rows is not None:
        yield from _iter_rows_csv(conn, spec, progress, chunk_bytes)
        return
    statement = sql.SQL("COPY ({}) TO STDOUT WITH (FORMAT csv, HEADER true)").format(spec.query)
    with conn.transaction():
        _set_session(conn, spec)
        with conn.cursor() as cur:
            with cur.copy(statement, spec.params) as copy:
                buffer = bytearray()
                pending = -1  # rows in the buffer; COPY sends one message per row, header first
                for data in copy:
                    buffer += data
                    pending += 1
                    if len(buffer) >= chunk_bytes:
                        yield bytes(buffer)
                        # Resumed: the consumer took the chunk (a client that went away closes
                        # the stream at the yield instead), so its rows count as sent.
                        progress.rows += pending
                        buffer.clear()
                        pending = 0
                if buffer:
                    yield bytes(buffer)
                    progress.rows += pending
            if cur.rowcount >= 0:  # the server's own count, once the copy has ended
                progress.rows = cur.rowcount
    progress.complete = True


def _csv_text(value: Any) -> Any:
    """A value made in Python written as PostgreSQL writes it in the SQL exports: floats in
    their shortest exact form (``100``, ``1.5e-05``, ``1e+15``), decimals as they are."""
    if isinstance(value, float):
        return _pg_float(value)
    if isinstance(value, Decimal):
        return f"{value:f}"
    return value


def _pg_float(x: float) -> str:
    """PostgreSQL's float8 text (``extra_float_digits`` ≥ 1): Python's shortest repr, without a
    trailing ``.0`` and with an exponent from 1e15 on (Python waits until 1e16)."""
    if not math.isfinite(x):
        return {math.inf: "Infinity", -math.inf: "-Infinity"}.get(x, "NaN")
    text = repr(x)
    if "e" in text:
        return text
    if abs(x) >= 1e15:
        sign = "-" if x < 0 else ""
        whole, _, fraction = text.lstrip("-").partition(".")
        digits = (whole + fraction).rstrip("0")
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{mantissa}e+{len(whole) - 1}"
    return text[:-2] if text.endswith(".0") else text


def _iter_rows_csv(
    conn: psycopg.Connection, spec: ExportSpec, progress: ExportProgress, chunk_bytes: int
) -> Iterator[bytes]:
    """CSV of an export whose rows are made in Python, with its header, in chunks."""
    assert spec.rows is not None
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([c.name for c in spec.columns])
    with conn.transaction():
        _set_session(conn, spec)
        pending = 0  # rows in the buffer, counted once the consumer has taken their chunk
        for values in spec.rows(conn, spec):
            writer.writerow([_csv_text(v) for v in values])
            pending += 1
            if buffer.tell() >= chunk_bytes:
                yield buffer.getvalue().encode()
                progress.rows += pending
                pending = 0
                buffer.seek(0)
                buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue().encode()
        progress.rows += pending
    progress.complete = True


class _XlsxSheets:
    """Writes rows into as many sheets as Excel's row limit needs, each with the header."""

    def __init__(self, workbook: Any, spec: ExportSpec, max_rows: int) -> None:
        self.workbook = workbook
        self.spec = spec
        self.max_rows = max_rows
        self.header = workbook.add_format({"bold": True})
        self.date = workbook.add_format({"num_format": "yyyy-mm-dd"})
        self.sheet: Any = None
        self.count = 0
        self.row = max_rows

    def _next_sheet(self) -> None:
        self.count += 1
        name = self.spec.kind.replace("_", " ")
        sheet = self.workbook.add_worksheet(name if self.count == 1 else f"{name} {self.count}")
        for col, column in enumerate(self.spec.columns):
            sheet.set_column(col, col, max(12, len(column.name) + 2))
            sheet.write_string(0, col, column.name, self.header)
        sheet.freeze_panes(1, 0)
        self.sheet = sheet
        self.row = 1

    def write(self, values: tuple[Any, ...]) -> None:
        if self.row >= self.max_rows:
            self._next_sheet()
        sheet, row = self.sheet, self.row
        for col, (column, value) in enumerate(zip(self.spec.columns, values, strict=True)):
            if value is None:
                continue
            kind = column.kind
            if kind == "number":
                sheet.write_number(row, col, value)
            elif kind == "date":
                sheet.write_datetime(row, col, value, self.date)
            elif kind == "bool":
                sheet.write_boolean(row, col, value == "true")
            else:
                sheet.write_string(row, col, str(value))
        self.row += 1

    def finish(self) -> None:
        if self.sheet is None:
            self._next_sheet()


def _xlsx_rows(conn: psycopg.Connection, spec: ExportSpec) -> Iterator[tuple[Any, ...]]:
    if spec.rows is not None:
        yield from spec.rows(conn, spec)
        return
    with conn.cursor(name="doxa_export") as cur:
        cur.itersize = XLSX_FETCH_ROWS
        cur.execute(spec.query, spec.params)
        yield from cur


def iter_xlsx(
    conn: psycopg.Connection,
    spec: ExportSpec,
    progress: ExportProgress | None = None,
    *,
    max_rows_per_sheet: int = XLSX_MAX_ROWS,
) -> Iterator[bytes]:
    """The export as an XLSX workbook, in chunks; memory stays flat (see the module's note)."""
    progress = progress if progress is not None else ExportProgress()
    with tempfile.TemporaryDirectory(prefix="doxa-xlsx-") as tmp:
        path = os.path.join(tmp, f"{spec.filename}.xlsx")
        workbook = xlsxwriter.Workbook(
            path,
            {
                "constant_memory": True,
                "tmpdir": tmp,
                "nan_inf_to_errors": True,
                "strings_to_formulas": False,
                "strings_to_urls": False,
            },
        )
        workbook.use_zip64()
        sheets = _XlsxSheets(workbook, spec, max_rows_per_sheet)
        with conn.transaction():
            _set_session(conn, spec)
            for values in _xlsx_rows(conn, spec):
                sheets.write(values)
                progress.rows += 1
        sheets.finish()
        workbook.close()
        with open(path, "rb") as fh:
            while chunk := fh.read(CHUNK_BYTES):
                yield chunk
    progress.complete = True


def iter_export(
    conn: psycopg.Connection, spec: ExportSpec, fmt: str, progress: ExportProgress | None = None
) -> Iterator[bytes]:
    """The export in ``fmt`` (``csv`` or ``xlsx``) as a stream of bytes."""
    if fmt == "csv":
        return iter_csv(conn, spec, progress)
    if fmt == "xlsx":
        return iter_xlsx(conn, spec, progress)
    raise ExportError(f"unknown format {fmt!r}: csv or xlsx")


def write_export(conn: psycopg.Connection, spec: ExportSpec, fmt: str, out: BinaryIO) -> int:
    """Write the whole export to ``out``; returns the number of rows."""
    progress = ExportProgress()
    for chunk in iter_export(conn, spec, fmt, progress):
        out.write(chunk)
    return progress.rows
