"""Intake-bounds benchmark (issue 20): what the hostile-input checks cost per message, beside a
bare ``json.loads`` of the same payloads, in the same run. CPU only (no broker, no database).

* **Ceiling**: ``json.loads`` of each payload — the least any JSON intake can do.
* **Doxa, typical**: ``parse_payload`` (size and nesting bounds, strict numbers and times) and
  ``collector.intake.impossible`` (register, power, horizon) on every reading: what a message
  costs between the socket and the writer's ``COPY``.
* **Doxa, backlogs**: the same for native arrays of 100 readings (the nesting check then scans
  the text, since it holds more than 32 brackets).
* **Hostile**: 4 MiB of ``[`` (refused before parsing) and a 988-level nested value, beside
  ``json.loads`` failing or succeeding on them.

``--quick`` uses 5,000 messages (20,000 otherwise). Run ``python -m bench.intake [--quick]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from collector.intake import IntakeLimits, MeterFacts, impossible
from protocols.errors import PayloadError
from protocols.payloads import parse_payload

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
NOW = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)


def _payloads(n: int, per_message: int) -> list[bytes]:
    out = []
    for i in range(n):
        objs = [
            {
                "ts": (NOW - timedelta(minutes=i * per_message + k)).isoformat(),
                "energy_import_kwh": 1234.5 + i + k / 100,
                "energy_export_kwh": 0.0,
                "power_w": 850.0,
                "voltage_v": 229.8,
                "current_a": 3.9,
                "frequency_hz": 50.0,
            }
            for k in range(per_message)
        ]
        out.append(json.dumps(objs[0] if per_message == 1 else objs).encode())
    return out


def _best(fn: Callable[[], object], repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def _ceiling(payloads: list[bytes]) -> None:
    loads = json.loads
    for p in payloads:
        loads(p)


def _doxa(payloads: list[bytes]) -> None:
    limits, meter = IntakeLimits(), MeterFacts()
    for p in payloads:
        for r in parse_payload("native", "M-1", p, tz=TZ, now=NOW):
            assert impossible(r, meter, limits, received_at=NOW) is None


def _rejected(payload: bytes) -> None:
    try:
        parse_payload("native", "M-1", payload, tz=TZ, now=NOW)
    except PayloadError:
        return
    raise AssertionError("a hostile payload was accepted")


def _loads_any(payload: bytes) -> None:
    with contextlib.suppress(ValueError, RecursionError):
        json.loads(payload)


def run(quick: bool = False, n: int | None = None) -> str:
    n = n or (5_000 if quick else 20_000)
    typical = _payloads(n, 1)
    backlogs = _payloads(max(1, n // 100), 100)
    flat = b"[" * (4 * 1024 * 1024 - 16)
    deep = b'{"ts": 1, "energy_import_kwh": ' + b"[" * 988 + b"1" + b"]" * 988 + b"}"
    rows = []
    for label, payloads, count in (
        ("one reading per message", typical, n),
        ("backlogs of 100 readings", backlogs, len(backlogs) * 100),
    ):
        ceiling = _best(lambda p=payloads: _ceiling(p))  # type: ignore[misc]
        doxa = _best(lambda p=payloads: _doxa(p))  # type: ignore[misc]
        rows.append(
            f"| {label} | {count / ceiling:,.0f} | {count / doxa:,.0f} | {ceiling / doxa:.2f} |"
        )
    hostile = []
    for label, payload in (("4 MiB of `[`", flat), ("988 levels deep", deep)):
        ceiling = _best(lambda p=payload: _loads_any(p))  # type: ignore[misc]
        doxa = _best(lambda p=payload: _rejected(p))  # type: ignore[misc]
        hostile.append(
            f"| {label} | {ceiling * 1e3:.2f} | {doxa * 1e3:.2f} (rejected) | "
            f"{ceiling / doxa:.2f} |"
        )
    return "\n".join([
        "## Intake bounds: what the hostile-input checks cost",
        "",
        f"{n:,} native messages, CPU only: `json.loads` (ceiling) beside `parse_payload` with "
        "its size and nesting bounds plus `collector.intake.impossible` on every reading.",
        "",
        "| payloads | ceiling readings/s | Doxa readings/s | ratio |",
        "|---|---|---|---|",
        *rows,
        "",
        "| hostile payload | `json.loads` ms | Doxa ms | ratio |",
        "|---|---|---|---|",
        *hostile,
    ])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5,000 messages")
    parser.add_argument("--messages", type=int)
    args = parser.parse_args()
    print(run(args.quick, args.messages))


if __name__ == "__main__":
    main()
