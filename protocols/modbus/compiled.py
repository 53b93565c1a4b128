"""A register map compiled once: its read plan, a decoder per quantity, and the encoders the
simulators use. Decoding never mutates its input and never stores NaN or infinity."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType

from protocols.errors import DecodeError
from protocols.modbus.datatypes import Decoder, Encoder, codec, encode_value
from protocols.modbus.plan import ReadRequest, plan_reads
from protocols.modbus.spec import ModelSpec, QuantitySpec
from protocols.reading import Reading

_EMPTY: Mapping[str, float] = MappingProxyType({})
ENERGY_FIELDS = frozenset({"energy_import_kwh", "energy_export_kwh"})


@dataclass(frozen=True, slots=True)
class Measurement:
    """What a meter measured, without who and when: the Reading fields but serial and ts, plus
    the model's extra quantities (e.g. per-phase values) that are decoded but not stored."""

    energy_import_kwh: float
    energy_export_kwh: float | None = None
    power_w: float | None = None
    voltage_v: float | None = None
    current_a: float | None = None
    frequency_hz: float | None = None
    extra: Mapping[str, float] = field(default_factory=lambda: _EMPTY, hash=False)

    def at(self, serial: str, ts: datetime) -> Reading:
        """The Reading of meter ``serial`` at ``ts``."""
        return Reading(
            serial,
            ts,
            self.energy_import_kwh,
            self.energy_export_kwh,
            self.power_w,
            self.voltage_v,
            self.current_a,
            self.frequency_hz,
        )

    def value(self, name: str) -> float | None:
        """A field's or an extra quantity's value by name."""
        if name in self.extra:
            return self.extra[name]
        result: float | None = getattr(self, name, None)
        return result


@dataclass(frozen=True, slots=True)
class _Slot:
    """Where one quantity sits in the planned responses, with its codec picked at compile time."""

    quantity: QuantitySpec
    block: int
    offset: int
    end: int
    factor: float
    decode: Decoder
    encode: Encoder


@dataclass(frozen=True)
class CompiledModel:
    """A validated register map with its read plan; build with :func:`compile_model`."""

    spec: ModelSpec
    requests: tuple[ReadRequest, ...]
    _slots: tuple[_Slot, ...]

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def quantities(self) -> tuple[QuantitySpec, ...]:
        return self.spec.quantities

    @property
    def functions(self) -> frozenset[int]:
        """The function codes the model is read with."""
        return frozenset(r.function for r in self.requests)

    def decode(self, blocks: Sequence[Sequence[int]]) -> Measurement:
        """Responses (one register list per planned request, in plan order) → a Measurement.

        Raises :class:`DecodeError` for a missing or short block, a register outside 0–65535,
        NaN or infinity, or a negative energy register.
        """
        if len(blocks) != len(self.requests):
            raise DecodeError(
                f"{self.name}: expected {len(self.requests)} response block(s), got {len(blocks)}"
            )
        for i, (block, request) in enumerate(zip(blocks, self.requests, strict=True)):
            if len(block) != request.count:
                raise DecodeError(
                    f"{self.name}: response {i + 1} (address {request.address:#06x}) has "
                    f"{len(block)} register(s), expected {request.count}"
                )
        values: dict[str, float] = {}
        extra: dict[str, float] = {}
        for slot in self._slots:
            q = slot.quantity
            registers = blocks[slot.block][slot.offset : slot.end]
            try:
                raw = slot.decode(registers)
            except ValueError as exc:
                raise DecodeError(f"{self.name}.{q.name} at {q.address:#06x}: {exc}") from None
            value = float(raw) if slot.factor == 1.0 else raw * slot.factor
            if not math.isfinite(value):
                raise DecodeError(
                    f"{self.name}.{q.name} at {q.address:#06x} is {value} (registers "
                    f"{[f'{r:#06x}' for r in registers]}), not a measurement"
                )
            if q.field in ENERGY_FIELDS and value < 0:
                raise DecodeError(f"{self.name}.{q.name} at {q.address:#06x} is negative ({value})")
            if q.field is None:
                extra[q.name] = value
            else:
                values[q.field] = value
        return Measurement(
            extra=MappingProxyType(extra) if extra else _EMPTY,
            **values,  # energy_import_kwh is always present (the spec requires it)
        )

    def encode_quantity(self, q: QuantitySpec, value: float) -> tuple[int, ...]:
        """A value in the field's unit → the quantity's registers (rounding integer types)."""
        raw: int | float = value / q.factor if q.factor != 1.0 else value
        if not q.data_type.is_float:
            raw = round(raw)
        return encode_value(raw, q.data_type, q.byte_order)

    def _encode_slot(self, slot: _Slot, value: float) -> tuple[int, ...]:
        raw: int | float = value / slot.factor if slot.factor != 1.0 else value
        if not slot.quantity.data_type.is_float:
            raw = round(raw)
        return slot.encode(raw)

    def encode(self, measurement: Measurement) -> tuple[list[int], ...]:
        """A Measurement → the register blocks of the read plan (holes read as 0), the inverse of
        :meth:`decode` up to the registers' precision. A value the measurement lacks is encoded
        as 0. Raises ValueError when a value does not fit its register type."""
        blocks = tuple([0] * r.count for r in self.requests)
        for slot in self._slots:
            value = measurement.value(
                slot.quantity.name if slot.quantity.field is None else slot.quantity.field
            )
            registers = self._encode_slot(slot, 0.0 if value is None else value)
            blocks[slot.block][slot.offset : slot.end] = registers
        return blocks

    def quantize(self, measurement: Measurement) -> Measurement:
        """What a poll of a meter holding ``measurement`` decodes to (register precision)."""
        return self.decode(self.encode(measurement))


def compile_model(spec: ModelSpec) -> CompiledModel:
    """Plan the reads and place every quantity in them, once."""
    requests = plan_reads(
        ((q.function, q.address, q.count) for q in spec.quantities),
        max_registers=spec.max_registers,
        max_gap=spec.max_gap,
    )
    slots = []
    for q in spec.quantities:
        index = next(i for i, r in enumerate(requests) if r.covers(q.function, q.address, q.count))
        offset = q.address - requests[index].address
        decode, encode = codec(q.data_type, q.byte_order)
        slots.append(_Slot(q, index, offset, offset + q.count, q.factor, decode, encode))
    return CompiledModel(spec, requests, tuple(slots))
