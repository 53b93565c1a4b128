"""``doxa simulate``: simulated Modbus and MQTT meters for the demo, tests and trying things out.

Both run in the foreground until SIGINT/SIGTERM (or ``--duration``) and are deterministic under
``--seed``. ``--inventory-out`` writes the fleet's inventory CSV for ``doxa meters import``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
from datetime import datetime
from pathlib import Path

import click

from doxa.app import App
from doxa.errors import BadInput
from simulators.clock import SimClock

_PATH = click.Path(dir_okay=False, path_type=Path, allow_dash=True)


@click.group("simulate")
def command() -> None:
    """Simulated meters (Modbus gateways, MQTT publishers) with faults on demand."""


def _clock(start: str | None, speed: float) -> SimClock:
    if speed <= 0:
        raise BadInput("--speed must be positive")
    if start is None:
        return SimClock(speed=speed)
    try:
        at = datetime.fromisoformat(start)
    except ValueError:
        raise BadInput(f"--start {start!r} is not an ISO 8601 time") from None
    if at.tzinfo is None:
        raise BadInput(f"--start {start!r} needs a UTC offset, e.g. +07:00")
    return SimClock(at, speed)


def _write_inventory(path: Path | None, text: str) -> None:
    if path is None:
        return
    if str(path) == "-":
        click.echo(text, nl=False)
        return
    try:
        # Written under another name, then renamed: a reader never sees half a file.
        partial = path.with_name(f".{path.name}.partial")
        partial.write_text(text, encoding="utf-8")
        partial.replace(path)
    except OSError as exc:
        raise BadInput(f"cannot write {path}: {exc.strerror}") from exc
    click.echo(f"inventory written to {path}", err=True)


async def _wait(duration: float | None) -> None:
    """Until SIGINT/SIGTERM, or ``duration`` seconds."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=duration)
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


@command.command("modbus")
@click.option("--meters", type=click.IntRange(1), required=True, help="How many meters.")
@click.option("--gateways", type=click.IntRange(1), default=1, show_default=True)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="First gateway's port (the next ones follow); 0 picks free ports.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--models",
    default="sdm120,sdm630",
    show_default=True,
    help="Meter models, given to the meters in turn.",
)
@click.option("--inventory-out", type=_PATH, help="Write the fleet's inventory CSV here.")
@click.option(
    "--speed",
    type=float,
    default=1.0,
    show_default=True,
    help="Simulated seconds per second (1440: a day in a minute).",
)
@click.option("--start", help="Simulated start time, ISO 8601 with offset (default: now).")
@click.option(
    "--fault",
    "faults",
    multiple=True,
    metavar="KIND:TARGET[:ARG]",
    help="timeout:T, exception:T[:CODE], delay:T:SECONDS, reset:T, gateway-down:N; "
    "T is a serial or a 1-based position. Repeatable.",
)
@click.option("--duration", type=click.FloatRange(0), help="Stop after this many seconds.")
@click.option(
    "--framing",
    type=click.Choice(["tcp", "rtu-over-tcp"]),
    default="tcp",
    show_default=True,
    help="MBAP, or Modbus RTU frames with CRC over TCP (a serial-to-TCP converter).",
)
@click.option(
    "--request-gap-ms",
    type=click.IntRange(0, 60_000),
    default=0,
    show_default=True,
    help="Ignore a request sooner than this after the previous answer, like a cheap RS-485 "
    "gateway (the inventory written asks the collector for that request_delay_ms).",
)
@click.pass_obj
def modbus_command(
    app: App,
    meters: int,
    gateways: int,
    port: int,
    host: str,
    seed: int,
    models: str,
    inventory_out: Path | None,
    speed: float,
    start: str | None,
    faults: tuple[str, ...],
    duration: float | None,
    framing: str,
    request_gap_ms: int,
) -> None:
    """Run simulated Modbus TCP gateways with meters behind them."""
    from simulators.faults import apply_modbus_fault
    from simulators.modbus import ModbusFleet

    catalog = app.model_catalog()
    names = [m.strip().lower() for m in models.split(",") if m.strip()]
    unknown = [n for n in names if n not in catalog.names]
    if unknown or not names:
        raise BadInput(
            f"--models: unknown model(s) {', '.join(unknown) or '(none given)'} "
            f"(known: {', '.join(sorted(catalog.names))})"
        )
    try:
        fleet = ModbusFleet(meters, gateways, seed=seed, models=names, host=host, port=port,
                            clock=_clock(start, speed), catalog=catalog, framing=framing,
                            request_gap=request_gap_ms / 1000)  # fmt: skip
    except ValueError as exc:
        raise BadInput(str(exc)) from exc

    async def run() -> None:
        await fleet.start()
        try:
            for spec in faults:
                try:
                    click.echo(f"fault: {await apply_modbus_fault(fleet, spec)}", err=True)
                except (ValueError, KeyError) as exc:
                    raise BadInput(f"--fault {exc}") from exc
            _write_inventory(inventory_out, fleet.inventory_csv())
            for g in fleet.gateways:
                count = sum(1 for m in fleet.meters if m.gateway == g.index)
                click.echo(f"gateway {g.index}: {g.address} with {count} meter(s)", err=True)
            click.echo(f"simulating {meters} Modbus meter(s); Ctrl-C stops", err=True)
            await _wait(duration)
        finally:
            await fleet.stop()

    asyncio.run(run())


@command.command("mqtt")
@click.option("--meters", type=click.IntRange(1), required=True, help="How many meters.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["native", "tasmota", "mix"]),
    default="mix",
    show_default=True,
    help="Payload format; mix alternates the two.",
)
@click.option(
    "--interval",
    type=click.FloatRange(min=0, min_open=True),
    default=60.0,
    show_default=True,
    help="Simulated seconds between a meter's readings.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--inventory-out", type=_PATH, help="Write the fleet's inventory CSV here.")
@click.option(
    "--speed", type=float, default=1.0, show_default=True, help="Simulated seconds per second."
)
@click.option("--start", help="Simulated start time, ISO 8601 with offset (default: now).")
@click.option("--rounds", type=click.IntRange(0), help="Stop after this many publishing rounds.")
@click.option("--duration", type=click.FloatRange(0), help="Stop after this many seconds.")
@click.option(
    "--per-connection",
    type=click.IntRange(1),
    default=500,
    show_default=True,
    help="Meters sharing one MQTT connection.",
)
@click.option(
    "--duplicates",
    type=click.FloatRange(0, 1),
    default=0.0,
    help="Chance per meter and round of sending its message twice.",
)
@click.option(
    "--out-of-order",
    type=click.FloatRange(0, 1),
    default=0.0,
    help="Chance per meter and round of re-sending its last readings newest first.",
)
@click.option(
    "--malformed",
    type=click.FloatRange(0, 1),
    default=0.0,
    help="Chance per meter and round of a malformed payload.",
)
@click.option(
    "--unknown",
    type=click.FloatRange(0, 1),
    default=0.0,
    help="Chance per round of a message from a serial not in the inventory.",
)
@click.option(
    "--offline",
    "offline",
    multiple=True,
    metavar="TARGET:ROUNDS",
    help="Meter (serial or 1-based position) silent for ROUNDS rounds, then "
    "publishing its backlog. Repeatable.",
)
@click.pass_obj
def mqtt_command(
    app: App,
    meters: int,
    fmt: str,
    interval: float,
    seed: int,
    inventory_out: Path | None,
    speed: float,
    start: str | None,
    rounds: int | None,
    duration: float | None,
    per_connection: int,
    duplicates: float,
    out_of_order: float,
    malformed: float,
    unknown: float,
    offline: tuple[str, ...],
) -> None:
    """Run simulated MQTT meters publishing to DOXA_MQTT_URL at QoS 1."""
    from simulators.faults import resolve_target
    from simulators.mqtt import MALFORMED_KINDS, MqttFleet

    formats = ("native", "tasmota") if fmt == "mix" else (fmt,)
    try:
        fleet = MqttFleet(app.settings.mqtt_url, meters, seed=seed, formats=formats,
                          interval=interval, clock=_clock(start, speed), tz=app.settings.timezone,
                          meters_per_connection=per_connection, record=False)  # fmt: skip
    except ValueError as exc:
        raise BadInput(str(exc)) from exc
    serials = [m.serial for m in fleet.meters]
    silent: dict[str, int] = {}
    for spec in offline:
        target, _, count = spec.rpartition(":")
        try:
            serial = resolve_target(serials, target)
        except ValueError as exc:
            raise BadInput(f"--offline {exc}") from exc
        if not count.isdigit():
            raise BadInput(f"--offline {spec!r}: expected TARGET:ROUNDS")
        silent[serial] = int(count)
    rng = random.Random(f"doxa-faults:{seed}")
    _write_inventory(inventory_out, fleet.inventory_csv())

    def one_round(ts: datetime) -> None:
        # A meter silent for K rounds misses K rounds, then sends its backlog with the next one.
        for serial, left in list(silent.items()):
            if left > 0:
                fleet.go_offline(serial)
                silent[serial] = left - 1
            else:
                fleet.come_online(serial)
                del silent[serial]
        fleet.publish_round(ts)
        for serial in serials:
            if serial in fleet.offline:
                continue
            if rng.random() < duplicates:
                fleet.publish_duplicate(serial)
            if rng.random() < out_of_order:
                fleet.publish_out_of_order(serial)
            if rng.random() < malformed:
                fleet.publish_malformed(serial, rng.choice(MALFORMED_KINDS))
        if rng.random() < unknown:
            fleet.publish_unknown()

    async def run() -> int:
        await asyncio.to_thread(fleet.connect)
        click.echo(
            f"simulating {meters} MQTT meter(s) ({fmt}) on {app.settings.mqtt_url} over "
            f"{fleet.connections} connection(s); Ctrl-C stops",
            err=True,
        )
        stop = asyncio.Event()
        runner = asyncio.create_task(fleet.run(stop, rounds, publish=one_round))
        waiter = asyncio.create_task(_wait(duration))
        try:
            await asyncio.wait({runner, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.set()
            waiter.cancel()
            done = await runner
            await asyncio.to_thread(fleet.close)
        return done

    done = asyncio.run(run())
    click.echo(f"published {fleet.published_count} message(s) in {done} round(s)", err=True)
