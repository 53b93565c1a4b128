"""The one error tree of everything that can go wrong between a meter and a Reading.

::

    MeterError                   base: catch this to record "this meter/message failed" and go on
    ├── TransportError           no answer, timeout, connection refused or lost (raised by I/O code,
    │                            e.g. the collector normalising pymodbus's ModbusIOException and
    │                            ConnectionException; protocols/ itself does no I/O)
    ├── DeviceException          the device answered with a Modbus exception; ``.code`` is the
    │                            exception code (2 illegal address, 4 device failure,
    │                            0x0B gateway target failed to respond, …)
    ├── DecodeError              registers that do not decode: NaN or infinity, a short or
    │                            malformed block, a value outside 0–65535, negative energy
    └── PayloadError             an MQTT payload that cannot be used; ``.reason`` is one sentence a
                                 person can read (it is stored with the rejected message)

Configuration mistakes in a register map are not meter failures: they raise
:class:`protocols.modbus.ModelConfigError` (a ``ValueError``) when the map is compiled, at start-up.
"""

from __future__ import annotations


class MeterError(Exception):
    """A reading could not be obtained from one meter or one message."""


class TransportError(MeterError):
    """No answer: timeout, connection refused or lost."""


class DeviceException(MeterError):
    """The device (or its gateway) answered with a Modbus exception response."""

    def __init__(self, code: int, message: str | None = None) -> None:
        self.code = code
        super().__init__(message or f"Modbus exception {code:#04x} ({exception_name(code)})")


class DecodeError(MeterError):
    """Registers that do not decode into a usable value."""


class PayloadError(MeterError):
    """An MQTT payload that cannot be turned into readings."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


_EXCEPTION_NAMES = {
    0x01: "illegal function",
    0x02: "illegal data address",
    0x03: "illegal data value",
    0x04: "server device failure",
    0x05: "acknowledge",
    0x06: "server device busy",
    0x08: "memory parity error",
    0x0A: "gateway path unavailable",
    0x0B: "gateway target device failed to respond",
}


def exception_name(code: int) -> str:
    """The Modbus specification's name of an exception code ("unknown" if it has none)."""
    return _EXCEPTION_NAMES.get(code, "unknown")
