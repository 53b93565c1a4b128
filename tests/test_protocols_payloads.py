"""MQTT payload codecs (contract §4): exact parsing, readable rejections, fuzzing, round trips."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols.errors import MeterError, PayloadError
from protocols.payloads import FORMATS, encode_native, encode_tasmota, parse_payload
from protocols.reading import Reading

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
NOW = datetime(2026, 11, 26, 3, 20, tzinfo=UTC)  # 10:20 in Ho Chi Minh City
AT_1015 = datetime(2026, 11, 26, 3, 15, tzinfo=UTC)


def parse(fmt: str, payload: bytes | str, serial: str = "M-1") -> list[Reading]:
    data = payload.encode() if isinstance(payload, str) else payload
    return parse_payload(fmt, serial, data, tz=TZ, now=NOW)


def reason(fmt: str, payload: bytes | str) -> str:
    with pytest.raises(PayloadError) as info:
        parse(fmt, payload)
    assert isinstance(info.value, MeterError)
    return info.value.reason


def test_formats() -> None:
    assert FORMATS == ("native", "tasmota")


def test_contract_native_example() -> None:
    payload = (
        '{"ts": "2026-11-26T10:15:00+07:00", "energy_import_kwh": 1234.56, '
        '"energy_export_kwh": 0.0, "power_w": 850.0, "voltage_v": 229.8, "current_a": 3.9, '
        '"frequency_hz": 50.0}'
    )
    assert parse("native", payload) == [
        Reading("M-1", AT_1015, 1234.56, 0.0, 850.0, 229.8, 3.9, 50.0)
    ]
    (reading,) = parse("native", payload)
    assert reading.ts.tzinfo is UTC


def test_contract_tasmota_example_is_local_time() -> None:
    payload = (
        '{"Time": "2026-11-26T10:15:00", "ENERGY": {"Total": 1234.56, "Power": 850, '
        '"Voltage": 230, "Current": 3.9}}'
    )
    assert parse("tasmota", payload) == [
        Reading("M-1", AT_1015, 1234.56, None, 850.0, 230.0, 3.9, None)
    ]
    # Another zone moves the instant; a Time with an offset is honoured as it is.
    other = parse_payload(
        "tasmota", "M-1", payload.encode(), tz=ZoneInfo("UTC"), now=NOW + timedelta(hours=8)
    )
    assert other[0].ts == datetime(2026, 11, 26, 10, 15, tzinfo=UTC)
    with_offset = payload.replace("10:15:00", "10:15:00+07:00")
    assert parse("tasmota", with_offset)[0].ts == AT_1015


def test_native_minimal_epoch_and_extra_keys() -> None:
    epoch = int(AT_1015.timestamp())
    assert parse("native", f'{{"ts": {epoch}, "energy_import_kwh": 7, "fw": "1.2"}}') == [
        Reading("M-1", AT_1015, 7.0)
    ]
    assert parse("native", f'{{"ts": {epoch}.5, "energy_import_kwh": 7, "power_w": null}}')[
        0
    ].ts == (AT_1015 + timedelta(milliseconds=500))
    assert (
        parse("native", '{"ts": "2026-11-26T03:15:00Z", "energy_import_kwh": 1}')[0].ts == AT_1015
    )


def test_native_array_is_a_backlog_in_order() -> None:
    items = [
        {"ts": (AT_1015 - timedelta(minutes=15 * k)).isoformat(), "energy_import_kwh": 100 - k}
        for k in range(3)
    ]
    readings = parse("native", json.dumps(items))
    assert [r.energy_import_kwh for r in readings] == [100, 99, 98]
    assert readings[2].ts == AT_1015 - timedelta(minutes=30)


def test_one_bad_element_rejects_the_whole_array() -> None:
    items = [
        {"ts": AT_1015.isoformat(), "energy_import_kwh": 5},
        {"ts": AT_1015.isoformat(), "energy_import_kwh": 6},
        {"ts": AT_1015.isoformat()},
    ]
    assert reason("native", json.dumps(items)) == "element 3 of 3: energy_import_kwh is missing"


def test_old_readings_are_accepted_future_ones_rejected() -> None:
    old = '{"ts": "2019-01-01T00:00:00+07:00", "energy_import_kwh": 1}'
    assert parse("native", old)[0].ts == datetime(2018, 12, 31, 17, tzinfo=UTC)
    soon = (NOW + timedelta(minutes=9)).isoformat()
    assert parse("native", f'{{"ts": "{soon}", "energy_import_kwh": 1}}')
    late = (NOW + timedelta(minutes=11)).isoformat()
    assert "11 minutes in the future (at most 10 minutes allowed)" in reason(
        "native", f'{{"ts": "{late}", "energy_import_kwh": 1}}'
    )
    assert "in the future" in reason(
        "tasmota", '{"Time": "2026-11-27T10:15:00", "ENERGY": {"Total": 1}}'
    )
    # The bound is a parameter.
    assert parse_payload(
        "native", "M", f'{{"ts": "{late}", "energy_import_kwh": 1}}'.encode(), tz=TZ, now=NOW,
        max_future=timedelta(hours=1),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("fmt", "payload", "expected"),
    [
        ("native", b"", "the payload is empty"),
        ("native", b"\xff\xfe", "the payload is not UTF-8 text"),
        ("native", b'{"ts": 1, energy', "the payload is not valid JSON"),
        ("native", b"[]", "the payload is an empty array"),
        ("native", b"42", "expected a JSON object, got 42"),
        ("native", b"[[1]]", "element 1 of 1: expected a JSON object, got an array"),
        ("native", b'{"energy_import_kwh": 1}', "ts is missing"),
        ("native", b'{"ts": 1764126900}', "energy_import_kwh is missing"),
        ("native", b'{"ts": "2026-11-26T10:15:00", "energy_import_kwh": 1}', "has no UTC offset"),
        ("native", b'{"ts": "yesterday", "energy_import_kwh": 1}', "is not an ISO 8601 time"),
        ("native", b'{"ts": true, "energy_import_kwh": 1}', "ts must be a number, not true"),
        ("native", b'{"ts": 1e300, "energy_import_kwh": 1}', "out of range for epoch seconds"),
        ("native", b'{"ts": "0001-01-01T00:00:00+07:00", "energy_import_kwh": 1}', "out of range"),
        (
            "native",
            b'{"ts": 1764126900, "energy_import_kwh": -0.5}',
            "energy_import_kwh must not be negative",
        ),
        (
            "native",
            b'{"ts": 1764126900, "energy_import_kwh": "12"}',
            'energy_import_kwh must be a number, not "12"',
        ),
        (
            "native",
            b'{"ts": 1764126900, "energy_import_kwh": NaN}',
            "NaN, which is not a number JSON allows",
        ),
        ("native", b'{"ts": 1764126900, "energy_import_kwh": 1e999}', "must be a finite number"),
        (
            "native",
            b'{"ts": 1764126900, "energy_import_kwh": 1, "voltage_v": -230}',
            "voltage_v must not be negative",
        ),
        (
            "native",
            b'{"ts": 1764126900, "energy_import_kwh": 1, "power_w": false}',
            "power_w must be a number",
        ),
        ("native", b"[" * 100_000, "nested too deeply"),
        (
            "native",
            b'{"ts": 1764126900, "energy_import_kwh": ' + b"9" * 5000 + b"}",
            "not valid JSON",
        ),
        ("tasmota", b'{"ENERGY": {"Total": 1}}', "Time is missing"),
        ("tasmota", b'{"Time": 5, "ENERGY": {"Total": 1}}', "Time must be text"),
        (
            "tasmota",
            b'{"Time": "2026-11-26T10:15:00"}',
            "ENERGY is missing (not an energy-monitor message)",
        ),
        ("tasmota", b'{"Time": "2026-11-26T10:15:00", "ENERGY": 5}', "ENERGY must be an object"),
        (
            "tasmota",
            b'{"Time": "2026-11-26T10:15:00", "ENERGY": {"Power": 5}}',
            "ENERGY.Total is missing",
        ),
        (
            "tasmota",
            b'{"Time": "2026-11-26T10:15:00", "ENERGY": {"Total": -1}}',
            "ENERGY.Total must not be negative",
        ),
        (
            "tasmota",
            b'{"Time": "2026-11-26T10:15:00", "ENERGY": {"Total": 1, "Power": [1, "x"]}}',
            "ENERGY.Power[1] must be a number",
        ),
        ("tasmota", b"[]", "expected a JSON object with Time and ENERGY"),
    ],
)
def test_rejections_give_a_reason_a_person_can_read(
    fmt: str, payload: bytes, expected: str
) -> None:
    text = reason(fmt, payload)
    assert expected in text
    assert "\n" not in text and len(text) < 200


def test_tasmota_three_phase_sums_power() -> None:
    payload = (
        '{"Time": "2026-11-26T10:15:00", "ENERGY": {"TotalStartTime": "2025-01-01T00:00:00", '
        '"Total": 5432.1, "Yesterday": 12.3, "Today": 4.5, "Power": [100, 200, 300.5], '
        '"Voltage": [230, 231, 229], "Current": [0.5, 0.9, 1.4], "Frequency": 50.02, '
        '"ExportActive": 3.25}}'
    )
    assert parse("tasmota", payload) == [
        Reading("M-1", AT_1015, 5432.1, 3.25, 600.5, None, None, 50.02)
    ]


def test_unknown_format_and_naive_now_are_programming_errors() -> None:
    with pytest.raises(ValueError, match="unknown payload format"):
        parse_payload("xml", "M", b"{}", tz=TZ, now=NOW)
    with pytest.raises(ValueError, match="timezone-aware"):
        parse_payload("native", "M", b"{}", tz=TZ, now=datetime(2026, 1, 1))
    with pytest.raises(PayloadError, match="no meter serial"):
        parse_payload("native", "", b"{}", tz=TZ, now=NOW)


# -- fuzzing: anything gives readings or one PayloadError, never another exception -------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=20,
)
ts_values = st.one_of(
    st.integers(-(10**12), 10**12),
    st.floats(),
    st.datetimes(timezones=st.timezones() | st.none()).map(lambda d: d.isoformat()),
    st.text(max_size=30),
)
readingish = st.fixed_dictionaries(
    {"ts": ts_values, "energy_import_kwh": json_values | st.floats()},
    optional={
        k: json_values | st.floats()
        for k in ("energy_export_kwh", "power_w", "voltage_v", "current_a", "frequency_hz")
    },
)
tasmotaish = st.fixed_dictionaries(
    {
        "Time": ts_values,
        "ENERGY": st.dictionaries(
            st.sampled_from(["Total", "Power", "Voltage", "Current", "Frequency", "ExportActive"]),
            json_values | st.floats(),
        ),
    }
)


def _survives(fmt: str, payload: bytes) -> None:
    try:
        readings = parse_payload(fmt, "M-1", payload, tz=TZ, now=NOW)
    except PayloadError as exc:
        assert exc.reason and isinstance(exc.reason, str)
        return
    assert readings and all(isinstance(r, Reading) and r.ts.tzinfo is not None for r in readings)
    assert all(r.ts <= NOW + timedelta(minutes=10) for r in readings)


@pytest.mark.parametrize("fmt", FORMATS)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=st.binary(max_size=200))
def test_fuzz_arbitrary_bytes(fmt: str, payload: bytes) -> None:
    _survives(fmt, payload)


@pytest.mark.parametrize("fmt", FORMATS)
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=json_values | readingish | tasmotaish | st.lists(readingish, max_size=3))
def test_fuzz_arbitrary_json(fmt: str, value: object) -> None:
    _survives(fmt, json.dumps(value).encode())


# -- round trips -------------------------------------------------------------------------------

finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12)
non_negative = st.floats(allow_nan=False, allow_infinity=False, min_value=0, max_value=1e12)
instants = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2026, 11, 26), timezones=st.just(UTC)
)
readings = st.builds(
    Reading,
    serial=st.just("M-1"),
    ts=instants,
    energy_import_kwh=non_negative,
    energy_export_kwh=st.none() | non_negative,
    power_w=st.none() | finite,
    voltage_v=st.none() | non_negative,
    current_a=st.none() | finite,
    frequency_hz=st.none() | non_negative,
)


@settings(max_examples=150, deadline=None)
@given(
    batch=st.lists(readings, min_size=1, max_size=5),
    zone=st.sampled_from([TZ, None, ZoneInfo("Europe/Paris")]),
)
def test_native_round_trip(batch: list[Reading], zone: ZoneInfo | None) -> None:
    assert parse("native", encode_native(batch, zone)) == batch
    assert parse("native", encode_native(batch[0], zone)) == batch[:1]
    assert json.loads(encode_native(batch[0], zone))["ts"].endswith(
        ("+07:00", "+00:00", "+01:00", "+02:00")
    )


@settings(max_examples=150, deadline=None)
@given(reading=readings)
def test_tasmota_round_trip(reading: Reading) -> None:
    expected = Reading(reading.serial, reading.ts, reading.energy_import_kwh, reading.energy_export_kwh,
                       reading.power_w, reading.voltage_v, reading.current_a, reading.frequency_hz)  # fmt: skip
    payload = encode_tasmota(reading, TZ)
    assert "+" not in json.loads(payload)["Time"]  # local time without offset, as Tasmota sends
    assert parse("tasmota", payload) == [expected]
