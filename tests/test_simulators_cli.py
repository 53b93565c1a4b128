"""``doxa simulate``: the CLI runs fleets, writes inventories that ``doxa meters import``
accepts, applies faults, stops cleanly on SIGINT, and rejects bad input in one line."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusIOException
from test_simulators_mqtt import Subscriber

from doxa.services._proc import free_port
from protocols.modbus import get_model
from simulators.modbus import ModbusFleet

GENERIC_TOML = """
[generic]
[generic.quantities]
energy_import_kwh = { address = 0, data_type = "uint32", unit = "Wh" }
power_w = { address = 2, data_type = "int16" }
"""


def meters_in(db: psycopg.Connection) -> list[tuple]:
    return db.execute(
        "SELECT m.serial, m.protocol, m.model, m.host, m.port, m.unit_id, c.code"
        " FROM meters m JOIN customers c ON c.id = m.customer_id ORDER BY m.serial"
    ).fetchall()


@pytest.mark.db
@pytest.mark.mqtt
def test_inventories_of_both_simulators_import(
    doxa, db_url: str, db: psycopg.Connection, mqtt_url: str, tmp_path: Path
) -> None:
    env = {"DOXA_DATABASE_URL": db_url, "DOXA_MQTT_URL": mqtt_url}
    modbus_csv, mqtt_csv = tmp_path / "modbus.csv", tmp_path / "mqtt.csv"
    result = doxa("simulate", "modbus", "--meters", "5", "--gateways", "2", "--seed", "3",
                  "--inventory-out", modbus_csv, "--duration", "0", env=env)  # fmt: skip
    assert result.code == 0, result.err
    assert "gateway 1: 127.0.0.1:" in result.err
    subscriber = Subscriber(mqtt_url)
    try:
        result = doxa("simulate", "mqtt", "--meters", "4", "--rounds", "1", "--seed", "3",
                      "--inventory-out", mqtt_csv, env=env)  # fmt: skip
        assert result.code == 0, result.err
        assert "published 4 message(s) in 1 round(s)" in result.err
        assert len(subscriber.wait_for(4)) == 4
    finally:
        subscriber.close()

    for path in (modbus_csv, mqtt_csv):
        result = doxa("meters", "import", path, env=env)
        assert result.code == 0, result.err
    rows = meters_in(db)
    assert len(rows) == 9
    # The CSV names the fleet exactly as the Python API does (same seed, same meters).
    fleet = ModbusFleet(5, 2, seed=3)
    modbus_rows = [r for r in rows if r[1] == "modbus"]
    assert [(r[0], r[2], r[5], r[6]) for r in modbus_rows] == sorted(
        (m.serial, m.model, m.unit_id, m.customer.code) for m in fleet.meters
    )
    assert len({(r[3], r[4]) for r in modbus_rows}) == 2  # two gateways
    assert {r[2] for r in rows if r[1] == "mqtt"} == {None}


@pytest.mark.mqtt
def test_mqtt_cli_offline_backlog_and_duplicates(doxa, mqtt_url: str) -> None:
    subscriber = Subscriber(mqtt_url)
    try:
        result = doxa("simulate", "mqtt", "--meters", "3", "--rounds", "3", "--interval", "60",
                      "--speed", "6000", "--offline", "1:1", "--duplicates", "1",
                      env={"DOXA_MQTT_URL": mqtt_url})  # fmt: skip
        assert result.code == 0, result.err
        # round 1: meters 2, 3 and their duplicates; round 2: meter 1's backlog, three readings,
        # three duplicates; round 3: three readings, three duplicates
        assert "published 17 message(s) in 3 round(s)" in result.err
        received = subscriber.wait_for(17)
    finally:
        subscriber.close()
    backlog = [
        p for t, p in received if t == "doxa/meters/MQ-NAT-00001/reading" and p.startswith(b"[")
    ]
    assert len(backlog) == 1


def test_modbus_cli_runs_until_sigint(tmp_path: Path) -> None:
    port = free_port()
    inventory = tmp_path / "inv.csv"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOXA_")}
    env["DOXA_HOME"] = str(tmp_path / "home")
    proc = subprocess.Popen(
        [sys.executable, "-m", "doxa", "simulate", "modbus", "--meters", "2", "--port", str(port),
         "--seed", "4", "--models", "sdm630", "--inventory-out", str(inventory),
         "--fault", "timeout:2"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while not inventory.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert inventory.exists(), proc.stderr.read() if proc.stderr else ""
        assert f"127.0.0.1,{port},1," in inventory.read_text()
        fleet = ModbusFleet(2, 1, seed=4, models=("sdm630",))  # the same meters, for the truth
        serial = fleet.meters[0].serial
        model = get_model("sdm630")

        async def read() -> tuple[float, datetime, datetime]:
            client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=0.5, retries=0)
            assert await client.connect()
            try:
                before = datetime.now(UTC)
                blocks = []
                for r in model.requests:
                    response = await client.read_input_registers(
                        r.address, count=r.count, device_id=1
                    )
                    blocks.append(response.registers)
                after = datetime.now(UTC)
                with pytest.raises(ModbusIOException):  # meter 2 was told not to answer
                    await client.read_input_registers(0, count=2, device_id=2)
            finally:
                client.close()
            return model.decode(blocks).energy_import_kwh, before, after

        energy, before, after = asyncio.run(read())
        # the register is the truth at some instant of the read (energy never decreases)
        assert fleet.truth(serial, before).energy_import_kwh <= energy
        assert energy <= fleet.truth(serial, after).energy_import_kwh
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert b"Traceback" not in err


def test_bad_input_is_one_line_and_exit_2(doxa, tmp_path: Path) -> None:
    cases = [
        (("simulate", "modbus", "--meters", "2", "--models", "sdm999"), "unknown model(s) sdm999"),
        (
            ("simulate", "modbus", "--meters", "2", "--models", "generic"),
            "unknown model(s) generic",
        ),
        (("simulate", "modbus", "--meters", "2", "--start", "yesterday"), "not an ISO 8601 time"),
        (("simulate", "modbus", "--meters", "300"), "need at least 2 gateways"),
        (("simulate", "modbus", "--meters", "2", "--fault", "melt:1"), "unknown fault 'melt'"),
        (("simulate", "mqtt", "--meters", "2", "--offline", "7:2"), "neither a meter serial"),
    ]
    for args, message in cases:
        result = doxa(*args)
        assert result.code == 2, (args, result.err)
        assert message in result.err
        assert len(result.err.strip().splitlines()) == 1
    bad = tmp_path / "models.toml"
    bad.write_text('[generic.quantities]\npower_w = { address = "x" }\n')
    result = doxa("simulate", "modbus", "--meters", "1", env={"DOXA_MODBUS_MODELS": str(bad)})
    assert result.code == 2
    assert "DOXA_MODBUS_MODELS" in result.err and "generic.quantities.power_w.address" in result.err


def test_generic_model_from_the_models_file(doxa, tmp_path: Path) -> None:
    models = tmp_path / "models.toml"
    models.write_text(GENERIC_TOML)
    out = tmp_path / "inv.csv"
    result = doxa("simulate", "modbus", "--meters", "2", "--models", "generic,sdm120",
                  "--inventory-out", out, "--duration", "0",
                  env={"DOXA_MODBUS_MODELS": str(models)})  # fmt: skip
    assert result.code == 0, result.err
    lines = out.read_text().splitlines()
    assert ",modbus,generic," in lines[1] and ",modbus,sdm120," in lines[2]
