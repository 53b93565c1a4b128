"""Gateway quirks (contract §11b): an RTU-over-TCP gateway that ignores requests coming sooner
than 20 ms after its previous answer is read exactly, the collector leaving that pause (checked
on the times the simulated gateway recorded); the inventory keeps the options per gateway."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusIOException
from pymodbus.framer import FramerType
from test_collector_support import (
    HEADER,
    InProcessCollector,
    LoopThread,
    import_csv,
    inventory_line,
    stored,
    test_config,
    wait_for,
)

from doxa.errors import InventoryError
from protocols.modbus.models import MODEL_NAMES
from schema.inventory import parse_inventory
from simulators.modbus import ModbusFleet

pytestmark = [pytest.mark.db, pytest.mark.slow]

GAP = 0.020


@pytest.fixture
def loop() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.close()


async def two_reads_back_to_back(host: str, port: int) -> tuple[bool, bool]:
    """(first answered, second answered) for two requests with no pause between them."""
    client = AsyncModbusTcpClient(host, port=port, framer=FramerType.RTU, timeout=0.3, retries=0)
    await client.connect()
    answered = []
    try:
        for _ in range(2):
            try:
                rr = await client.read_input_registers(0, count=2, device_id=1)
                answered.append(not rr.isError())
            except ModbusIOException:
                answered.append(False)
    finally:
        client.close()
    return answered[0], answered[1]


def test_an_rtu_over_tcp_gateway_with_a_20_ms_request_gap_is_read_exactly(
    loop: LoopThread, db_url: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    fleet = ModbusFleet(meters=6, gateways=2, seed=41, framing="rtu-over-tcp", request_gap=GAP)
    loop.run(fleet.start())
    try:
        csv_text = fleet.inventory_csv()
        assert "framing,request_delay_ms" in csv_text.splitlines()[0]
        import_csv(db_url, csv_text)
        assert db.execute("SELECT DISTINCT framing, request_delay_ms FROM meters").fetchall() == [
            ("rtu-over-tcp", 20)
        ]
        config = test_config(db_url, tmp_path, modbus_timeout=0.25)
        with InProcessCollector(loop, config):
            wait_for(
                lambda: all(len(stored(db, m.serial)) >= 3 for m in fleet.meters),
                what="three readings of every meter",
            )
        gateway = fleet.gateways[0]
        # The simulated gateway really ignores a request that comes too soon.
        assert loop.run(two_reads_back_to_back(gateway.host, gateway.port)) == (True, False)
    finally:
        loop.run(fleet.stop())

    outcomes = dict(db.execute("SELECT outcome, count(*) FROM poll_outcomes GROUP BY 1").fetchall())
    assert outcomes.keys() == {"ok"} and outcomes["ok"] >= 18
    for meter in fleet.meters:
        served = fleet.served(meter.serial)
        rows = stored(db, meter.serial)
        assert len(rows) >= 3
        for _serial, ts, *values in rows:
            before = [x for x in served if x.ts <= ts]
            assert before, f"{meter.serial}: stored {ts} before anything was served"
            m = before[-1].measurement  # the snapshot its poll read, exactly
            assert m == fleet.truth(meter.serial, before[-1].ts)
            assert values == [
                m.energy_import_kwh,
                m.energy_export_kwh,
                m.power_w,
                m.voltage_v,
                m.current_a,
                m.frequency_hz,
            ], f"{meter.serial} at {ts}"
    for g in fleet.gateways:
        times = fleet.requests(g.index)[:-2] if g.index == 0 else fleet.requests(g.index)
        assert len(times) >= 3 * 2 * 3  # three polls of its meters, at least two requests each
        assert all(t.answered is not None for t in times)  # no request came too soon
        gaps = [b.received - a.answered for a, b in itertools.pairwise(times)]
        assert min(gaps) >= GAP, f"gateway {g.index}: a request {min(gaps) * 1000:.1f} ms after"


def gateway_line(serial: str, index: int, unit: int, framing: str, delay: str) -> str:
    line = inventory_line(serial, index, "modbus", "sdm120", "10.0.0.5", 502, unit)
    return f"{line},{framing},{delay},"


GW_HEADER = HEADER + ",framing,request_delay_ms,timeout_ms"


def test_meters_of_one_gateway_must_agree_on_its_options(db_url: str) -> None:
    agree = [
        gateway_line("GW-1", 1, 1, "rtu-over-tcp", "20"),
        gateway_line("GW-2", 2, 2, "rtu-over-tcp", "20"),
    ]
    rows = parse_inventory(
        "\n".join([GW_HEADER, *agree]), tariff_groups={"residential"}, models=MODEL_NAMES
    )
    assert {(r.gateway.framing, r.gateway.request_delay_ms) for r in rows if r.gateway} == {
        ("rtu-over-tcp", 20)
    }
    with pytest.raises(InventoryError) as disagree:
        parse_inventory(
            "\n".join([GW_HEADER, *agree, gateway_line("GW-3", 3, 3, "tcp", "20")]),
            tariff_groups={"residential"},
            models=MODEL_NAMES,
        )
    assert disagree.value.problems == [
        "line 4: gateway 10.0.0.5:502 has other options than on line 2 (framing tcp, "
        "request_delay_ms 20, timeout default here, framing rtu-over-tcp, request_delay_ms 20, "
        "timeout default there); the meters of one gateway must agree"
    ]
    with pytest.raises(InventoryError, match=r"line 2, column framing: 'rtu' is not one of"):
        parse_inventory(
            "\n".join([GW_HEADER, gateway_line("GW-1", 1, 1, "rtu", "")]),
            tariff_groups={"residential"},
            models=MODEL_NAMES,
        )

    # Against the database: a file naming one meter of a stored gateway must keep its options.
    import_csv(db_url, "\n".join([GW_HEADER, *agree]) + "\n")
    with pytest.raises(InventoryError, match=r"line 2: gateway 10.0.0.5:502 has other options "
                       r"than its stored meter GW-2"):  # fmt: skip
        import_csv(db_url, "\n".join([GW_HEADER, gateway_line("GW-1", 1, 1, "tcp", "")]) + "\n")
    # Changing the whole gateway at once is fine.
    import_csv(
        db_url,
        "\n".join([GW_HEADER, *(ln.replace("rtu-over-tcp,20", "tcp,5") for ln in agree)]) + "\n",
    )
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT DISTINCT framing, request_delay_ms FROM meters").fetchall() == [
            ("tcp", 5)
        ]


def test_gateway_options_follow_a_reimport_without_a_restart(
    loop: LoopThread, db_url: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    fleet = ModbusFleet(meters=2, gateways=1, seed=42, framing="rtu-over-tcp", request_gap=GAP)
    loop.run(fleet.start())

    def ignored(start: int) -> int:
        return sum(1 for t in fleet.requests(0)[start:] if t.answered is None)

    try:
        csv_text = fleet.inventory_csv()
        import_csv(db_url, csv_text.replace("rtu-over-tcp,20", "rtu-over-tcp,0"))
        config = test_config(db_url, tmp_path, modbus_timeout=0.2)
        with InProcessCollector(loop, config) as collector:
            # Without the pause, requests are ignored (pymodbus' retry, later, gets an answer).
            wait_for(lambda: ignored(0) >= 2, what="requests ignored by the gateway")
            import_csv(db_url, csv_text)  # the gateway's real request_delay_ms
            assert collector.polling is not None
            key = fleet.gateways[0].address
            wait_for(
                lambda: (
                    collector.polling is not None
                    and collector.polling.gateway_options[key].request_delay == GAP
                ),
                what="the collector following the new inventory",
            )
            mark = len(fleet.requests(0))
            wait_for(lambda: len(fleet.requests(0)) >= mark + 12, what="more polls")
            assert ignored(mark) == 0
    finally:
        loop.run(fleet.stop())


def test_the_simulate_command_serves_rtu_over_tcp_and_writes_the_gateway_columns(
    doxa, db_url: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    inventory = tmp_path / "rtu.csv"
    result = doxa(
        "simulate", "modbus", "--meters", "3", "--framing", "rtu-over-tcp",
        "--request-gap-ms", "20", "--inventory-out", str(inventory), "--duration", "0",
        env={"DOXA_DATABASE_URL": db_url},
    )  # fmt: skip
    assert result.code == 0, result.err
    header = inventory.read_text().splitlines()[0]
    assert header.endswith(",multiplier,framing,request_delay_ms")
    assert doxa("meters", "import", str(inventory), env={"DOXA_DATABASE_URL": db_url}).code == 0
    assert db.execute(
        "SELECT framing, request_delay_ms, count(*) FROM meters GROUP BY 1, 2"
    ).fetchall() == [("rtu-over-tcp", 20, 3)]
    bad = doxa("simulate", "modbus", "--meters", "1", "--framing", "rtu", "--duration", "0")
    assert bad.code == 2 and "rtu" in bad.err and "Traceback" not in bad.err
