"""Modbus polling against simulated gateways: values equal what the meters served, failures are
recorded with reasons and never stop the cycle, the inventory is reloaded without a restart."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice
from test_collector_support import (
    HEADER,
    InProcessCollector,
    LoopThread,
    count,
    import_csv,
    inventory_line,
    stored,
    test_config,
    wait_for,
)

from simulators.modbus import ModbusFleet

pytestmark = pytest.mark.db


@pytest.fixture
def loop() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.close()


def readings_per_meter(db: psycopg.Connection) -> dict[str, int]:
    return dict(
        db.execute(
            "SELECT m.serial, count(r.ts) FROM meters m LEFT JOIN readings r ON r.meter_id = m.id"
            " GROUP BY m.serial"
        ).fetchall()
    )


def assert_equal_to_served(fleet: ModbusFleet, db: psycopg.Connection, serial: str) -> int:
    """Every stored reading of ``serial`` is exactly a snapshot the meter served just before."""
    served = fleet.served(serial)
    rows = stored(db, serial)
    for _serial, ts, *values in rows:
        before = [s for s in served if s.ts <= ts]
        assert before, f"{serial}: stored a reading at {ts} before the meter served anything"
        m = before[-1].measurement
        assert m == fleet.truth(serial, before[-1].ts)  # what it served is the truth at that time
        expected = [
            m.energy_import_kwh,
            m.energy_export_kwh,
            m.power_w,
            m.voltage_v,
            m.current_a,
            m.frequency_hz,
        ]
        assert values == expected, f"{serial} at {ts}"
    return len(rows)


def test_a_fleet_over_several_gateways_is_stored_exactly_as_served(
    loop: LoopThread, db_url: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    fleet = ModbusFleet(meters=12, gateways=3, seed=11)
    loop.run(fleet.start())
    try:
        import_csv(db_url, fleet.inventory_csv())
        config = test_config(db_url, tmp_path, metrics_port=0)
        with InProcessCollector(loop, config) as collector:
            wait_for(
                lambda: min(readings_per_meter(db).values()) >= 3,
                what="three readings of every meter",
            )
            assert collector.polling is not None and collector.metrics_port is not None
            assert set(collector.polling.gateways) == {g.address for g in fleet.gateways}
            metrics = (
                urllib.request.urlopen(
                    f"http://127.0.0.1:{collector.metrics_port}/metrics", timeout=5
                )
                .read()
                .decode()
            )
    finally:
        loop.run(fleet.stop())

    for meter in fleet.meters:
        assert assert_equal_to_served(fleet, db, meter.serial) >= 3
    values = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line and not line.startswith("#")
    }
    assert values['doxa_collector_polls_total{outcome="ok"}'] >= 36
    assert values['doxa_collector_polls_total{outcome="timeout"}'] == 0
    assert values["doxa_collector_poll_latency_seconds_count"] >= 36
    assert values["doxa_collector_readings_written_total"] >= 1
    outcomes = db.execute("SELECT outcome, count(*) FROM poll_outcomes GROUP BY 1").fetchall()
    assert dict(outcomes).keys() == {"ok"}
    assert (
        count(db, "SELECT count(*) FROM poll_outcomes WHERE latency_ms > 0") == dict(outcomes)["ok"]
    )
    status = db.execute(
        "SELECT count(*) FROM meter_status WHERE last_ok_at IS NOT NULL"
        " AND last_reading_ts IS NOT NULL AND consecutive_failures = 0"
    ).fetchone()
    assert status == (12,)
    beat = db.execute(
        "SELECT host, version, pid, poll_interval, (counters->>'polls_ok')::int FROM collectors"
        " WHERE id = 'test-collector'"
    ).fetchone()
    assert beat is not None and beat[3] == 1.0 and beat[4] >= 36
    written = count(db, "SELECT sum(readings_written) FROM collector_heartbeats")
    assert written == count(db, "SELECT count(*) FROM readings")


async def _nan_gateway() -> ModbusTcpServer:
    """A gateway whose one meter (unit 1) holds NaN in every register: undecodable."""
    device = SimDevice(
        1, simdata=[SimData(0, count=0x50, values=0x7FC0, datatype=DataType.REGISTERS)]
    )
    server = ModbusTcpServer([device], address=("127.0.0.1", 0))
    await server.serve_forever(background=True)
    return server


def test_dead_meters_and_a_dead_gateway_do_not_stop_the_others(
    loop: LoopThread, db_url: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    fleet = ModbusFleet(meters=9, gateways=3, seed=5, models=("sdm120",))
    loop.run(fleet.start())
    nan_server = loop.run(_nan_gateway())
    nan_port = nan_server.transport.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    meters = fleet.meters
    on = {g: [m for m in meters if m.gateway == g] for g in range(3)}
    silent, refusing = on[0][1].serial, on[1][0].serial
    healthy = [m.serial for m in on[0] + on[1] if m.serial not in (silent, refusing)]
    try:
        import_csv(db_url, fleet.inventory_csv())
        nan_meter = inventory_line("NAN-1", 99, "modbus", "sdm120", "127.0.0.1", nan_port, 1)
        import_csv(db_url, f"{HEADER}\n{nan_meter}\n")
        fleet.set_timeout(silent)
        fleet.set_exception(refusing, 0x0B)
        loop.run(fleet.fail_gateway(2))
        with InProcessCollector(loop, test_config(db_url, tmp_path)):
            wait_for(
                lambda: min(readings_per_meter(db)[s] for s in healthy) >= 4,
                what="four polls of the healthy meters",
            )
            # Recovery: the gateway comes back and the meters answer again.
            loop.run(fleet.restore_gateway(2))
            fleet.clear_faults()
            wait_for(
                lambda: min(readings_per_meter(db)[m.serial] for m in meters) >= 1,
                what="every simulated meter read after recovery",
            )
    finally:
        loop.run(fleet.stop())
        loop.run(nan_server.shutdown())

    for serial in healthy:
        assert_equal_to_served(fleet, db, serial)

    def outcomes(serial: str) -> list[tuple[str, int | None, str | None]]:
        return db.execute(
            "SELECT o.outcome, o.exception_code, o.detail FROM poll_outcomes o"
            " JOIN meters m ON m.id = o.meter_id WHERE m.serial = %s ORDER BY o.ts",
            (serial,),
        ).fetchall()

    # Healthy meters sharing a gateway with a dead meter were read in every cycle of it.
    for gateway in (0, 1):
        cycles = [len(outcomes(m.serial)) for m in on[gateway]]
        assert max(cycles) - min(cycles) <= 1, cycles
    for serial in healthy:
        assert {o[0] for o in outcomes(serial)} == {"ok"}

    silent_outcomes = outcomes(silent)
    assert silent_outcomes[0][0] == "timeout" and "no answer from unit" in (
        silent_outcomes[0][2] or ""
    )
    assert "backoff" in {o[0] for o in silent_outcomes}  # a dead meter stops eating the cycle
    assert silent_outcomes[-1][0] == "ok"  # and is read again once it answers
    refused = outcomes(refusing)
    assert refused[0][:2] == ("exception", 0x0B)
    assert "gateway target device failed to respond" in (refused[0][2] or "")

    down = outcomes(on[2][0].serial)
    assert down[0][0] == "transport_error" and "unreachable" in (down[0][2] or "")
    assert down[-1][0] == "ok"  # reconnected after the gateway came back

    nan = outcomes("NAN-1")
    assert {o[0] for o in nan} <= {"decode_error", "backoff"} and nan[0][0] == "decode_error"
    assert "not a measurement" in (nan[0][2] or "")
    assert readings_per_meter(db)["NAN-1"] == 0

    status = db.execute(
        "SELECT m.serial, s.last_error, s.consecutive_failures, s.last_ok_at IS NOT NULL"
        " FROM meter_status s JOIN meters m ON m.id = s.meter_id WHERE m.serial = 'NAN-1'"
    ).fetchone()
    assert status is not None and "not a measurement" in status[1] and status[2] >= 2
    assert status[3] is False
    failed = count(db, "SELECT sum(polls_failed) FROM collector_heartbeats")
    assert failed == count(
        db, "SELECT count(*) FROM poll_outcomes WHERE outcome NOT IN ('ok', 'backoff')"
    )


def test_inventory_changes_are_picked_up_without_a_restart(
    loop: LoopThread, db_url: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    first = ModbusFleet(meters=2, gateways=1, seed=1, serial_prefix="FA", customer_prefix="PB0201")
    second = ModbusFleet(meters=4, gateways=1, seed=2, serial_prefix="FB", customer_prefix="PB0301")
    loop.run(first.start())
    loop.run(second.start())
    try:
        import_csv(db_url, first.inventory_csv())
        with InProcessCollector(loop, test_config(db_url, tmp_path)) as collector:
            wait_for(lambda: readings_per_meter(db) and min(readings_per_meter(db).values()) >= 1)
            # Two of the new meters name this collector, one names another, one names none.
            owners = ["test-collector", "other-collector", "", "test-collector"]
            lines = [
                inventory_line(
                    m.serial, 50 + i, "modbus", m.model, m.host, m.port, m.unit_id, owner
                )
                for i, (m, owner) in enumerate(zip(second.meters, owners, strict=True))
            ]
            import_csv(db_url, "\n".join([HEADER, *lines]) + "\n")
            mine = [
                m.serial
                for m, o in zip(second.meters, owners, strict=True)
                if o != "other-collector"
            ]
            wait_for(
                lambda: min(readings_per_meter(db)[s] for s in mine) >= 2,
                what="the new meters polled",
            )
            assert len(collector.polling.gateways) == 2
    finally:
        loop.run(first.stop())
        loop.run(second.stop())
    other = second.meters[1].serial
    assert readings_per_meter(db)[other] == 0
    assert (
        count(
            db,
            "SELECT count(*) FROM poll_outcomes o JOIN meters m ON m.id = o.meter_id WHERE m.serial = %s",
            other,
        )
        == 0
    )
    for serial in mine:
        assert_equal_to_served(second, db, serial)


def test_slow_cycles_never_overlap_and_a_stop_finishes_the_poll_in_flight(
    loop: LoopThread, db_url: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    # Three slow meters on one bus: a cycle (2 requests × 3 meters × 0.15 s) outlasts the 0.5 s
    # interval, so runs must be skipped, not overlapped.
    fleet = ModbusFleet(meters=3, gateways=1, seed=8, models=("sdm120",))
    fleet.set_delay_all(0.15)
    loop.run(fleet.start())
    config = test_config(db_url, tmp_path, poll_interval=0.5, modbus_timeout=1.0)
    try:
        import_csv(db_url, fleet.inventory_csv())
        with InProcessCollector(loop, config) as collector:
            assert collector.polling is not None
            wait_for(lambda: collector.stats.snapshot().get("polls_ok", 0) >= 7)
            wait_for(lambda: collector.polling._running, interval=0.01, what="a poll in flight")
            ok_at_stop = collector.stats.snapshot()["polls_ok"]
        # (the context exit stopped the collector in the middle of that poll)
    finally:
        loop.run(fleet.stop())
    counters = collector.stats.snapshot()
    assert counters["poll_cycles_overrun"] >= 1
    assert counters["polls_ok"] > ok_at_stop  # the meter being read was finished, not dropped
    assert count(db, "SELECT count(*) FROM readings") == counters["polls_ok"]
    units = [
        row[0]
        for row in db.execute(
            "SELECT m.unit_id FROM poll_outcomes o JOIN meters m ON m.id = o.meter_id ORDER BY o.ts"
        )
    ]
    # Strictly 1, 2, 3, 1, 2, 3…: no cycle ever started while another was running.
    assert units == [1, 2, 3] * (len(units) // 3) + [1, 2, 3][: len(units) % 3]


def test_gateways_are_polled_concurrently_up_to_the_bound(
    loop: LoopThread, db_url: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    # One slow meter per gateway (2 requests × 0.2 s): polls of different gateways overlap, but
    # never more than max_gateways_in_flight at once.
    fleet = ModbusFleet(meters=3, gateways=3, seed=9, models=("sdm120",))
    fleet.set_delay_all(0.2)
    loop.run(fleet.start())
    config = test_config(db_url, tmp_path, max_gateways_in_flight=2, modbus_timeout=1.0)
    try:
        import_csv(db_url, fleet.inventory_csv())
        with InProcessCollector(loop, config):
            wait_for(lambda: count(db, "SELECT count(*) FROM readings") >= 9)
    finally:
        loop.run(fleet.stop())
    # Each poll's span, trimmed by 1 ms at both ends (latency_ms is a float4) so one poll
    # ending just as the next starts is not counted as an overlap.
    spans = db.execute(
        "SELECT ts - make_interval(secs => latency_ms / 1000) + interval '1 ms',"
        " ts - interval '1 ms' FROM poll_outcomes WHERE outcome = 'ok'"
    ).fetchall()
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running, most = 0, 0
    for _ts, step in events:
        running += step
        most = max(most, running)
    assert most == 2
