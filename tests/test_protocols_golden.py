"""Golden cases: register dumps of real meter layouts → expected values (tests/cases/*/*.json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from protocols.errors import DecodeError
from protocols.modbus import CompiledModel, ModelCatalog

CASES = sorted((Path(__file__).parent / "cases").glob("*/*.json"))


def _model(case: dict[str, Any]) -> CompiledModel:
    if "config" in case:
        return ModelCatalog.from_config({case["model"]: case["config"]}).get(case["model"])
    return ModelCatalog().get(case["model"])


def _blocks(case: dict[str, Any], model: CompiledModel) -> list[list[int]]:
    """The planned requests' responses, cut from the register dump."""
    dump: dict[int, int] = {}
    for start, words in case["registers"].items():
        for i, word in enumerate(words.split()):
            dump[int(start, 0) + i] = int(word, 16)
    blocks = []
    for request in model.requests:
        assert request.function == case["function"]
        missing = [a for a in range(request.address, request.end) if a not in dump]
        assert not missing, f"the dump lacks registers {missing} of {request}"
        blocks.append([dump[a] for a in range(request.address, request.end)])
    return blocks


def test_there_are_cases_for_every_builtin_model() -> None:
    folders = {p.parent.name for p in CASES}
    assert {"sdm120", "sdm630", "ddsu666", "generic"} <= folders


@pytest.mark.parametrize("path", CASES, ids=[f"{p.parent.name}/{p.stem}" for p in CASES])
def test_golden_case(path: Path) -> None:
    case = json.loads(path.read_text(encoding="utf-8"))
    model = _model(case)
    blocks = _blocks(case, model)
    if "error" in case:
        assert case["error"] == "DecodeError"
        with pytest.raises(DecodeError, match=case["error_contains"]):
            model.decode(blocks)
        return
    measurement = model.decode(blocks)
    expected = dict(case["expected"])
    extra = expected.pop("extra", {})
    for name, value in expected.items():
        assert getattr(measurement, name) == pytest.approx(value, rel=1e-7, abs=1e-9), name
    assert dict(measurement.extra) == pytest.approx(extra, rel=1e-7)
    # Unnamed fields stay unreported.
    for name in {"energy_export_kwh", "power_w", "voltage_v", "current_a", "frequency_hz"} - set(
        expected
    ):
        assert getattr(measurement, name) is None
