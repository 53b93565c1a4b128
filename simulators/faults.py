"""Fault specifications as text, for the CLI (``--fault KIND:TARGET[:ARG]``) and scripts.

Modbus: ``timeout:T`` (no answer), ``exception:T[:CODE]`` (default 0x0B), ``delay:T:SECONDS``,
``reset:T`` (register reset now), ``gateway-down:INDEX`` (0-based); the validation faults
``rollback:T:KWH``, ``spike:T:KWH`` (now), ``stuck:T:HOURS`` and ``gap:T:HOURS`` (from now).
MQTT: ``offline:T:ROUNDS``.
A target T is a meter serial or its 1-based position in the fleet.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from simulators.modbus import ModbusFleet

MODBUS_KINDS = (
    "timeout", "exception", "delay", "reset", "gateway-down", "rollback", "spike", "stuck", "gap"
)  # fmt: skip


def resolve_target(serials: Sequence[str], target: str) -> str:
    """A serial, or a 1-based position in ``serials``."""
    if target in serials:
        return target
    if target.isdigit() and 1 <= int(target) <= len(serials):
        return serials[int(target) - 1]
    raise ValueError(f"{target!r} is neither a meter serial nor a position 1–{len(serials)}")


def _number(text: str, what: str) -> float:
    try:
        return float(int(text, 0)) if text.lower().startswith("0x") else float(text)
    except ValueError:
        raise ValueError(f"{what} {text!r} is not a number") from None


async def apply_modbus_fault(fleet: ModbusFleet, spec: str) -> str:
    """Apply one fault spec to a running fleet; returns a sentence saying what was done."""
    kind, _, rest = spec.partition(":")
    args = rest.split(":") if rest else []
    serials = [m.serial for m in fleet.meters]
    if kind == "gateway-down":
        if len(args) != 1 or not args[0].isdigit() or int(args[0]) >= len(fleet.gateways):
            raise ValueError(
                f"{spec!r}: expected gateway-down:INDEX with INDEX 0–{len(fleet.gateways) - 1}"
            )
        await fleet.fail_gateway(int(args[0]))
        return f"gateway {args[0]} is down"
    if kind not in MODBUS_KINDS:
        raise ValueError(f"{spec!r}: unknown fault {kind!r} (one of {', '.join(MODBUS_KINDS)})")
    if not args:
        raise ValueError(f"{spec!r}: expected {kind}:TARGET…")
    serial = resolve_target(serials, args[0])
    if kind == "timeout" and len(args) == 1:
        fleet.set_timeout(serial)
        return f"{serial} does not answer"
    if kind == "exception" and len(args) in (1, 2):
        code = int(_number(args[1], "exception code")) if len(args) == 2 else 0x0B
        fleet.set_exception(serial, code)
        return f"{serial} answers exception {code:#04x}"
    if kind == "delay" and len(args) == 2:
        seconds = _number(args[1], "delay")
        fleet.set_delay(serial, seconds)
        return f"{serial} answers {seconds:g} s late"
    if kind in ("rollback", "spike", "stuck", "gap") and len(args) == 2:
        amount = _number(args[1], "kWh" if kind in ("rollback", "spike") else "hours")
        now = fleet.clock.now()
        if kind == "rollback":
            fleet.inject_rollback(serial, now, amount)
            return f"{serial} register runs back {amount:g} kWh"
        if kind == "spike":
            fleet.inject_spike(serial, now, amount)
            return f"{serial} register jumps {amount:g} kWh"
        until = now + timedelta(hours=amount)
        if kind == "stuck":
            fleet.inject_stuck(serial, now, until)
            return f"{serial} register stuck until {until.isoformat()}"
        fleet.inject_gap(serial, now, until)
        return f"{serial} silent until {until.isoformat()}"
    if kind == "reset" and len(args) == 1:
        when = fleet.reset_register(serial)
        return f"{serial} register reset at {when.isoformat()}"
    raise ValueError(f"{spec!r}: wrong arguments for {kind}")
