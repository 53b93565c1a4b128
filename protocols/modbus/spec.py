"""Register maps as data: parse and validate a model's table (a dict, e.g. from TOML).

A model table::

    description = "Eastron SDM120 single-phase meter"
    function = 4                 # default for its quantities: 3 holding, 4 input registers
    data_type = "float32"        # default data type
    byte_order = "ABCD"          # default byte order (ABCD, CDAB, BADC, DCBA)
    max_registers = 60           # most registers the device answers in one request (≤ 125)
    max_gap = 60                 # most unused registers a request may read between two values

    [quantities]                 # name = {address, and any of count, data_type, byte_order,
    energy_import_kwh = { address = 0x0048, unit = "kWh" }   #  scale, unit, function, field}

A quantity named like a Reading field (``energy_import_kwh``, ``power_w``…) fills that field;
``field = "…"`` names the field explicitly; any other quantity is an *extra* (decoded and returned
in ``Measurement.extra``, not stored). ``value = raw × scale`` in ``unit``, converted to the
field's unit (kWh, W, V, A, Hz). ``energy_import_kwh`` is required. Every problem is reported at
once, each naming its key.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from protocols.modbus.datatypes import ByteOrder, DataType
from protocols.modbus.plan import MODBUS_MAX_REGISTERS
from protocols.reading import MEASURED_FIELDS


class ModelConfigError(ValueError):
    """A register map that cannot be used; ``problems`` lists every problem, each naming its key."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(problems[0] + more)


# Unit of each Reading field, and the units a map may use for it with their conversion factor.
FIELD_UNITS: dict[str, dict[str, float]] = {
    "energy_import_kwh": {"kWh": 1.0, "Wh": 0.001, "MWh": 1000.0},
    "energy_export_kwh": {"kWh": 1.0, "Wh": 0.001, "MWh": 1000.0},
    "power_w": {"W": 1.0, "kW": 1000.0},
    "voltage_v": {"V": 1.0, "kV": 1000.0},
    "current_a": {"A": 1.0, "mA": 0.001},
    "frequency_hz": {"Hz": 1.0},
}
CANONICAL_UNIT = {name: next(iter(units)) for name, units in FIELD_UNITS.items()}
NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
MODEL_KEYS = frozenset(
    {"description", "function", "data_type", "byte_order", "max_registers", "max_gap", "quantities"}
)
QUANTITY_KEYS = frozenset(
    {"address", "count", "data_type", "byte_order", "scale", "unit", "function", "field"}
)
FUNCTIONS = (3, 4)


@dataclass(frozen=True, slots=True)
class QuantitySpec:
    """One value a meter serves."""

    name: str
    field: str | None  # the Reading field it fills, or None for an extra
    function: int
    address: int
    data_type: DataType
    byte_order: ByteOrder
    scale: float
    unit: str

    @property
    def count(self) -> int:
        return self.data_type.registers

    @property
    def factor(self) -> float:
        """raw × factor = the value in the field's unit."""
        units = FIELD_UNITS.get(self.field or "", {})
        return self.scale * units.get(self.unit, 1.0)


@dataclass(frozen=True, slots=True)
class ModelSpec:
    name: str
    description: str
    max_registers: int
    max_gap: int
    quantities: tuple[QuantitySpec, ...]


class _Problems:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.items.append(f"{where}: {message}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _choice(value: Any, kind: type[DataType] | type[ByteOrder], where: str, p: _Problems) -> Any:
    options = [m.value for m in kind]
    text = value.strip() if isinstance(value, str) else value
    for member in kind:
        if isinstance(text, str) and text.lower() == member.value.lower():
            return member
    p.add(where, f"{value!r} is not one of {', '.join(options)}")
    return None


def _int_in(value: Any, low: int, high: int, where: str, p: _Problems) -> int | None:
    if not _is_int(value):
        p.add(where, f"{value!r} is not a whole number")
        return None
    if not low <= value <= high:
        p.add(where, f"{value} is outside {low}–{high}")
        return None
    result: int = value
    return result


def _defaults(name: str, table: Mapping[str, Any], p: _Problems) -> dict[str, Any]:
    out: dict[str, Any] = {"function": 4, "data_type": DataType.FLOAT32, "byte_order": "ABCD"}
    if "function" in table:
        out["function"] = table["function"]
        if table["function"] not in FUNCTIONS or not _is_int(table["function"]):
            p.add(f"{name}.function", f"{table['function']!r} is not 3 (holding) or 4 (input)")
    if "data_type" in table:
        out["data_type"] = _choice(table["data_type"], DataType, f"{name}.data_type", p)
    out["byte_order"] = _choice(table.get("byte_order", "ABCD"), ByteOrder, f"{name}.byte_order", p)
    return out


def _quantity(
    model: str, qname: str, raw: Any, defaults: dict[str, Any], p: _Problems
) -> QuantitySpec | None:
    where = f"{model}.quantities.{qname}"
    before = len(p.items)
    if not NAME.match(qname):
        p.add(where, "a quantity name is lower-case letters, digits and _")
    if not isinstance(raw, Mapping):
        p.add(where, "must be a table such as { address = 0x0048 }")
        return None
    unknown = sorted(set(raw) - QUANTITY_KEYS)
    if unknown:
        p.add(
            where,
            f"unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(QUANTITY_KEYS))})",
        )
    field = raw.get("field", qname if qname in MEASURED_FIELDS else None)
    if field is not None and field not in MEASURED_FIELDS:
        p.add(f"{where}.field", f"{field!r} is not one of {', '.join(MEASURED_FIELDS)}")
        field = None
    function = raw.get("function", defaults["function"])
    if function not in FUNCTIONS or not _is_int(function):
        p.add(f"{where}.function", f"{function!r} is not 3 (holding) or 4 (input)")
    dtype = (
        _choice(raw["data_type"], DataType, f"{where}.data_type", p)
        if "data_type" in raw
        else defaults["data_type"]
    )
    order = (
        _choice(raw["byte_order"], ByteOrder, f"{where}.byte_order", p)
        if "byte_order" in raw
        else defaults["byte_order"]
    )
    if "address" not in raw:
        p.add(f"{where}.address", "is missing")
        address = None
    else:
        address = _int_in(raw["address"], 0, 0xFFFF, f"{where}.address", p)
    if dtype is not None:
        if "count" in raw and raw["count"] != dtype.registers:
            p.add(f"{where}.count", f"{raw['count']!r} does not match {dtype} ({dtype.registers})")
        if address is not None and address + dtype.registers > 0x10000:
            p.add(f"{where}.address", f"{address:#06x} + {dtype.registers} runs past 0xFFFF")
    scale = raw.get("scale", 1.0)
    if isinstance(scale, bool) or not isinstance(scale, int | float):
        p.add(f"{where}.scale", f"{scale!r} is not a number")
    elif not math.isfinite(scale) or scale == 0:
        p.add(f"{where}.scale", f"{scale!r} must be a finite, non-zero number")
    unit = raw.get("unit", CANONICAL_UNIT.get(field or "", ""))
    if not isinstance(unit, str):
        p.add(f"{where}.unit", f"{unit!r} is not text")
    elif field is not None and unit not in FIELD_UNITS[field]:
        p.add(
            f"{where}.unit", f"{unit!r} is not a unit of {field} ({', '.join(FIELD_UNITS[field])})"
        )
    if len(p.items) > before or address is None or dtype is None or order is None:
        return None
    return QuantitySpec(qname, field, function, address, dtype, order, float(scale), unit)


def parse_model(name: str, table: Mapping[str, Any]) -> ModelSpec:
    """Validate one model's table; raise :class:`ModelConfigError` listing every problem."""
    p = _Problems()
    if not NAME.match(name):
        p.add(name, "a model name is lower-case letters, digits and _")
    if not isinstance(table, Mapping):
        raise ModelConfigError([f"{name}: must be a table with a [quantities] table"])
    unknown = sorted(set(table) - MODEL_KEYS)
    if unknown:
        p.add(name, f"unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(MODEL_KEYS))})")
    description = table.get("description", "")
    if not isinstance(description, str):
        p.add(f"{name}.description", "is not text")
        description = ""
    max_registers = _int_in(
        table.get("max_registers", MODBUS_MAX_REGISTERS),
        1,
        MODBUS_MAX_REGISTERS,
        f"{name}.max_registers",
        p,
    )
    max_gap = _int_in(table.get("max_gap", 16), 0, 0xFFFF, f"{name}.max_gap", p)
    defaults = _defaults(name, table, p)
    raw_quantities = table.get("quantities")
    quantities: list[QuantitySpec] = []
    if not isinstance(raw_quantities, Mapping) or not raw_quantities:
        p.add(f"{name}.quantities", "is missing or empty")
    else:
        for qname, raw in raw_quantities.items():
            q = _quantity(name, str(qname), raw, defaults, p)
            if q is not None:
                quantities.append(q)
    fields: dict[str, str] = {}
    for q in quantities:
        if q.field is not None:
            if q.field in fields:
                p.add(f"{name}.quantities.{q.name}", f"fills {q.field}, as {fields[q.field]} does")
            fields.setdefault(q.field, q.name)
    if raw_quantities and "energy_import_kwh" not in fields and not p.items:
        p.add(f"{name}.quantities", "a quantity must fill energy_import_kwh (the billed register)")
    if p.items:
        raise ModelConfigError(p.items)
    assert max_registers is not None and max_gap is not None
    return ModelSpec(name, description, max_registers, max_gap, tuple(quantities))
