"""Modbus meter register maps, read planning and register codecs (pure, no I/O).

``get_model("sdm120")`` (or ``ModelCatalog.from_toml(text).get(name)`` with configured models)
gives a :class:`CompiledModel`: ``.requests`` are the planned reads ``(function, address,
count)``; ``.decode(blocks)`` turns the responses, one register list per request in plan order,
into a :class:`Measurement` or raises :class:`protocols.errors.DecodeError`;
``Measurement.at(serial, ts)`` makes the Reading. ``.encode(measurement)`` is the inverse, for the
simulators.
"""

from protocols.modbus.catalog import ModelCatalog, get_model, load_models, load_models_toml
from protocols.modbus.compiled import CompiledModel, Measurement, compile_model
from protocols.modbus.datatypes import ByteOrder, DataType, decode_value, encode_value
from protocols.modbus.models import BUILTIN_MAPS, GENERIC, MODEL_NAMES
from protocols.modbus.plan import MODBUS_MAX_REGISTERS, ReadRequest, plan_reads
from protocols.modbus.spec import ModelConfigError, ModelSpec, QuantitySpec, parse_model

__all__ = [
    "BUILTIN_MAPS",
    "GENERIC",
    "MODBUS_MAX_REGISTERS",
    "MODEL_NAMES",
    "ByteOrder",
    "CompiledModel",
    "DataType",
    "Measurement",
    "ModelCatalog",
    "ModelConfigError",
    "ModelSpec",
    "QuantitySpec",
    "ReadRequest",
    "compile_model",
    "decode_value",
    "encode_value",
    "get_model",
    "load_models",
    "load_models_toml",
    "parse_model",
    "plan_reads",
]
