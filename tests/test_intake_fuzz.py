"""Fuzzing the intake (issue 20): random JSON shapes, depths, numbers and topics. Every message is
either readings (finite, within the bounds) or one rejection with a reason, on its own; and
through the real broker and collector, hostile messages in a batch never drop the others."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_collector_intake import NOW, collector_config, native, publish, started, topic
from test_collector_support import (
    InProcessCollector,
    LoopThread,
    count,
    import_mqtt_meters,
    stored,
    wait_for,
)

from collector.config import DEFAULT_SUBSCRIPTIONS
from collector.topics import TopicRouter
from protocols.errors import PayloadError
from protocols.payloads import parse_payload
from protocols.reading import MEASURED_FIELDS

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
FUZZ_NOW = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)

numbers = st.one_of(
    st.floats(),
    st.integers(),
    st.integers(min_value=10**300, max_value=10**320),
    st.sampled_from(["1e999", "-1e999", "1e-999", "9" * 5000, "-0", "1.7e308", "NaN", "Infinity"]),
)
scalars = st.one_of(st.none(), st.booleans(), st.text(max_size=20), numbers)


def _render(value: Any) -> str:
    """JSON text of a generated value; strings from ``numbers`` go in raw (invalid numbers too)."""
    if isinstance(value, str) and value.startswith(("1e", "-1e", "9", "-0", "1.7", "NaN", "Inf")):
        return value
    if isinstance(value, list):
        return "[" + ",".join(_render(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{_render(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)


shapes = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "ts",
                    "energy_import_kwh",
                    "power_w",
                    "voltage_v",
                    "Time",
                    "ENERGY",
                    "Total",
                    "Power",
                    "Voltage",
                    "x",
                ]
            ),
            inner,
            max_size=5,
        )
    ),
    max_leaves=25,
)


@st.composite
def payloads(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["shape", "deep", "reading", "tasmota", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "deep":
        # (Around 900-1000 levels Python's parser still succeeds and every later walk of the
        # value overflows the stack: the case that dropped whole batches.)
        depth = draw(st.sampled_from([31, 32, 33, 500, 900, 950, 988, 999]) | st.integers(0, 5000))
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}"), ('[{"b":', "}]")]))
        inner = draw(st.sampled_from(["1", '"x"', "[]", ""]))
        close = draw(st.booleans())
        body = opener * depth + inner + (closer * depth if close else "")
        key = draw(st.sampled_from(["energy_import_kwh", "ts", "x"]))
        return f'{{"ts": 1764662400, "{key}": {body}}}'.encode()
    if kind == "reading":
        ts = draw(
            st.one_of(
                st.integers(-(10**12), 10**12).map(str),
                st.datetimes(timezones=st.just(UTC)).map(lambda d: json.dumps(d.isoformat())),
            )
        )
        fields = {
            name: draw(st.one_of(numbers, shapes))
            for name in draw(st.lists(st.sampled_from(MEASURED_FIELDS), unique=True, min_size=1))
        }
        return (
            "{" + f'"ts":{ts},' + ",".join(f'"{k}":{_render(v)}' for k, v in fields.items()) + "}"
        ).encode()
    if kind == "tasmota":
        power = draw(st.lists(numbers, max_size=4) | numbers)
        total = draw(numbers)
        energy = f'{{"Total":{_render(total)},"Power":{_render(power)}}}'
        return f'{{"Time":"2026-12-02T14:59:00","ENERGY":{energy}}}'.encode()
    return _render(draw(shapes)).encode()


def _reading_or_reason(fmt: str, payload: bytes) -> None:
    try:
        readings = parse_payload(fmt, "M-1", payload, tz=TZ, now=FUZZ_NOW)
    except PayloadError as exc:
        assert exc.reason and "\n" not in exc.reason and len(exc.reason) <= 300
        return
    assert readings
    for r in readings:
        assert r.ts <= FUZZ_NOW + timedelta(minutes=10)
        for name in MEASURED_FIELDS:
            value = getattr(r, name)
            assert value is None or math.isfinite(value)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payloads(), st.sampled_from(["native", "tasmota"]))
def test_every_payload_is_readings_or_one_rejection_with_a_reason(payload: bytes, fmt: str) -> None:
    _reading_or_reason(fmt, payload)


def _at_stack_depth(frames: int, fn: Any) -> Any:
    return _at_stack_depth(frames - 1, fn) if frames else fn()


def test_every_depth_near_the_recursion_limit_is_one_rejection() -> None:
    """The window that dropped batches: Python's parser still succeeds a few levels below the
    recursion limit and the reason's rendering of the value then overflows. Where the window
    lies depends on how deep the caller's stack is, so every depth is tried at several."""
    for frames in (0, 40, 120, 250):
        for depth in range(700, 1001):
            payload = b'{"ts": 1764662400, "energy_import_kwh": %s1%s}' % (
                b"[" * depth,
                b"]" * depth,
            )
            _at_stack_depth(frames, lambda p=payload: _reading_or_reason("native", p))


topics = st.one_of(
    st.text(max_size=300),
    st.builds(
        lambda a, serial, b: f"{a}/{serial}/{b}",
        st.sampled_from(["doxa/meters", "tele", "x", ""]),
        st.text(max_size=100) | st.text(alphabet="ab-_.:9", min_size=1, max_size=80),
        st.sampled_from(["reading", "SENSOR", "", "reading/extra"]),
    ),
    st.integers(200, 70_000).map(lambda n: "doxa/meters/" + "s" * n + "/reading"),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(topics, min_size=1, max_size=20))
def test_every_topic_is_routed_or_rejected_with_a_short_reason(found: list[str]) -> None:
    from collector.topics import MAX_TOPIC_LENGTH

    router = TopicRouter(DEFAULT_SUBSCRIPTIONS, cache_size=5, cache_chars=400)
    for text in found:
        route = router.route(text)
        if route.reason is None:
            assert route.serial and route.fmt and len(text) <= MAX_TOPIC_LENGTH
        else:
            assert "\n" not in route.reason
            assert len(route.reason) <= 300
        entries, chars = router.cached
        assert entries <= 5 and chars <= 400 + MAX_TOPIC_LENGTH


def hostile_payloads(seed: int, n: int) -> list[bytes]:
    """A fixed sample of hostile payloads (the shapes above, drawn with a seeded generator)."""
    rnd = random.Random(seed)
    out: list[bytes] = []
    for _ in range(n):
        depth = rnd.choice([5, 40, 500, 988, 3000])
        out.append(
            rnd.choice(
                [
                    b'{"ts": %d, "energy_import_kwh": %s1%s}'
                    % (int(NOW.timestamp()), b"[" * depth, b"]" * depth),
                    b'{"ts": %d, "energy_import_kwh": 1e999}' % int(NOW.timestamp()),
                    b'{"ts": %d, "energy_import_kwh": %s}' % (int(NOW.timestamp()), b"9" * 5000),
                    b'{"ts": "0001-01-01T00:00:00+00:00", "energy_import_kwh": 1}',
                    b'{"ts": %d, "energy_import_kwh": 1.7e308}' % int(NOW.timestamp()),
                    b"\xff\xfe" + bytes(rnd.randrange(256) for _ in range(50)),
                    b"[" * depth,
                    b'{"a": "' + b"[" * depth + b'"}',
                ]
            )
        )
    return out


@pytest.fixture
def loop() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.close()


@pytest.mark.db
@pytest.mark.mqtt
def test_hostile_messages_in_a_batch_never_drop_the_others(
    loop: LoopThread, mqtt_url: str, db_url: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    serials = [f"FZ-{i}" for i in range(5)]
    import_mqtt_meters(db_url, serials)
    hostile = hostile_payloads(20, 40)
    good = [
        (topic(serial), native(NOW - timedelta(minutes=k), 100.0 + k))
        for k in range(4)
        for serial in serials
    ]
    messages: list[tuple[str, bytes]] = []
    for i, payload in enumerate(hostile):
        messages.append((topic(serials[i % 5]), payload))
        if i % 2 == 0 and good:
            messages.append(good.pop())
    messages += good
    good_count = 20
    with InProcessCollector(loop, collector_config(db_url, mqtt_url, tmp_path)) as collector:
        started(collector)
        publish(mqtt_url, messages)
        wait_for(
            lambda: (
                count(db, "SELECT count(*) FROM readings") == good_count
                and count(db, "SELECT count(*) FROM rejected_messages") == len(hostile)
            ),
            timeout=20,
            what="every good reading and one rejection per hostile message",
        )
    assert len(stored(db)) == good_count
    reasons = [r for (r,) in db.execute("SELECT reason FROM rejected_messages")]
    assert all(reason and len(reason) <= 500 for reason in reasons)
    assert collector.stats.snapshot().get("flusher_errors", 0) == 0
