"""Register maps, read planning and register codecs (protocols.modbus): pure, no I/O."""

from __future__ import annotations

import copy
import itertools
import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.errors import DecodeError
from protocols.modbus import (
    MODEL_NAMES,
    ByteOrder,
    DataType,
    Measurement,
    ModelCatalog,
    ModelConfigError,
    ReadRequest,
    decode_value,
    encode_value,
    get_model,
    plan_reads,
)
from protocols.modbus.models import MODEL_NAMES as MODELS_MODULE_NAMES

ALL_PAIRS = list(itertools.product(DataType, ByteOrder))


def values_of(data_type: DataType) -> st.SearchStrategy[int | float]:
    if data_type is DataType.FLOAT32:
        return st.floats(width=32, allow_nan=False, allow_infinity=False)
    if data_type is DataType.FLOAT64:
        return st.floats(allow_nan=False, allow_infinity=False)
    low, high = data_type.bounds
    return st.integers(low, high)


@pytest.mark.parametrize(("data_type", "order"), ALL_PAIRS, ids=lambda x: str(x))
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_round_trip_every_type_and_byte_order(
    data: st.DataObject, data_type: DataType, order: ByteOrder
) -> None:
    value = data.draw(values_of(data_type))
    registers = encode_value(value, data_type, order)
    assert len(registers) == data_type.registers
    assert all(0 <= r <= 0xFFFF for r in registers)
    decoded = decode_value(registers, data_type, order)
    assert decoded == value
    assert math.copysign(1.0, decoded) == math.copysign(1.0, value)  # -0.0 stays -0.0
    # And registers → value → registers for any register contents that are not NaN.
    raw = data.draw(
        st.lists(st.integers(0, 0xFFFF), min_size=len(registers), max_size=len(registers))
    )
    back = decode_value(raw, data_type, order)
    if not (isinstance(back, float) and math.isnan(back)):
        assert list(encode_value(back, data_type, order)) == raw


@pytest.mark.parametrize(
    ("order", "registers"),
    [
        (ByteOrder.ABCD, (0x4120, 0x0000)),
        (ByteOrder.CDAB, (0x0000, 0x4120)),
        (ByteOrder.BADC, (0x2041, 0x0000)),
        (ByteOrder.DCBA, (0x0000, 0x2041)),
    ],
)
def test_byte_orders_are_named_like_telegraf(order: ByteOrder, registers: tuple[int, int]) -> None:
    # 10.0 as float32 is 0x41200000: bytes A=0x41 B=0x20 C=0x00 D=0x00.
    assert encode_value(10.0, DataType.FLOAT32, order) == registers
    assert decode_value(registers, DataType.FLOAT32, order) == 10.0


def test_64_bit_and_16_bit_orders() -> None:
    value = 0x0102030405060708
    assert encode_value(value, DataType.UINT64, ByteOrder.ABCD) == (0x0102, 0x0304, 0x0506, 0x0708)
    assert encode_value(value, DataType.UINT64, ByteOrder.CDAB) == (0x0708, 0x0506, 0x0304, 0x0102)
    assert encode_value(value, DataType.UINT64, ByteOrder.BADC) == (0x0201, 0x0403, 0x0605, 0x0807)
    assert encode_value(value, DataType.UINT64, ByteOrder.DCBA) == (0x0807, 0x0605, 0x0403, 0x0201)
    assert decode_value([0xFF85], DataType.INT16, ByteOrder.ABCD) == -123
    assert decode_value([0x85FF], DataType.INT16, ByteOrder.DCBA) == -123


def test_codec_rejects_what_does_not_fit() -> None:
    for order in ByteOrder:  # byte-swapping orders too: the range is checked before any swap
        with pytest.raises(ValueError, match="0–65535"):
            decode_value([0x10000, 0], DataType.FLOAT32, order)
        with pytest.raises(ValueError, match="0–65535"):
            decode_value([-1], DataType.INT16, order)
    with pytest.raises(ValueError, match="needs 2 register"):
        decode_value([1], DataType.FLOAT32, ByteOrder.ABCD)
    with pytest.raises(ValueError, match="does not fit uint16"):
        encode_value(70000, DataType.UINT16, ByteOrder.ABCD)
    with pytest.raises(ValueError, match="whole number"):
        encode_value(1.5, DataType.INT32, ByteOrder.ABCD)


# -- the built-in models and their plans -------------------------------------------------------


def test_model_names_include_the_builtin_and_generic_models() -> None:
    assert MODEL_NAMES == MODELS_MODULE_NAMES
    assert {"sdm120", "sdm630", "ddsu666", "generic"} <= MODEL_NAMES


def test_eastron_maps_follow_the_contract_addresses() -> None:
    for name in ("sdm120", "sdm630"):
        by_field = {q.field: q for q in get_model(name).quantities if q.field}
        assert by_field["voltage_v"].address == 0x0000
        assert by_field["current_a"].address == 0x0006
        assert by_field["frequency_hz"].address == 0x0046
        assert by_field["energy_import_kwh"].address == 0x0048
        assert by_field["energy_export_kwh"].address == 0x004A
        assert {q.function for q in get_model(name).quantities} == {4}
        assert {q.data_type for q in get_model(name).quantities} == {DataType.FLOAT32}
    sdm120 = {q.field: q.address for q in get_model("sdm120").quantities}
    assert sdm120["power_w"] == 0x000C
    # SDM630: phase 1's power is power_w (contract §5); the system total is an extra.
    sdm630 = {q.name: q.address for q in get_model("sdm630").quantities}
    assert sdm630["power_w"] == 0x000C and sdm630["power_total_w"] == 0x0034


def test_eastron_plans_respect_the_60_register_limit() -> None:
    assert get_model("sdm630").requests == (
        ReadRequest(4, 0x0000, 0x36),
        ReadRequest(4, 0x0046, 6),
    )
    assert get_model("sdm120").requests == (
        ReadRequest(4, 0x0000, 0x0E),
        ReadRequest(4, 0x0046, 6),
    )
    for name in ("sdm120", "sdm630"):
        model = get_model(name)
        assert all(r.count <= 60 for r in model.requests)
        # far fewer requests than values: not one request per value
        assert len(model.requests) < len(model.quantities)


def test_plan_obeys_maximum_and_gap() -> None:
    spans = [(4, 0, 2), (4, 2, 2), (4, 10, 2), (4, 100, 2), (3, 0, 1)]
    assert plan_reads(spans, max_registers=125, max_gap=8) == (
        ReadRequest(3, 0, 1),
        ReadRequest(4, 0, 12),
        ReadRequest(4, 100, 2),
    )
    assert plan_reads(spans, max_registers=125, max_gap=200) == (
        ReadRequest(3, 0, 1),
        ReadRequest(4, 0, 102),
    )
    assert plan_reads(spans, max_registers=4, max_gap=200) == (
        ReadRequest(3, 0, 1),
        ReadRequest(4, 0, 4),
        ReadRequest(4, 10, 2),
        ReadRequest(4, 100, 2),
    )
    with pytest.raises(ValueError, match="1–125"):
        plan_reads(spans, max_registers=126, max_gap=0)


def _valid_block(group: list[tuple[int, int, int]], max_registers: int, max_gap: int) -> bool:
    if len({fc for fc, _, _ in group}) != 1:
        return False
    start = min(a for _, a, _ in group)
    end = max(a + c for _, a, c in group)
    if end - start > max_registers:
        return False
    covered = start
    for _, a, c in sorted(group, key=lambda s: (s[1], s[2])):
        if a - covered > max_gap:
            return False
        covered = max(covered, a + c)
    return True


def _fewest_blocks(spans: list[tuple[int, int, int]], max_registers: int, max_gap: int) -> int:
    """Brute force over every partition of the spans into valid requests."""
    best = len(spans)

    def walk(rest: list[tuple[int, int, int]], groups: list[list[tuple[int, int, int]]]) -> None:
        nonlocal best
        if len(groups) >= best:
            return
        if not rest:
            if all(_valid_block(g, max_registers, max_gap) for g in groups):
                best = len(groups)
            return
        head, tail = rest[0], rest[1:]
        for g in groups:
            g.append(head)
            walk(tail, groups)
            g.pop()
        walk(tail, [*groups, [head]])

    walk(spans, [])
    return best


@settings(max_examples=150, deadline=None)
@given(
    spans=st.lists(
        st.tuples(st.sampled_from([3, 4]), st.integers(0, 60), st.sampled_from([1, 2, 4])),
        min_size=1,
        max_size=6,
        unique=True,
    ),
    max_registers=st.integers(4, 40),
    max_gap=st.integers(0, 20),
)
def test_plan_covers_everything_with_the_fewest_requests(
    spans: list[tuple[int, int, int]], max_registers: int, max_gap: int
) -> None:
    plan = plan_reads(spans, max_registers=max_registers, max_gap=max_gap)
    for fc, address, count in spans:
        assert any(r.covers(fc, address, count) for r in plan)
    assert all(r.count <= max_registers for r in plan)
    assert len(plan) == _fewest_blocks(spans, max_registers, max_gap)


# -- decoding ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["sdm120", "sdm630", "ddsu666"])
@settings(max_examples=40, deadline=None)
@given(
    energy=st.floats(0, 1e7, width=32),
    power=st.floats(-1e5, 1e5, width=32),
    volts=st.floats(0, 500, width=32),
)
def test_model_round_trip_and_decoder_leaves_its_input_alone(
    name: str, energy: float, power: float, volts: float
) -> None:
    model = get_model(name)
    measurement = Measurement(energy, 0.0, power, volts, 1.5, 50.0)
    blocks = model.encode(measurement)
    frozen = copy.deepcopy(blocks)
    decoded = model.decode(blocks)
    assert blocks == frozen  # the decoder did not touch its input
    assert model.decode(tuple(tuple(b) for b in blocks)) == decoded  # any sequence type
    assert decoded.energy_import_kwh == energy
    if name != "ddsu666":  # DDSU666 holds kW in float32, so W come back at float32 precision
        assert decoded.power_w == power and decoded.voltage_v == volts
    else:
        assert decoded.power_w == pytest.approx(power, rel=1e-6, abs=1e-3)
    assert model.quantize(decoded) == decoded  # quantizing is idempotent


def test_decode_errors_name_the_problem() -> None:
    model = get_model("sdm120")
    good = model.encode(Measurement(100.0, 0.0, 10.0, 230.0, 1.0, 50.0))
    with pytest.raises(DecodeError, match="expected 2 response block"):
        model.decode(good[:1])
    with pytest.raises(DecodeError, match=r"response 2 \(address 0x0046\) has 5 register"):
        model.decode([good[0], good[1][:5]])
    bad = [list(good[0]), list(good[1])]
    bad[0][0] = 0x1_0000
    with pytest.raises(DecodeError, match="voltage_v at 0x0000"):
        model.decode(bad)
    negative = model.encode(Measurement(-5.0, 0.0, 10.0, 230.0, 1.0, 50.0))
    with pytest.raises(DecodeError, match="energy_import_kwh at 0x0048 is negative"):
        model.decode(negative)
    nan = [list(good[0]), list(good[1])]
    nan[1][2:4] = list(struct.unpack(">HH", struct.pack(">f", math.nan)))
    with pytest.raises(DecodeError, match="is nan"):
        model.decode(nan)


def test_measurement_makes_a_reading() -> None:
    from datetime import UTC, datetime

    ts = datetime(2026, 11, 26, 3, 15, tzinfo=UTC)
    reading = Measurement(12.5, None, 100.0).at("S-1", ts)
    assert (reading.serial, reading.ts, reading.energy_import_kwh, reading.power_w) == (
        "S-1",
        ts,
        12.5,
        100.0,
    )
    assert reading.voltage_v is None


# -- configured (generic) models ---------------------------------------------------------------

GENERIC_TOML = """
[generic]
description = "A meter we met in the field"
function = 3
max_registers = 50
max_gap = 4

[generic.quantities]
energy_import_kwh = { address = 0x0100, data_type = "uint32", byte_order = "CDAB", unit = "Wh" }
power_w = { address = 0x0010, data_type = "int16", unit = "kW", scale = 0.001 }
line_temperature = { address = 0x0011, data_type = "int16", scale = 0.1, unit = "°C" }
"""


def test_generic_model_from_toml() -> None:
    catalog = ModelCatalog.from_toml(GENERIC_TOML)
    model = catalog.get("generic")
    assert catalog.get("sdm120") is get_model("sdm120")
    assert model.requests == (ReadRequest(3, 0x0010, 2), ReadRequest(3, 0x0100, 2))
    measurement = Measurement(1234.567, power_w=-850.0, extra={"line_temperature": 41.5})
    decoded = model.decode(model.encode(measurement))
    assert decoded.energy_import_kwh == pytest.approx(1234.567)
    assert decoded.power_w == pytest.approx(-850.0)
    assert dict(decoded.extra) == pytest.approx({"line_temperature": 41.5})


def test_generic_without_configuration_says_how_to_configure_it() -> None:
    with pytest.raises(ModelConfigError, match="DOXA_MODBUS_MODELS"):
        ModelCatalog().get("generic")
    with pytest.raises(ModelConfigError, match="unknown meter model"):
        ModelCatalog().get("sdm999")


def test_bad_configuration_lists_every_problem_with_its_key() -> None:
    with pytest.raises(ModelConfigError) as info:
        ModelCatalog.from_config(
            {
                "generic": {
                    "max_registers": 200,
                    "colour": "blue",
                    "quantities": {
                        "power_w": {"address": -1, "data_type": "float16", "bogus": 1},
                        "energy_import_kwh": {"address": 5, "unit": "W", "count": 4},
                        "voltage_v": {"address": 0xFFFF},
                        "current_a": {"address": 9, "scale": 0},
                        "frequency_hz": {"address": 11, "function": 5, "field": "power_w"},
                    },
                }
            }
        )
    problems = "\n".join(info.value.problems)
    for text in (
        "generic.max_registers: 200 is outside 1–125",
        "generic: unknown key(s) colour",
        "generic.quantities.power_w: unknown key(s) bogus",
        "generic.quantities.power_w.data_type: 'float16' is not one of",
        "generic.quantities.power_w.address: -1 is outside 0–65535",
        "generic.quantities.energy_import_kwh.count: 4 does not match float32 (2)",
        "generic.quantities.energy_import_kwh.unit: 'W' is not a unit of energy_import_kwh",
        "generic.quantities.voltage_v.address: 0xffff + 2 runs past 0xFFFF",
        "generic.quantities.current_a.scale: 0 must be a finite, non-zero number",
        "generic.quantities.frequency_hz.function: 5 is not 3 (holding) or 4 (input)",
    ):
        assert text in problems
    with pytest.raises(ModelConfigError, match="must fill energy_import_kwh"):
        ModelCatalog.from_config({"generic": {"quantities": {"power_w": {"address": 0}}}})
    with pytest.raises(ModelConfigError, match="fills power_w, as power_w does"):
        ModelCatalog.from_config(
            {
                "generic": {
                    "quantities": {
                        "energy_import_kwh": {"address": 0},
                        "power_w": {"address": 2},
                        "p2": {"address": 4, "field": "power_w"},
                    }
                }
            }
        )
    with pytest.raises(ModelConfigError, match="not valid TOML"):
        ModelCatalog.from_toml("[generic\n")


def test_the_readme_example_model_compiles() -> None:
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Adding a meter model, as data", 1)[1]
    toml = section.split("```toml", 1)[1].split("```", 1)[0]
    model = ModelCatalog.from_toml(toml).get("generic")
    assert model.requests == (
        ReadRequest(3, 0x0012, 1),
        ReadRequest(4, 0x0010, 2),
        ReadRequest(4, 0x0100, 4),
    )
    measurement = Measurement(1234.5, 0.25, -850.0, 230.1)
    decoded = model.decode(model.encode(measurement))
    assert (decoded.energy_import_kwh, decoded.energy_export_kwh, decoded.power_w) == (
        1234.5,
        0.25,
        -850.0,
    )
    assert decoded.voltage_v == pytest.approx(230.1)
