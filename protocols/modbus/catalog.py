"""Compiled models by name: the built-in maps, plus models from configuration (``generic``).

The composition root reads the configuration file and passes its text or table here; this module
does no I/O. Everything is validated and compiled when the catalog is built, never per poll.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from functools import cache
from typing import Any

from protocols.modbus.compiled import CompiledModel, compile_model
from protocols.modbus.models import BUILTIN_MAPS, GENERIC
from protocols.modbus.spec import ModelConfigError, parse_model


def load_models(tables: Mapping[str, Any]) -> dict[str, CompiledModel]:
    """Models from configuration (``{name: table}``) compiled; every problem reported at once."""
    problems: list[str] = []
    models: dict[str, CompiledModel] = {}
    for name, table in tables.items():
        try:
            models[name] = compile_model(parse_model(name, table))
        except ModelConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ModelConfigError(problems)
    return models


def load_models_toml(text: str) -> dict[str, CompiledModel]:
    """The same from the text of a TOML file whose top-level tables are models."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ModelConfigError([f"not valid TOML: {exc}"]) from None
    return load_models(data)


@cache
def _builtin() -> dict[str, CompiledModel]:
    return load_models(BUILTIN_MAPS)


class ModelCatalog:
    """Name → CompiledModel: the built-in models overlaid with configured ones."""

    def __init__(self, configured: Mapping[str, CompiledModel] | None = None) -> None:
        self._models = {**_builtin(), **(configured or {})}

    @classmethod
    def from_config(cls, tables: Mapping[str, Any]) -> ModelCatalog:
        return cls(load_models(tables))

    @classmethod
    def from_toml(cls, text: str) -> ModelCatalog:
        return cls(load_models_toml(text))

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self._models)

    def get(self, name: str) -> CompiledModel:
        """The compiled model; ModelConfigError (a ValueError) naming the fix if unknown."""
        try:
            return self._models[name]
        except KeyError:
            if name == GENERIC:
                raise ModelConfigError(
                    [
                        "generic: the generic model has no register map; give one in the TOML "
                        "file named by DOXA_MODBUS_MODELS (a [generic] table)"
                    ]
                ) from None
            known = ", ".join(sorted(self._models))
            raise ModelConfigError([f"{name}: unknown meter model (known: {known})"]) from None


def get_model(name: str) -> CompiledModel:
    """A built-in model by name (configured models: use a :class:`ModelCatalog`)."""
    return ModelCatalog().get(name)
