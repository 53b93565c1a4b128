"""Register codecs: one value ⇄ 16-bit registers, for every data type and byte order.

A byte order is named after how the bytes A B C D (most significant first) arrive, the Telegraf
way: ``ABCD`` big-endian, ``DCBA`` little-endian, ``BADC`` bytes swapped within each register,
``CDAB`` registers (words) swapped. The names describe two independent choices that also fix
16- and 64-bit values: does the first register hold the most significant word (``AB…``/``BA…``)
or the least (``CD…``/``DC…``), and is each register's high byte first (``AB``/``CD``) or not.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from enum import StrEnum
from functools import cache


class DataType(StrEnum):
    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    INT64 = "int64"
    UINT64 = "uint64"
    FLOAT32 = "float32"
    FLOAT64 = "float64"

    @property
    def registers(self) -> int:
        """How many 16-bit registers a value takes."""
        return _FORMATS[self][1]

    @property
    def is_float(self) -> bool:
        return self in (DataType.FLOAT32, DataType.FLOAT64)

    @property
    def bounds(self) -> tuple[int, int]:
        """The smallest and largest value of an integer type."""
        bits = 16 * self.registers
        if self.value.startswith("uint"):
            return 0, 2**bits - 1
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


class ByteOrder(StrEnum):
    ABCD = "ABCD"
    CDAB = "CDAB"
    BADC = "BADC"
    DCBA = "DCBA"

    @property
    def words_swapped(self) -> bool:
        """True when the first register holds the least significant word."""
        return self in (ByteOrder.CDAB, ByteOrder.DCBA)

    @property
    def bytes_swapped(self) -> bool:
        """True when each register's low byte comes first."""
        return self in (ByteOrder.BADC, ByteOrder.DCBA)


_FORMATS: dict[DataType, tuple[str, int]] = {
    DataType.INT16: ("h", 1),
    DataType.UINT16: ("H", 1),
    DataType.INT32: ("i", 2),
    DataType.UINT32: ("I", 2),
    DataType.INT64: ("q", 4),
    DataType.UINT64: ("Q", 4),
    DataType.FLOAT32: ("f", 2),
    DataType.FLOAT64: ("d", 4),
}


def _permute(raw: bytes, order: ByteOrder) -> bytes:
    """Big-endian bytes ⇄ the order on the wire (each permutation is its own inverse)."""
    if order is ByteOrder.ABCD:
        return raw
    if order is ByteOrder.DCBA:
        return raw[::-1]
    words = [raw[i : i + 2] for i in range(0, len(raw), 2)]
    if order is ByteOrder.CDAB:
        return b"".join(reversed(words))
    return b"".join(w[::-1] for w in words)  # BADC


Decoder = Callable[[Sequence[int]], int | float]
Encoder = Callable[[int | float], tuple[int, ...]]


@cache
def codec(data_type: DataType, order: ByteOrder) -> tuple[Decoder, Encoder]:
    """The decoder and encoder of one data type in one byte order, built once."""
    fmt, count = _FORMATS[data_type]
    words = struct.Struct(f">{count}H")
    value = struct.Struct(f">{fmt}")
    low, high = (0, 0) if data_type.is_float else data_type.bounds

    def decode(registers: Sequence[int]) -> int | float:
        if len(registers) != count:
            raise ValueError(f"{data_type} needs {count} register(s), got {len(registers)}")
        try:
            raw = words.pack(*registers)  # checks every register is 0–65535
        except struct.error:
            raise ValueError(f"register values must be 0–65535, got {list(registers)}") from None
        result: int | float = value.unpack(_permute(raw, order))[0]
        return result

    def encode(number: int | float) -> tuple[int, ...]:
        if not data_type.is_float:
            if not isinstance(number, int) or isinstance(number, bool):
                raise ValueError(f"{data_type} needs a whole number, got {number!r}")
            if not low <= number <= high:
                raise ValueError(f"{number} does not fit {data_type} ({low}–{high})")
        try:
            raw = value.pack(number)
        except (struct.error, OverflowError) as exc:
            raise ValueError(f"{number!r} does not fit {data_type}: {exc}") from None
        registers: tuple[int, ...] = words.unpack(_permute(raw, order))
        return registers

    return decode, encode


def decode_value(registers: Sequence[int], data_type: DataType, order: ByteOrder) -> int | float:
    """Registers (each 0–65535, exactly ``data_type.registers`` of them) → the raw value.

    Never mutates ``registers``. Floats may come back NaN or infinite: judging that is the
    caller's business. Raises ValueError for a wrong count or a register outside 0–65535.
    """
    return codec(data_type, order)[0](registers)


def encode_value(value: int | float, data_type: DataType, order: ByteOrder) -> tuple[int, ...]:
    """The raw value → registers, the inverse of :func:`decode_value`.

    Integer types need an ``int`` within the type's bounds; float32 rounds to the nearest
    float32. Raises ValueError when the value does not fit.
    """
    return codec(data_type, order)[1](value)
