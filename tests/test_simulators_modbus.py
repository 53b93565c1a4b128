"""The Modbus simulator over real sockets: a bare pymodbus client reads every model and
protocols/ decodes exactly the truth; every fault appears as specified."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusIOException

from protocols.modbus import CompiledModel, Measurement, ModelCatalog
from simulators.clock import SimClock
from simulators.faults import apply_modbus_fault
from simulators.modbus import ModbusFleet, ModbusMeter

T0 = datetime(2026, 11, 26, 12, 30, tzinfo=UTC)
GENERIC = {
    "generic": {
        "max_gap": 4,
        "quantities": {
            "energy_import_kwh": {"address": 0x10, "data_type": "uint32", "unit": "Wh"},
            "power_w": {
                "address": 0x100,
                "function": 3,
                "data_type": "int32",
                "byte_order": "CDAB",
            },
            "voltage_v": {"address": 0x102, "function": 3, "data_type": "uint16", "scale": 0.1},
        },
    }
}


def run(body: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    return asyncio.run(body(*args))


async def client_for(meter: ModbusMeter, timeout: float = 2.0) -> AsyncModbusTcpClient:
    client = AsyncModbusTcpClient(meter.host, port=meter.port, timeout=timeout, retries=0)
    assert await client.connect()
    return client


async def read_blocks(
    client: AsyncModbusTcpClient, model: CompiledModel, unit: int
) -> list[list[int]]:
    blocks = []
    for r in model.requests:
        read = client.read_input_registers if r.function == 4 else client.read_holding_registers
        response = await read(r.address, count=r.count, device_id=unit)
        assert not response.isError(), response
        blocks.append(list(response.registers))
    return blocks


async def poll(fleet: ModbusFleet, meter: ModbusMeter, client: AsyncModbusTcpClient) -> Measurement:
    model = fleet.model(meter.serial)
    return model.decode(await read_blocks(client, model, meter.unit_id))


def test_bare_client_reads_every_model_and_decodes_the_truth() -> None:
    async def body() -> None:
        clock = SimClock.fixed(T0)
        catalog = ModelCatalog.from_config(GENERIC)
        fleet = ModbusFleet(8, 3, seed=21, clock=clock, catalog=catalog,
                            models=("sdm120", "sdm630", "ddsu666", "generic"))  # fmt: skip
        async with fleet:
            assert len({g.port for g in fleet.gateways}) == 3
            for meter in fleet.meters:
                client = await client_for(meter)
                try:
                    measurement = await poll(fleet, meter, client)
                finally:
                    client.close()
                assert measurement == fleet.truth(meter.serial, T0)
                assert fleet.served(meter.serial)[-1].measurement == measurement
                assert fleet.served(meter.serial)[-1].ts == T0
                assert measurement.energy_import_kwh > 100
                if meter.model == "sdm630":
                    assert set(measurement.extra) == {
                        "voltage_l2", "voltage_l3", "current_l2", "current_l3",
                        "power_l2", "power_l3", "power_total_w",
                    }  # fmt: skip
                # later, the meter has used energy: the registers move with simulated time
            clock.advance(timedelta(hours=1))
            meter = fleet.meters[0]
            client = await client_for(meter)
            try:
                later = await poll(fleet, meter, client)
            finally:
                client.close()
            assert later == fleet.truth(meter.serial, T0 + timedelta(hours=1))
            assert later.energy_import_kwh > fleet.truth(meter.serial, T0).energy_import_kwh
        assert {m.model for m in fleet.meters} == {"sdm120", "sdm630", "ddsu666", "generic"}
        assert {(m.gateway, m.unit_id) for m in fleet.meters} == {
            (0, 1), (1, 1), (2, 1), (0, 2), (1, 2), (2, 2), (0, 3), (1, 3)
        }  # fmt: skip

    run(body)


def test_one_poll_sees_one_instant_while_time_runs() -> None:
    async def body() -> None:
        fleet = ModbusFleet(1, 1, seed=3, models=("sdm630",), clock=SimClock(T0, speed=3600))
        async with fleet:
            meter = fleet.meters[0]
            client = await client_for(meter)
            try:
                results = [await poll(fleet, meter, client) for _ in range(5)]
            finally:
                client.close()
        served = fleet.served(meter.serial)
        for measurement in results:
            match = [s for s in served if s.measurement == measurement]
            assert match, "every poll decodes to one snapshot the meter served"
            assert fleet.truth(meter.serial, match[0].ts) == measurement
        assert len({s.ts for s in served}) >= 5  # the clock ran between the polls

    run(body)


def test_meter_faults() -> None:
    async def body() -> None:
        fleet = ModbusFleet(4, 1, seed=8, models=("sdm120",), clock=SimClock.fixed(T0))
        async with fleet:
            silent, refusing, slow, other = fleet.meters
            model = fleet.model(other.serial)
            client = await client_for(other, timeout=0.5)
            try:
                fleet.set_timeout(silent.serial)
                with pytest.raises(ModbusIOException):
                    await client.read_input_registers(0, count=2, device_id=silent.unit_id)
                # the bus goes on: the next meter on the same gateway answers, with its own values
                assert await poll(fleet, other, client) == fleet.truth(other.serial, T0)

                fleet.set_exception(refusing.serial, 0x0B)
                response = await client.read_input_registers(0, count=2, device_id=refusing.unit_id)
                assert response.isError() and response.exception_code == 0x0B

                fleet.set_delay(slow.serial, 0.2)
                started = time.monotonic()
                assert await poll(fleet, slow, client) == fleet.truth(slow.serial, T0)
                assert time.monotonic() - started >= 0.2 * len(model.requests)

                # an answer later than the client's timeout is never taken for the next request's
                fleet.set_delay(slow.serial, 0.8)
                with pytest.raises(ModbusIOException):
                    await client.read_input_registers(0x48, count=2, device_id=slow.unit_id)
                # keep the bus busy while the late answer falls due: it must be dropped, not sent
                # with the pending request's transaction id
                until = time.monotonic() + 0.6
                while time.monotonic() < until:
                    assert await poll(fleet, other, client) == fleet.truth(other.serial, T0)

                fleet.clear_faults()
                for meter in fleet.meters:
                    assert await poll(fleet, meter, client) == fleet.truth(meter.serial, T0)

                before = fleet.truth(other.serial, T0).energy_import_kwh
                fleet.reset_register(other.serial)
                fleet.clock.advance(timedelta(hours=2))
                after = await poll(fleet, other, client)
                assert after == fleet.truth(other.serial, T0 + timedelta(hours=2))
                assert 0 < after.energy_import_kwh < 10 < before

                no_meter = await client.read_input_registers(0x48, count=2, device_id=99)
                assert no_meter.isError() and no_meter.exception_code == 0x0B
                too_many = await client.read_input_registers(0, count=61, device_id=other.unit_id)
                assert too_many.isError() and too_many.exception_code == 0x03
                outside = await client.read_input_registers(0x200, count=2, device_id=other.unit_id)
                assert outside.isError() and outside.exception_code == 0x02
                write = await client.write_register(0, 1, device_id=other.unit_id)
                assert write.isError() and write.exception_code == 0x01
            finally:
                client.close()

    run(body)


def test_gateway_down_and_back() -> None:
    async def body() -> None:
        fleet = ModbusFleet(4, 2, seed=2, models=("sdm120",), clock=SimClock.fixed(T0))
        async with fleet:
            down = [m for m in fleet.meters if m.gateway == 0]
            up = [m for m in fleet.meters if m.gateway == 1]
            await apply_modbus_fault(fleet, "gateway-down:0")
            client = AsyncModbusTcpClient(down[0].host, port=down[0].port, timeout=0.5, retries=0)
            assert not await client.connect()  # connection refused
            client.close()
            alive = await client_for(up[0])
            try:
                assert await poll(fleet, up[0], alive) == fleet.truth(up[0].serial, T0)
            finally:
                alive.close()
            await fleet.restore_gateway(0)
            back = await client_for(down[0])
            try:
                for meter in down:
                    assert await poll(fleet, meter, back) == fleet.truth(meter.serial, T0)
            finally:
                back.close()

    run(body)


def test_gateway_down_drops_open_connections() -> None:
    async def body() -> None:
        fleet = ModbusFleet(1, 1, seed=2, models=("sdm120",), clock=SimClock.fixed(T0))
        async with fleet:
            meter = fleet.meters[0]
            client = await client_for(meter, timeout=0.5)
            try:
                await fleet.fail_gateway(0)
                with pytest.raises((ConnectionException, ModbusIOException)):
                    await client.read_input_registers(0, count=2, device_id=meter.unit_id)
            finally:
                client.close()

    run(body)


def test_fault_specs() -> None:
    async def body() -> None:
        fleet = ModbusFleet(3, 1, seed=1, models=("sdm120",), clock=SimClock.fixed(T0))
        serials = [m.serial for m in fleet.meters]
        assert await apply_modbus_fault(fleet, "timeout:1") == f"{serials[0]} does not answer"
        assert "0x04" in await apply_modbus_fault(fleet, f"exception:{serials[1]}:4")
        assert "0.25 s late" in await apply_modbus_fault(fleet, "delay:3:0.25")
        assert "register reset" in await apply_modbus_fault(fleet, "reset:2")
        for bad, message in [
            ("melt:1", "unknown fault"),
            ("timeout:9", "neither a meter serial nor a position 1–3"),
            ("exception:1:77", "not a Modbus exception code"),
            ("delay:1", "wrong arguments"),
            ("gateway-down:5", "INDEX 0–0"),
        ]:
            with pytest.raises(ValueError, match=message):
                await apply_modbus_fault(fleet, bad)

    run(body)


def test_validation_fault_specs_change_the_truth() -> None:
    """rollback, spike, stuck and gap (issue 14) as specs: what the meter serves changes."""

    async def body() -> None:
        fleet = ModbusFleet(4, 1, seed=1, models=("sdm120",), clock=SimClock.fixed(T0))
        s = [m.serial for m in fleet.meters]
        later = T0 + timedelta(hours=2)
        before = {k: fleet.truth(k, later).energy_import_kwh for k in s}
        assert "runs back 5 kWh" in await apply_modbus_fault(fleet, "rollback:1:5")
        assert "jumps 30 kWh" in await apply_modbus_fault(fleet, "spike:2:30")
        assert "stuck until" in await apply_modbus_fault(fleet, "stuck:3:4")
        assert "silent until" in await apply_modbus_fault(fleet, "gap:4:1")
        after = {k: fleet.truth(k, later).energy_import_kwh for k in s}
        assert after[s[0]] == pytest.approx(before[s[0]] - 5, abs=0.01)
        assert after[s[1]] == pytest.approx(before[s[1]] + 30, abs=0.01)
        assert after[s[2]] == pytest.approx(fleet.truth(s[2], T0).energy_import_kwh, abs=0.01)
        assert after[s[3]] == before[s[3]]  # a gap changes no value, only what is served
        inside = list(fleet.history(s[3], T0, T0 + timedelta(hours=2), 900))
        assert [r.ts for r in inside] == [T0 + timedelta(minutes=15 * k) for k in range(4, 8)]
        with pytest.raises(ValueError, match="wrong arguments"):
            await apply_modbus_fault(fleet, "spike:1")

    run(body)


def test_configuration_errors() -> None:
    with pytest.raises(ValueError, match="need at least 2 gateways"):
        ModbusFleet(300, 1)
    with pytest.raises(ValueError, match="unknown meter model"):
        ModbusFleet(1, 1, models=("sdm999",))
    with pytest.raises(RuntimeError, match="start the fleet first"):
        ModbusFleet(1, 1).inventory_csv()
