"""Simulated Modbus meters: G gateways (one pymodbus TCP server each) with N meters over their
unit ids, each serving its model's register map from the load model, with faults on demand.

What a meter serves is a pure function of (meter, simulated time): ``truth(serial, ts)`` is the
Measurement a poll at ``ts`` decodes to, exactly (register precision included). Each meter answers
from a *snapshot* taken when a request reads the start of the model's first planned block (as a
poll's first request does) or when the snapshot is older than ``snapshot_max_age`` wall seconds,
so the blocks of one poll describe one instant, like a meter latching its values. Every snapshot
is recorded: ``served(serial)`` lists what the meter really gave and at which simulated time.

Faults: ``set_timeout`` (the meter never answers: its responses are dropped), ``set_exception``
(e.g. 0x0B gateway target failed), ``set_delay`` (a slow meter; a response that comes after the
client has sent its next request is dropped, as a real gateway would), ``reset_register`` (meter
replaced: the import register restarts from 0), ``fail_gateway`` (the TCP server goes away) and
``restore_gateway``. Gateways speak MBAP (``framing="tcp"``) or Modbus RTU frames with CRC over
TCP (``framing="rtu-over-tcp"``, as cheap serial-to-TCP converters do); ``request_gap`` makes
them behave like cheap RS-485 gateways that ignore a request arriving sooner than that after their
previous answer (the client times out). Every request's arrival and answer times
(``time.monotonic()``) are recorded: ``requests(index)``. A unit id with no meter answers 0x0B,
like a gateway with nothing at that address. Meters are read-only: writes get exception 0x01; a
read of more registers than the model allows in one request (Eastron: 60) gets 0x03, as the real
meter answers.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from protocols.modbus import CompiledModel, Measurement, ModelCatalog
from protocols.reading import MEASURED_FIELDS, Reading
from simulators.clock import SimClock
from simulators.history import readings_between
from simulators.inventory import Customer, InventoryLine, customer_code, inventory_csv
from simulators.inventory import make_customer as _make_customer
from simulators.load import MeterLoad, Profile, UseChange

MAX_UNITS = 247
FRAMERS = {"tcp": FramerType.SOCKET, "rtu-over-tcp": FramerType.RTU}
THREE_PHASE_MODELS = frozenset({"sdm630"})


@dataclass(frozen=True)
class Gateway:
    index: int
    host: str
    port: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class ModbusMeter:
    serial: str
    model: str
    host: str
    port: int
    unit_id: int
    gateway: int
    customer: Customer


@dataclass(frozen=True)
class Served:
    """One snapshot a meter served: simulated time, wall time (``time.time()``), the values."""

    serial: str
    ts: datetime
    wall: float
    measurement: Measurement

    def reading(self) -> Reading:
        return self.measurement.at(self.serial, self.ts)


@dataclass
class RequestTimes:
    """One request a gateway received: when (monotonic), and when it answered (None: it did
    not)."""

    received: float
    answered: float | None = None


@dataclass
class _Fault:
    timeout: bool = False
    exception: int | None = None
    delay: float = 0.0


@dataclass
class _Image:
    """A model's registers per function code: (first address, registers)."""

    blocks: dict[int, tuple[int, list[int]]]


@dataclass
class _MeterRuntime:
    serial: str
    model: CompiledModel
    load: MeterLoad
    gateway: int
    fault: _Fault = field(default_factory=_Fault)
    snapshot_wall: float = -1.0e18
    image: _Image | None = None
    served: deque[Served] = field(default_factory=lambda: deque(maxlen=20_000))


@dataclass
class _GatewayRuntime:
    index: int
    host: str
    port: int
    devices: list[SimDevice]
    server: ModbusTcpServer | None = None
    received: int = 0
    drop_next: bool = False
    down: bool = False
    framing: str = "tcp"
    request_gap: float = 0.0
    last_answer: float = float("-inf")
    log: deque[RequestTimes] = field(default_factory=lambda: deque(maxlen=100_000))

    def trace_pdu(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        if not sending:
            self.received += 1
            now = time.monotonic()
            self.log.append(RequestTimes(now))
            if now - self.last_answer < self.request_gap:
                self.drop_next = True  # too soon after the previous answer: ignored
        return pdu

    def trace_packet(self, sending: bool, data: bytes) -> bytes:
        # Called synchronously right after the action of the request being answered, so the
        # flag always belongs to this response.
        if sending and self.drop_next:
            self.drop_next = False
            return b""
        if sending and data:
            self.last_answer = time.monotonic()
            if self.log and self.log[-1].answered is None:
                self.log[-1].answered = self.last_answer
        return data


def _layout(model: CompiledModel) -> dict[int, tuple[int, int]]:
    """Per function code, the span of registers a device of this model holds."""
    spans: dict[int, tuple[int, int]] = {}
    for r in model.requests:
        lo, hi = spans.get(r.function, (r.address, r.end))
        spans[r.function] = (min(lo, r.address), max(hi, r.end))
    return {fc: (lo, hi - lo) for fc, (lo, hi) in spans.items()}


def measurement_from(values: dict[str, float]) -> Measurement:
    """The load model's values → a (not yet quantized) Measurement with every extra."""
    fields = {k: values[k] for k in MEASURED_FIELDS if k in values}
    extra = {k: v for k, v in values.items() if k not in MEASURED_FIELDS}
    return Measurement(**fields, extra=extra)


class ModbusFleet:
    """``meters`` simulated meters over ``gateways`` TCP servers, deterministic under ``seed``.

    Meter *i* sits on gateway ``i % gateways`` and takes its models round-robin from ``models``.
    ``port=0`` binds every gateway to a free port; a given port P binds gateways to P, P+1, …
    """

    def __init__(
        self,
        meters: int = 10,
        gateways: int = 1,
        *,
        seed: int = 0,
        models: Sequence[str] = ("sdm120", "sdm630"),
        host: str = "127.0.0.1",
        port: int = 0,
        clock: SimClock | None = None,
        catalog: ModelCatalog | None = None,
        serial_prefix: str = "MB",
        customer_prefix: str = "PB0101",
        snapshot_max_age: float = 1.0,
        utc_offset_h: float = 7.0,
        framing: str = "tcp",
        request_gap: float = 0.0,
    ) -> None:
        if meters < 1 or gateways < 1:
            raise ValueError("a fleet needs at least one meter and one gateway")
        if meters > gateways * MAX_UNITS:
            raise ValueError(f"{meters} meters need at least {-(-meters // MAX_UNITS)} gateways")
        if not models:
            raise ValueError("no meter models given")
        if framing not in FRAMERS:
            raise ValueError(f"framing {framing!r} is not one of {', '.join(FRAMERS)}")
        if request_gap < 0:
            raise ValueError("a request gap cannot be negative")
        self.seed = seed
        self.clock = clock or SimClock()
        self.catalog = catalog or ModelCatalog()
        self.snapshot_max_age = snapshot_max_age
        compiled = [self.catalog.get(name) for name in models]
        self._gateways = [
            _GatewayRuntime(g, host, port + g if port else 0, [], framing=framing,
                            request_gap=request_gap)
            for g in range(gateways)
        ]  # fmt: skip
        self._meters: list[ModbusMeter] = []
        self._runtimes: dict[str, _MeterRuntime] = {}
        units = [0] * gateways
        for i in range(meters):
            g = i % gateways
            units[g] += 1
            model = compiled[i % len(compiled)]
            serial = f"{serial_prefix}-{model.name.upper()}-{i + 1:05d}"
            customer = _make_customer(seed, serial, customer_code(customer_prefix, i))
            phases = 3 if model.name in THREE_PHASE_MODELS else 1
            profile = Profile.seeded(seed, serial, phases=phases, utc_offset_h=utc_offset_h)
            self._meters.append(ModbusMeter(serial, model.name, host, 0, units[g], g, customer))
            self._runtimes[serial] = _MeterRuntime(serial, model, MeterLoad(profile), g)
        self._index = {m.serial: i for i, m in enumerate(self._meters)}
        for gw in self._gateways:
            gw.devices = [self._device(m) for m in self._meters if m.gateway == gw.index]
            # id 0 answers every unit id without a meter (its whole address space is valid, so the
            # action runs and answers 0x0B instead of pymodbus's "illegal address").
            gw.devices.append(
                SimDevice(
                    0,
                    simdata=[SimData(0, count=0x10000, datatype=DataType.REGISTERS)],
                    action=_no_target,
                )
            )
        self._started = False

    # -- the fleet ---------------------------------------------------------------------------
    @property
    def gateways(self) -> list[Gateway]:
        return [Gateway(g.index, g.host, g.port) for g in self._gateways]

    @property
    def meters(self) -> list[ModbusMeter]:
        """The meters with their gateway's actual port (known once started, or when given)."""
        ports = [g.port for g in self._gateways]
        return [
            ModbusMeter(m.serial, m.model, m.host, ports[m.gateway], m.unit_id, m.gateway,
                        m.customer)
            for m in self._meters
        ]  # fmt: skip

    def meter(self, serial: str) -> ModbusMeter:
        m = self._meters[self._index[serial]] if serial in self._index else None
        if m is None:
            raise KeyError(f"no simulated meter {serial!r}")
        port = self._gateways[m.gateway].port
        return ModbusMeter(m.serial, m.model, m.host, port, m.unit_id, m.gateway, m.customer)

    def requests(self, index: int) -> list[RequestTimes]:
        """Every request gateway ``index`` received (the last 100,000), oldest first."""
        return list(self._gateways[index].log)

    def model(self, serial: str) -> CompiledModel:
        return self._runtime(serial).model

    def inventory_csv(self) -> str:
        """The contract §6 CSV of the fleet (the gateways' ports must be known)."""
        if any(g.port == 0 for g in self._gateways):
            raise RuntimeError("start the fleet first: its gateways' ports are not known yet")
        framing = {g.index: g.framing for g in self._gateways}
        delay = {g.index: round(g.request_gap * 1000) for g in self._gateways}
        return inventory_csv(
            InventoryLine(m.customer, m.serial, "modbus", m.model, m.host, m.port, m.unit_id,
                          framing[m.gateway], delay[m.gateway])
            for m in self.meters
        )  # fmt: skip

    def write_inventory(self, path: Path | str) -> None:
        Path(path).write_text(self.inventory_csv(), encoding="utf-8")

    # -- truth -------------------------------------------------------------------------------
    def truth(self, serial: str, ts: datetime) -> Measurement:
        """Exactly what a poll of ``serial`` at simulated time ``ts`` decodes to."""
        rt = self._runtime(serial)
        return rt.model.quantize(measurement_from(rt.load.values(ts)))

    def reading(self, serial: str, ts: datetime) -> Reading:
        return self.truth(serial, ts).at(serial, ts)

    def served(self, serial: str) -> list[Served]:
        """Every snapshot the meter served, oldest first (the last 20,000)."""
        return list(self._runtime(serial).served)

    def history(
        self, serial: str, start: datetime, end: datetime, interval: float
    ) -> Iterator[Reading]:
        """Readings of ``serial`` at every multiple of ``interval`` seconds in [start, end): the
        same load model, so back-filled history and live polls agree."""
        load = self._runtime(serial).load
        return (
            r
            for r in readings_between(lambda ts: self.reading(serial, ts), start, end, interval)
            if not load.silent(r.ts)
        )

    # -- life cycle --------------------------------------------------------------------------
    async def start(self) -> None:
        for gw in self._gateways:
            await self._serve(gw)
        self._started = True

    async def stop(self) -> None:
        for gw in self._gateways:
            if gw.server is not None:
                await gw.server.shutdown()
                gw.server = None
        self._started = False

    async def __aenter__(self) -> ModbusFleet:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _serve(self, gw: _GatewayRuntime) -> None:
        server = ModbusTcpServer(
            gw.devices,
            framer=FRAMERS[gw.framing],
            address=(gw.host, gw.port),
            trace_pdu=gw.trace_pdu,
            trace_packet=gw.trace_packet,
        )
        try:
            await server.serve_forever(background=True)
        except RuntimeError as exc:
            raise OSError(
                f"simulated gateway {gw.index}: cannot listen on {gw.host}:{gw.port} "
                "(is the port in use?)"
            ) from exc
        if gw.port == 0:
            transport: Any = server.transport
            gw.port = int(transport.sockets[0].getsockname()[1])
        gw.server = server
        gw.down = False

    # -- faults ------------------------------------------------------------------------------
    async def fail_gateway(self, index: int) -> None:
        """The gateway goes away: connections are closed and new ones refused."""
        gw = self._gateways[index]
        if gw.server is not None:
            await gw.server.shutdown()
            gw.server = None
        gw.down = True

    async def restore_gateway(self, index: int) -> None:
        """The gateway is back on the same port."""
        gw = self._gateways[index]
        if gw.server is None:
            await self._serve(gw)

    def set_timeout(self, serial: str, on: bool = True) -> None:
        """The meter stops answering (the client times out); ``on=False`` brings it back."""
        self._runtime(serial).fault.timeout = on

    def set_exception(self, serial: str, code: int = ExcCodes.GATEWAY_NO_RESPONSE) -> None:
        """The meter's requests get Modbus exception ``code`` (1–8, 0x0A, 0x0B)."""
        try:
            ExcCodes(code)
        except ValueError:
            known = ", ".join(f"{c.value:#04x}" for c in ExcCodes)
            raise ValueError(f"{code!r} is not a Modbus exception code ({known})") from None
        self._runtime(serial).fault.exception = int(code)

    def set_delay(self, serial: str, seconds: float) -> None:
        """The meter answers ``seconds`` late (a slow meter or a long RS-485 line)."""
        if seconds < 0:
            raise ValueError("a delay cannot be negative")
        self._runtime(serial).fault.delay = seconds

    def set_delay_all(self, seconds: float) -> None:
        for serial in self._runtimes:
            self.set_delay(serial, seconds)

    def reset_register(self, serial: str, at: datetime | None = None) -> datetime:
        """The meter is replaced at ``at`` (default: now): its import register restarts at 0.
        Returns the reset time; ``truth`` accounts for it."""
        when = at or self.clock.now()
        self._runtime(serial).load.reset(when)
        self._runtime(serial).snapshot_wall = -1.0e18
        return when

    # -- validation faults (issue 14): what the register reads, as history and truth -------
    def inject_rollback(self, serial: str, at: datetime, kwh: float) -> None:
        """From ``at`` on, the register reads ``kwh`` less (no replacement is recorded)."""
        self._runtime(serial).load.steps.append((at, -abs(kwh)))

    def inject_spike(self, serial: str, at: datetime, kwh: float) -> None:
        """At ``at`` the register jumps ``kwh`` up and stays there."""
        self._runtime(serial).load.steps.append((at, abs(kwh)))

    def inject_stuck(self, serial: str, start: datetime, end: datetime) -> None:
        """The register does not move from ``start`` to ``end`` (the meter keeps answering)."""
        self.scale_use(serial, start, end, 0.0)

    def scale_use(self, serial: str, start: datetime, end: datetime, factor: float) -> None:
        """The meter counts ``factor`` × its load from ``start`` to ``end`` (high or low use)."""
        self._runtime(serial).load.changes.append(UseChange(start, end, factor))

    def inject_gap(self, serial: str, start: datetime, end: datetime) -> None:
        """The meter gives no reading in [start, end) (``history`` leaves those times out)."""
        self._runtime(serial).load.silences.append((start, end))

    def clear_faults(self, serial: str | None = None) -> None:
        """Clear timeouts, exceptions and delays (register resets are history and stay)."""
        for rt in [self._runtime(serial)] if serial else self._runtimes.values():
            rt.fault = _Fault()

    # -- serving -----------------------------------------------------------------------------
    def _runtime(self, serial: str) -> _MeterRuntime:
        try:
            return self._runtimes[serial]
        except KeyError:
            raise KeyError(f"no simulated meter {serial!r}") from None

    def _device(self, meter: ModbusMeter) -> SimDevice:
        rt = self._runtimes[meter.serial]
        layout = _layout(rt.model)
        gw = self._gateways[meter.gateway]

        async def action(
            fc: int,
            start_address: int,
            address: int,
            count: int,
            registers: list[int],
            set_values: list[int] | list[bool] | None,
        ) -> ExcCodes | None:
            return await self._answer(
                rt, gw, fc, start_address, address, count, registers, set_values
            )

        if len(layout) == 1:
            ((start, size),) = layout.values()
            return SimDevice(
                meter.unit_id,
                simdata=[SimData(start, count=size, datatype=DataType.REGISTERS)],
                action=action,
            )
        regs = {
            fc: [SimData(start, count=size, datatype=DataType.REGISTERS)]
            for fc, (start, size) in layout.items()
        }
        bits = [SimData(0, count=16, values=False, datatype=DataType.BITS)]
        return SimDevice(
            meter.unit_id,
            simdata=(
                bits,
                list(bits),
                regs.get(3, [SimData(0, datatype=DataType.REGISTERS)]),
                regs.get(4, [SimData(0, datatype=DataType.REGISTERS)]),
            ),
            action=action,
        )

    async def _answer(
        self,
        rt: _MeterRuntime,
        gw: _GatewayRuntime,
        fc: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        fault = rt.fault
        if fault.timeout or rt.load.silent(self.clock.now()):  # a gap: no answer
            gw.drop_next = True
            return None
        if fault.exception is not None:
            return ExcCodes(fault.exception)
        if set_values is not None:
            return ExcCodes.ILLEGAL_FUNCTION
        if count > rt.model.spec.max_registers:  # e.g. Eastron: at most 60 registers a request
            return ExcCodes.ILLEGAL_VALUE
        if fault.delay > 0:
            seen = gw.received
            await asyncio.sleep(fault.delay)
            if gw.received != seen:  # the client has moved on: this answer is too late
                gw.drop_next = True
                return None
        try:
            image = self._snapshot(rt, fc, address)
        except ValueError:  # a configured model whose registers cannot hold the value
            return ExcCodes.DEVICE_FAILURE
        if fc in image.blocks:
            first, values = image.blocks[fc]
            offset = first - start_address
            registers[offset : offset + len(values)] = values
        return None

    def _snapshot(self, rt: _MeterRuntime, fc: int, address: int) -> _Image:
        first = rt.model.requests[0]
        now = time.monotonic()
        fresh = (fc, address) == (first.function, first.address)
        if rt.image is None or fresh or now - rt.snapshot_wall > self.snapshot_max_age:
            ts = self.clock.now()
            values = measurement_from(rt.load.values(ts))
            blocks = rt.model.encode(values)
            measurement = rt.model.decode(blocks)
            spans: dict[int, tuple[int, list[int]]] = {
                fc_: (start, [0] * size) for fc_, (start, size) in _layout(rt.model).items()
            }
            for request, block in zip(rt.model.requests, blocks, strict=True):
                start, image = spans[request.function]
                image[request.address - start : request.end - start] = block
            rt.image = _Image(spans)
            rt.snapshot_wall = now
            rt.served.append(Served(rt.serial, ts, time.time(), measurement))
        return rt.image


async def _no_target(
    fc: int,
    start_address: int,
    address: int,
    count: int,
    registers: list[int],
    set_values: list[int] | list[bool] | None,
) -> ExcCodes | None:
    """Unit ids without a meter: the gateway reports that the target did not respond."""
    return ExcCodes.GATEWAY_NO_RESPONSE
