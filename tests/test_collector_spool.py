"""The collector's spool: durable, bounded, replayed in order, survives a torn write."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from collector.spool import Spool, SpoolFull, SpoolLocked
from collector.units import Unit
from protocols.reading import Reading

T0 = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)


def batch(n: int, first: int = 0) -> list[Unit]:
    """``n`` units: even ones MQTT messages with payloads, odd ones Modbus polls."""
    units = []
    for i in range(first, first + n):
        reading = Reading(
            f"M{i:04d}", T0 + timedelta(seconds=i, microseconds=7), 1000.0 + i / 3, None, 1.5
        )
        if i % 2:
            units.append(Unit("modbus", (reading,), serial=reading.serial, received_at=T0))
        else:
            units.append(
                Unit("mqtt", (reading,), f"doxa/meters/{reading.serial}/reading",
                     reading.serial, b'{"x": "\x00\xff"}', None, T0)
            )  # fmt: skip
    return units


def open_spool(path: Path, max_bytes: int = 10**8, segment_bytes: int = 4096) -> Spool:
    spool = Spool(path, max_bytes, segment_bytes=segment_bytes)
    spool.open()
    return spool


def test_batches_are_replayed_in_order_exactly_as_appended(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    batches = [batch(7, first=i * 7) for i in range(30)]  # several segments of 4 KiB
    for b in batches:
        spool.append(b)
    assert spool.depth == 210
    assert len(list(tmp_path.glob("*.spool"))) > 3

    replayed: list[list[Unit]] = []
    assert spool.replay(replayed.append) == 210
    assert replayed == batches  # every field equal, timestamps to the microsecond, bytes intact
    assert spool.depth == 0 and not spool
    assert list(tmp_path.glob("*.spool")) == []


def test_a_failed_write_stops_the_replay_and_it_resumes_at_that_batch(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    for i in range(10):
        spool.append(batch(3, first=i * 3))
    seen: list[int] = []

    def flaky(units: list[Unit]) -> None:
        if len(seen) == 4:
            raise ConnectionError("database went away")
        seen.append(units[0].readings[0].ts.second)

    with pytest.raises(ConnectionError):
        spool.replay(flaky)
    assert spool.depth == 18  # four batches of three done
    seen.append(-1)  # the next call succeeds
    rest: list[list[Unit]] = []
    spool.replay(rest.append)
    assert [b[0].readings[0].serial for b in rest] == [f"M{i * 3:04d}" for i in range(4, 10)]


def test_the_bound_is_enforced_and_nothing_partial_is_written(tmp_path: Path) -> None:
    spool = open_spool(tmp_path, max_bytes=3000)
    spool.append(batch(5))
    size = spool.size_bytes
    with pytest.raises(SpoolFull, match="is full"):
        for _ in range(100):
            spool.append(batch(5))
    assert spool.size_bytes <= 3000
    full_size = spool.size_bytes
    assert full_size >= size
    reopened_depth = spool.depth
    spool.close()
    again = open_spool(tmp_path, max_bytes=3000)
    assert again.depth == reopened_depth  # what was accepted is all there after a restart


def test_a_torn_tail_from_a_crash_is_cut_and_whole_records_survive(tmp_path: Path) -> None:
    spool = open_spool(tmp_path, segment_bytes=10**6)
    spool.append(batch(4))
    spool.append(batch(4, first=4))
    spool.close()
    (segment,) = tmp_path.glob("*.spool")
    whole = segment.stat().st_size
    with segment.open("ab") as fh:  # a crash in the middle of the third append
        fh.write(b"DXS1\x00\x00\x01\x00partial")

    reopened = open_spool(tmp_path, segment_bytes=10**6)
    assert segment.stat().st_size == whole
    assert reopened.depth == 8
    reopened.append(batch(2, first=8))  # appends continue after the cut
    out: list[list[Unit]] = []
    reopened.replay(out.append)
    assert [len(b) for b in out] == [4, 4, 2]


def test_a_corrupt_record_is_set_aside_loudly_and_later_segments_still_replay(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = open_spool(tmp_path, segment_bytes=1)  # one record per segment
    for i in range(3):
        spool.append(batch(2, first=i * 2))
    first = sorted(tmp_path.glob("*.spool"))[0]
    data = bytearray(first.read_bytes())
    data[-3] ^= 0xFF  # flip bits inside the payload: the checksum no longer matches
    first.write_bytes(bytes(data))

    out: list[list[Unit]] = []
    spool.replay(out.append)
    assert [b[0].readings[0].serial for b in out] == ["M0002", "M0004"]
    assert first.with_suffix(".corrupt").exists()
    assert "corrupt" in caplog.text


def test_a_second_process_cannot_share_a_spool(tmp_path: Path) -> None:
    open_spool(tmp_path)
    with pytest.raises(SpoolLocked, match="in use by another collector"):
        open_spool(tmp_path)
