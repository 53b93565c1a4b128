"""Customers and meters from the inventory CSV (contract §6): validate all, then write all.

``parse_inventory`` is pure: text in, rows or an :class:`InventoryError` listing every problem
with its line and column. ``import_inventory`` writes the rows in one transaction, so a file is
imported whole or not at all; re-importing a file updates the rows it names.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import psycopg

from doxa.errors import InventoryError
from schema.identifiers import COLLECTOR_ID, CUSTOMER_CODE, SERIAL

REQUIRED_COLUMNS = (
    "customer_code",
    "customer_name",
    "address",
    "province",
    "tariff_group",
    "reading_day",
    "meter_serial",
    "protocol",
    "model",
    "host",
    "port",
    "unit_id",
    "multiplier",
)
OPTIONAL_COLUMNS = ("collector_id", "households")
MAX_HOUSEHOLDS = 999  # households sharing one meter (contract §11)
# Gateway quirks (contract §11b): per gateway, so the meters of one host:port must agree.
GATEWAY_COLUMNS = ("framing", "request_delay_ms", "timeout_ms")
FRAMINGS = ("tcp", "rtu-over-tcp")
MAX_REPORTED = 50


@dataclass(frozen=True)
class InventoryRow:
    line: int
    customer_code: str
    customer_name: str
    address: str
    province: str
    tariff_group: str
    reading_day: int
    meter_serial: str
    protocol: str
    model: str | None
    host: str | None
    port: int | None
    unit_id: int | None
    multiplier: Decimal
    collector_id: str | None
    households: int = 1
    gateway: GatewayOptions | None = None  # Modbus meters only

    @property
    def gateway_key(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def customer_fields(self) -> tuple[str, str, str, str, int]:
        return (
            self.customer_name,
            self.address,
            self.province,
            self.tariff_group,
            self.reading_day,
        )


@dataclass(frozen=True)
class GatewayOptions:
    """How a Modbus gateway is spoken to; one value per host:port (contract §11b)."""

    framing: str = "tcp"
    request_delay_ms: int = 0
    timeout_ms: int | None = None  # None: the collector's DOXA_MODBUS_TIMEOUT

    def describe(self) -> str:
        timeout = "default" if self.timeout_ms is None else f"{self.timeout_ms} ms"
        return (
            f"framing {self.framing}, request_delay_ms {self.request_delay_ms}, timeout {timeout}"
        )


def _gateway_options(get: dict[str, str]) -> GatewayOptions:
    framing = get.get("framing", "").lower() or "tcp"
    if framing not in FRAMINGS:
        raise _RowProblem("framing", f"{get['framing']!r} is not one of {', '.join(FRAMINGS)}")
    delay = _int_in(get, "request_delay_ms", 0, 60_000) if get.get("request_delay_ms") else 0
    timeout = _int_in(get, "timeout_ms", 1, 600_000) if get.get("timeout_ms") else None
    return GatewayOptions(framing, delay, timeout)


class _RowProblem(ValueError):
    def __init__(self, column: str, message: str) -> None:
        super().__init__(message)
        self.column = column


def _int_in(cells: dict[str, str], column: str, low: int, high: int) -> int:
    text = cells.get(column, "").strip()
    if not text:
        raise _RowProblem(column, "is empty")
    try:
        value = int(text)
    except ValueError:
        raise _RowProblem(column, f"{text!r} is not a whole number") from None
    if not low <= value <= high:
        raise _RowProblem(column, f"{value} is outside {low}–{high}")
    return value


def _parse_row(
    line: int, cells: dict[str, str], tariff_groups: frozenset[str], models: frozenset[str]
) -> InventoryRow:
    get = {k: (v or "").strip() for k, v in cells.items()}
    code = get["customer_code"].upper()
    if not CUSTOMER_CODE.match(code):
        raise _RowProblem(
            "customer_code",
            f"{get['customer_code']!r} is not an EVN customer code "
            "(2 letters, 4-character unit code, digits; 11–13 characters)",
        )
    if not get["customer_name"]:
        raise _RowProblem("customer_name", "is empty")
    if not get["province"]:
        raise _RowProblem("province", "is empty")
    tariff = get["tariff_group"].lower()
    if tariff not in tariff_groups:
        raise _RowProblem(
            "tariff_group",
            f"{get['tariff_group']!r} is not one of {', '.join(sorted(tariff_groups))}",
        )
    reading_day = _int_in(get, "reading_day", 1, 28)
    serial = get["meter_serial"]
    if not SERIAL.match(serial):
        raise _RowProblem(
            "meter_serial", f"{serial!r} must be 1–64 letters, digits or _ . : - (no spaces or /)"
        )
    protocol = get["protocol"].lower()
    model = host = None
    port = unit_id = None
    gateway: GatewayOptions | None = None
    if protocol == "modbus":
        model = get["model"].lower()
        if model not in models:
            raise _RowProblem(
                "model", f"{get['model']!r} is not one of {', '.join(sorted(models))}"
            )
        host = get["host"]
        if not host or any(c.isspace() for c in host):
            raise _RowProblem("host", "is empty" if not host else f"{host!r} is not a host name")
        port = _int_in(get, "port", 1, 65535)
        unit_id = _int_in(get, "unit_id", 1, 247)
        gateway = _gateway_options(get)
    elif protocol == "mqtt":
        for column in ("host", "port", "unit_id", *GATEWAY_COLUMNS):
            if get.get(column):
                raise _RowProblem(column, "applies only to modbus meters; leave it empty for mqtt")
        model = get["model"].lower() or None
    else:
        raise _RowProblem("protocol", f"{get['protocol']!r} is not modbus or mqtt")
    multiplier = Decimal(1)
    if get["multiplier"]:
        try:
            multiplier = Decimal(get["multiplier"])
        except InvalidOperation:
            raise _RowProblem("multiplier", f"{get['multiplier']!r} is not a number") from None
        if not multiplier.is_finite() or multiplier <= 0 or multiplier >= 10**7:
            raise _RowProblem("multiplier", f"{get['multiplier']!r} must be a positive ratio")
    collector_id = get.get("collector_id") or None
    if collector_id is not None and not COLLECTOR_ID.match(collector_id):
        raise _RowProblem("collector_id", f"{collector_id!r} must be letters, digits or _ . -")
    households = _int_in(get, "households", 1, MAX_HOUSEHOLDS) if get.get("households") else 1
    return InventoryRow(
        households=households,
        line=line,
        customer_code=code,
        customer_name=get["customer_name"],
        address=get["address"],
        province=get["province"],
        tariff_group=tariff,
        reading_day=reading_day,
        meter_serial=serial,
        protocol=protocol,
        model=model,
        host=host,
        port=port,
        unit_id=unit_id,
        multiplier=multiplier,
        collector_id=collector_id,
        gateway=gateway,
    )


def parse_inventory(
    text: str, *, tariff_groups: Iterable[str], models: Iterable[str]
) -> list[InventoryRow]:
    """Validate a whole inventory file; raise :class:`InventoryError` naming every bad line."""
    groups, known_models = frozenset(tariff_groups), frozenset(models)
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise InventoryError(["line 1: the file is empty (a header row is required)"]) from None
    except csv.Error as exc:
        raise InventoryError([f"line 1: {exc}"]) from None
    problems: list[str] = []
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        problems.append(f"line 1: missing column(s): {', '.join(missing)}")
    unknown = [h for h in header if h not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS + GATEWAY_COLUMNS]
    if unknown:
        problems.append(f"line 1: unknown column(s): {', '.join(repr(h) for h in unknown)}")
    duplicated = sorted({h for h in header if header.count(h) > 1})
    if duplicated:
        problems.append(f"line 1: column(s) given twice: {', '.join(duplicated)}")
    if problems:
        raise InventoryError(problems)

    rows: list[InventoryRow] = []
    customers: dict[str, InventoryRow] = {}
    serials: dict[str, int] = {}
    addresses: dict[tuple[str | None, int | None, int | None], int] = {}
    gateways: dict[str, InventoryRow] = {}  # host:port → its first row
    line = 1
    try:
        for record in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in record):
                continue
            if len(record) != len(header):
                problems.append(f"line {line}: {len(record)} cells, the header has {len(header)}")
                continue
            try:
                row = _parse_row(line, dict(zip(header, record, strict=True)), groups, known_models)
            except _RowProblem as exc:
                problems.append(f"line {line}, column {exc.column}: {exc}")
                continue
            if row.meter_serial in serials:
                problems.append(
                    f"line {line}, column meter_serial: {row.meter_serial!r} is already on "
                    f"line {serials[row.meter_serial]}"
                )
                continue
            first = customers.setdefault(row.customer_code, row)
            if first.customer_fields != row.customer_fields:
                problems.append(
                    f"line {line}, column customer_code: {row.customer_code} has other customer "
                    f"details on line {first.line}"
                )
                continue
            if row.protocol == "modbus":
                address = (row.host, row.port, row.unit_id)
                if address in addresses:
                    problems.append(
                        f"line {line}, column unit_id: {row.host}:{row.port} unit {row.unit_id} is "
                        f"already used on line {addresses[address]}"
                    )
                    continue
                first_on = gateways.setdefault(row.gateway_key, row)
                if first_on.gateway != row.gateway:
                    problems.append(
                        f"line {line}: gateway {row.gateway_key} has other options than on line "
                        f"{first_on.line} ({_describe(row)} here, {_describe(first_on)} there); "
                        "the meters of one gateway must agree"
                    )
                    continue
                addresses[address] = line
            serials[row.meter_serial] = line
            rows.append(row)
    except csv.Error as exc:
        problems.append(f"line {reader.line_num}: {exc}")
    if problems:
        raise InventoryError(problems[:MAX_REPORTED])
    if not rows:
        raise InventoryError(["line 2: the file has a header but no meters"])
    return rows


def _describe(row: InventoryRow) -> str:
    return (row.gateway or GatewayOptions()).describe()


def known_tariff_groups(conn: psycopg.Connection) -> set[str]:
    groups = {r[0] for r in conn.execute("SELECT DISTINCT tariff_group FROM tariff_tables")}
    return groups or {"residential"}


def _check_against_database(conn: psycopg.Connection, rows: list[InventoryRow]) -> None:
    """Problems only the database can reveal: a serial owned by another customer, a bus address
    taken by another meter."""
    problems = []
    owners = dict(
        conn.execute(
            "SELECT m.serial, c.code FROM meters m JOIN customers c ON c.id = m.customer_id"
            " WHERE m.serial = ANY(%s)",
            ([r.meter_serial for r in rows],),
        ).fetchall()
    )
    for row in rows:
        owner = owners.get(row.meter_serial)
        if owner is not None and owner != row.customer_code:
            problems.append(
                f"line {row.line}, column meter_serial: meter {row.meter_serial} belongs to "
                f"customer {owner}, not {row.customer_code}"
            )
    modbus = [r for r in rows if r.protocol == "modbus"]
    if modbus:
        taken = {
            (h, p, u): s
            for h, p, u, s in conn.execute(
                "SELECT host, port, unit_id, serial FROM meters WHERE protocol = 'modbus'"
                " AND host = ANY(%s)"
                " AND retired_at IS NULL",
                (sorted({r.host for r in modbus}),),
            )
        }
        for row in modbus:
            holder = taken.get((row.host, row.port, row.unit_id))
            if holder is not None and holder != row.meter_serial:
                problems.append(
                    f"line {row.line}, column unit_id: {row.host}:{row.port} unit {row.unit_id} "
                    f"belongs to meter {holder}"
                )
    problems += _check_gateways(conn, modbus)
    if problems:
        raise InventoryError(problems[:MAX_REPORTED])


def _check_gateways(conn: psycopg.Connection, modbus: list[InventoryRow]) -> list[str]:
    """The file's gateway options against the stored meters of those gateways that the file does
    not name (the ones it names are updated together)."""
    if not modbus:
        return []
    named = {r.meter_serial for r in modbus}
    first: dict[str, InventoryRow] = {}
    for row in modbus:
        first.setdefault(row.gateway_key, row)
    problems: list[str] = []
    for host, port, serial, framing, delay, timeout in conn.execute(
        "SELECT host, port, serial, framing, request_delay_ms, timeout_ms FROM meters"
        " WHERE protocol = 'modbus' AND active AND host = ANY(%s) AND NOT serial = ANY(%s)",
        (sorted({r.host or "" for r in modbus}), sorted(named)),
    ):
        mine = first.get(f"{host}:{port}")
        if mine is None:
            continue
        stored = GatewayOptions(framing, delay, timeout)
        if (mine.gateway or GatewayOptions()) != stored:
            problems.append(
                f"line {mine.line}: gateway {mine.gateway_key} has other options than its stored "
                f"meter {serial} ({_describe(mine)} here, {stored.describe()} stored); the meters "
                "of one gateway must agree"
            )
            first.pop(mine.gateway_key)  # one problem per gateway
    return problems


def _options(row: InventoryRow) -> tuple[str, int, int | None]:
    g = row.gateway or GatewayOptions()
    return g.framing, g.request_delay_ms, g.timeout_ms


def import_inventory(conn: psycopg.Connection, rows: list[InventoryRow]) -> tuple[int, int]:
    """Insert or update every row in one transaction; returns (customers, meters) written."""
    with conn.transaction():
        conn.execute("LOCK TABLE meters IN SHARE ROW EXCLUSIVE MODE")
        _check_against_database(conn, rows)
        customers = {r.customer_code: r for r in rows}
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO customers (code, name, address, province, tariff_group, reading_day)"
                " VALUES (%s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name,"
                " address = EXCLUDED.address, province = EXCLUDED.province,"
                " tariff_group = EXCLUDED.tariff_group, reading_day = EXCLUDED.reading_day,"
                " updated_at = now()",
                [(c, r.customer_name, r.address, r.province, r.tariff_group, r.reading_day)
                 for c, r in customers.items()],
            )  # fmt: skip
            cur.executemany(
                "INSERT INTO meters (serial, customer_id, protocol, model, host, port, unit_id,"
                " multiplier, collector_id, framing, request_delay_ms, timeout_ms, households)"
                " SELECT %s, id, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s FROM customers"
                " WHERE code = %s"
                " ON CONFLICT (serial) DO UPDATE SET protocol = EXCLUDED.protocol,"
                " model = EXCLUDED.model, host = EXCLUDED.host, port = EXCLUDED.port,"
                " unit_id = EXCLUDED.unit_id, multiplier = EXCLUDED.multiplier,"
                " collector_id = EXCLUDED.collector_id, framing = EXCLUDED.framing,"
                " request_delay_ms = EXCLUDED.request_delay_ms, timeout_ms = EXCLUDED.timeout_ms,"
                " updated_at = now()"
                # A retired meter (replaced, decommissioned) stays retired when re-imported.
                ", households = EXCLUDED.households, active = meters.retired_at IS NULL",
                [(r.meter_serial, r.protocol, r.model, r.host, r.port, r.unit_id, r.multiplier,
                  r.collector_id, *_options(r), r.households, r.customer_code) for r in rows],
            )  # fmt: skip
        conn.execute("UPDATE inventory_version SET version = version + 1, changed_at = now()")
    return len(customers), len(rows)
