"""Polling one Modbus TCP gateway: one connection, its meters read one after another.

A gateway has options (contract §11b, from the inventory): its framing — MBAP (``tcp``) or Modbus
RTU frames with their CRC over the TCP socket (``rtu-over-tcp``, pymodbus' RTU framer on a TCP
client), as cheap serial-to-TCP converters speak — the pause it needs between an answer and the
next request (many cheap RS-485 gateways drop a request that comes too soon), and its own
per-request timeout.

Meters behind a gateway share one RS-485 bus, so requests to a gateway are sequential; the
scheduler polls different gateways concurrently. Each request has a timeout and one retry
(pymodbus's ``retries``); pymodbus's two error channels (exceptions and ``isError()`` responses)
are normalised into the :mod:`protocols.errors` tree here. A failing meter never stops the cycle:
its failure is recorded and the next meter is read. After a transport error the connection is
closed and opened again once; if the gateway stays unreachable, the rest of the cycle is recorded
as ``transport_error`` without waiting on each meter.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.framer import FramerType

from collector.backoff import Backoff
from protocols.errors import DecodeError, DeviceException, TransportError
from protocols.modbus import CompiledModel
from protocols.reading import Reading

log = logging.getLogger(__name__)


class PollTimeout(TransportError):
    """The meter (or its gateway on its behalf) did not answer in time, retry included."""


FRAMERS = {"tcp": FramerType.SOCKET, "rtu-over-tcp": FramerType.RTU}


@dataclass(frozen=True)
class GatewayOptions:
    """How to talk to one gateway: framing, pause between answer and request, timeout (s)."""

    framing: str = "tcp"
    request_delay: float = 0.0
    timeout: float = 1.0


@dataclass(frozen=True)
class MeterTarget:
    """A meter to poll: its id and serial, where it is on the bus, and its compiled model."""

    meter_id: int
    serial: str
    unit_id: int
    model: CompiledModel


@dataclass(frozen=True, slots=True)
class PollOutcome:
    """One row of ``poll_outcomes``, plus the meter's failures in a row (for meter_status)."""

    ts: datetime
    meter_id: int
    gateway: str
    outcome: str  # ok, timeout, exception, decode_error, transport_error, backoff
    exception_code: int | None
    latency_ms: float | None
    detail: str | None
    consecutive_failures: int


class GatewayPoller:
    """Reads every meter of one gateway per :meth:`poll` call."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        timeout: float,
        retries: int,
        backoff: Backoff,
        options: GatewayOptions | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.gateway = f"{host}:{port}"
        self.options = options or GatewayOptions(timeout=timeout)
        self.timeout = self.options.timeout
        self.retries = retries
        self.backoff = backoff
        self.targets: tuple[MeterTarget, ...] = ()
        self._client: AsyncModbusTcpClient | None = None
        self._failures: dict[int, int] = {}  # failed polls in a row, any reason
        self._reachable = True
        self._last_answer = float("-inf")  # loop time the previous request ended
        self._stale = False  # the options changed: reconnect at the next cycle

    def reconfigure(self, options: GatewayOptions) -> None:
        """New gateway options (re-imported inventory): the next cycle reconnects with them (a
        cycle in flight finishes on its connection)."""
        self.options = options
        self.timeout = options.timeout
        self._stale = True

    def set_targets(self, targets: Sequence[MeterTarget]) -> None:
        self.targets = tuple(sorted(targets, key=lambda t: t.unit_id))
        ids = {t.meter_id for t in self.targets}
        self.backoff.forget_except(ids)
        self._failures = {k: v for k, v in self._failures.items() if k in ids}

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- one cycle ------------------------------------------------------------------------------

    async def poll(
        self,
        on_reading: Callable[[Reading], None],
        on_outcome: Callable[[PollOutcome], None],
        should_stop: Callable[[], bool] = lambda: False,
    ) -> None:
        """Read every meter once, in unit-id order; readings and outcomes go to the callbacks as
        each meter is done (a graceful stop ends the cycle between two meters)."""
        targets = self.targets
        error = await self._ensure_connected()
        for i, target in enumerate(targets):
            if should_stop():
                return
            if error is not None:
                for rest in targets[i:]:
                    on_outcome(self._outcome(rest, "transport_error", None, None, error))
                return
            if self.backoff.should_skip(target.meter_id):
                on_outcome(
                    self._outcome(
                        target,
                        "backoff",
                        None,
                        None,
                        f"skipped after {self.backoff.failures(target.meter_id)} failed polls",
                        count=False,
                    )
                )
                continue
            started = time.monotonic()
            try:
                reading = await self._read_meter(target)
            except PollTimeout as exc:
                self._meter_failed(target, on_outcome, "timeout", None, started, str(exc))
            except DeviceException as exc:
                self._meter_failed(target, on_outcome, "exception", exc.code, started, str(exc))
            except DecodeError as exc:
                self._meter_failed(target, on_outcome, "decode_error", None, started, str(exc))
            except TransportError as exc:
                on_outcome(self._outcome(target, "transport_error", None, started, str(exc)))
                self.close()
                error = await self._ensure_connected()
            else:
                latency = (time.monotonic() - started) * 1000
                if self._failures.pop(target.meter_id, 0):
                    log.info("meter %s on %s answers again", target.serial, self.gateway)
                self.backoff.succeeded(target.meter_id)
                on_reading(reading)
                on_outcome(
                    PollOutcome(
                        reading.ts, target.meter_id, self.gateway, "ok", None, latency, None, 0
                    )
                )

    def _meter_failed(
        self,
        target: MeterTarget,
        on_outcome: Callable[[PollOutcome], None],
        outcome: str,
        code: int | None,
        started: float,
        detail: str,
    ) -> None:
        skip = self.backoff.failed(target.meter_id)
        if skip:
            detail = f"{detail}; skipped for the next {skip} cycle(s)"
        on_outcome(self._outcome(target, outcome, code, started, detail))

    def _outcome(
        self,
        target: MeterTarget,
        outcome: str,
        code: int | None,
        started: float | None,
        detail: str,
        count: bool = True,
    ) -> PollOutcome:
        failures = self._failures.get(target.meter_id, 0)
        if count:
            failures += 1
            self._failures[target.meter_id] = failures
            if failures == 1:
                log.warning("meter %s on %s: %s", target.serial, self.gateway, detail)
        latency = None if started is None else (time.monotonic() - started) * 1000
        return PollOutcome(
            datetime.now(UTC),
            target.meter_id,
            self.gateway,
            outcome,
            code,
            latency,
            detail,
            failures,
        )

    # -- I/O -------------------------------------------------------------------------------------

    async def _ensure_connected(self) -> str | None:
        """Connect if needed; None when connected, else why not (logged on transitions)."""
        if self._client is not None and self._client.connected and not self._stale:
            return None
        self.close()
        self._stale = False
        client = AsyncModbusTcpClient(
            self.host,
            port=self.port,
            framer=FRAMERS[self.options.framing],
            timeout=self.timeout,
            retries=self.retries,
            reconnect_delay=0,  # we reconnect ourselves, once per cycle at most
            name=f"gateway {self.gateway}",
        )
        try:
            connected = await client.connect()
        except (OSError, ModbusException) as exc:
            connected, reason = False, str(exc)
        else:
            reason = "connection refused or timed out"
        if not connected:
            client.close()
            if self._reachable:
                log.warning("gateway %s unreachable: %s", self.gateway, reason)
                self._reachable = False
            return f"gateway {self.gateway} unreachable: {reason}"
        if not self._reachable:
            log.info("gateway %s reachable again", self.gateway)
            self._reachable = True
        self._client = client
        return None

    async def _read_meter(self, target: MeterTarget) -> Reading:
        blocks = [
            await self._read(request.function, request.address, request.count, target.unit_id)
            for request in target.model.requests
        ]
        ts = datetime.now(UTC)
        return target.model.decode(blocks).at(target.serial, ts)

    async def _read(self, function: int, address: int, count: int, unit: int) -> list[int]:
        client = self._client
        if client is None:
            raise TransportError(f"not connected to {self.gateway}")
        loop = asyncio.get_running_loop()
        if self.options.request_delay > 0:
            wait = self._last_answer + self.options.request_delay - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
        try:
            return await self._request(client, function, address, count, unit)
        finally:
            self._last_answer = loop.time()

    async def _request(
        self, client: AsyncModbusTcpClient, function: int, address: int, count: int, unit: int
    ) -> list[int]:
        try:
            if function == 4:
                response = await client.read_input_registers(address, count=count, device_id=unit)
            elif function == 3:
                response = await client.read_holding_registers(address, count=count, device_id=unit)
            else:
                raise DecodeError(f"function code {function} is not a register read")
        except ModbusIOException as exc:
            raise PollTimeout(
                f"no answer from unit {unit} at {address:#06x} within {self.timeout:g} s "
                f"(tried {self.retries + 1}×)"
            ) from exc
        except ConnectionException as exc:
            raise TransportError(f"connection to {self.gateway} lost: {exc}") from exc
        if response.isError():
            raise DeviceException(response.exception_code)
        return list(response.registers)
