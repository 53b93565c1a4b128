"""The meter models Doxa knows, as data (one table per model, the shape ``spec.py`` documents).

Adding a model is adding a table here (or, without a release, to the TOML file named by
``DOXA_MODBUS_MODELS``) plus a golden case folder ``tests/cases/<model>/``. Addresses are the
manual's 3xxxx register number − 30001. ``generic`` is listed in :data:`MODEL_NAMES` but has no
table here: its map comes from configuration.
"""

from __future__ import annotations

from typing import Any

_EASTRON = {
    "function": 4,
    "data_type": "float32",
    "byte_order": "ABCD",
    # Eastron meters answer at most 30 values (60 registers) per request, else an exception.
    "max_registers": 60,
    "max_gap": 60,
}

BUILTIN_MAPS: dict[str, dict[str, Any]] = {
    "sdm120": {
        **_EASTRON,
        "description": "Eastron SDM120 single-phase meter (Modbus RTU behind a TCP gateway)",
        "quantities": {
            "voltage_v": {"address": 0x0000, "unit": "V"},
            "current_a": {"address": 0x0006, "unit": "A"},
            "power_w": {"address": 0x000C, "unit": "W"},
            "frequency_hz": {"address": 0x0046, "unit": "Hz"},
            "energy_import_kwh": {"address": 0x0048, "unit": "kWh"},
            "energy_export_kwh": {"address": 0x004A, "unit": "kWh"},
        },
    },
    "sdm630": {
        **_EASTRON,
        "description": (
            "Eastron SDM630 three-phase meter: phase 1 voltage, current and power (contract §5); "
            "the other phases and the total system power as extras"
        ),
        "quantities": {
            "voltage_v": {"address": 0x0000, "unit": "V"},
            "voltage_l2": {"address": 0x0002, "unit": "V"},
            "voltage_l3": {"address": 0x0004, "unit": "V"},
            "current_a": {"address": 0x0006, "unit": "A"},
            "current_l2": {"address": 0x0008, "unit": "A"},
            "current_l3": {"address": 0x000A, "unit": "A"},
            # Contract §5 fixes the stored power at 0x000C (phase 1) for both Eastron models; the
            # three-phase total (0x0034) is decoded as an extra beside the other phases.
            "power_w": {"address": 0x000C, "unit": "W"},
            "power_l2": {"address": 0x000E, "unit": "W"},
            "power_l3": {"address": 0x0010, "unit": "W"},
            "power_total_w": {"address": 0x0034, "unit": "W"},
            "frequency_hz": {"address": 0x0046, "unit": "Hz"},
            "energy_import_kwh": {"address": 0x0048, "unit": "kWh"},
            "energy_export_kwh": {"address": 0x004A, "unit": "kWh"},
        },
    },
    "ddsu666": {
        "description": "CHINT DDSU666 single-phase meter (power register in kW)",
        "function": 4,
        "data_type": "float32",
        "byte_order": "ABCD",
        "max_registers": 60,
        "max_gap": 16,
        "quantities": {
            "voltage_v": {"address": 0x2000, "unit": "V"},
            "current_a": {"address": 0x2002, "unit": "A"},
            "power_w": {"address": 0x2004, "unit": "kW"},
            "frequency_hz": {"address": 0x200E, "unit": "Hz"},
            "energy_import_kwh": {"address": 0x4000, "unit": "kWh"},
            "energy_export_kwh": {"address": 0x400A, "unit": "kWh"},
        },
    },
}

GENERIC = "generic"
"""The model whose register map comes from configuration."""

MODEL_NAMES: frozenset[str] = frozenset({*BUILTIN_MAPS, GENERIC})
"""Every model name the inventory accepts."""
