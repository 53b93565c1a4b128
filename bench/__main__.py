"""Run every benchmark and rewrite ``docs/benchmarks.md`` (``make bench``).

``python -m bench`` runs them all (about 15 minutes: the lookup and export benchmarks load a
10,000-meter fleet each) and rewrites the document; ``--quick`` (small data sets) and ``--only
NAME`` print to stdout and leave the document alone, since their figures are not the real ones.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

BENCHMARKS = ("ingest", "lookup", "export", "notify", "intake", "validate", "greenbutton", "scale",
              "issue")  # fmt: skip
DOCUMENT = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return 0.0


def _postgres() -> str:
    from doxa.services.postgres import find_pg_bin

    bin_dir = find_pg_bin()
    version = subprocess.run([bin_dir / "postgres", "--version"], capture_output=True, text=True)
    control = Path("/usr/share/postgresql") / bin_dir.parent.name / "extension"
    ts = "?"
    text = (control / "timescaledb.control").read_text()
    for line in text.splitlines():
        if line.startswith("default_version"):
            ts = line.split("=", 1)[1].strip().strip("'")
    return f"{version.stdout.strip().removeprefix('postgres (PostgreSQL) ')} + TimescaleDB {ts}"


def machine() -> str:
    """One line naming the machine the figures come from."""
    return (
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} × {_cpu()}, "
        f"{_memory_gib():.0f} GiB RAM, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, PostgreSQL {_postgres()}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small data sets, print only")
    parser.add_argument("--only", action="append", choices=BENCHMARKS, help="run only these")
    parser.add_argument(
        "--scale",
        type=int,
        action="append",
        help="bench.scale's fleet sizes (repeatable; default 10,000 and 100,000), e.g. 1000000",
    )
    args = parser.parse_args(argv)
    names = args.only or list(BENCHMARKS)
    sections = []
    for name in names:
        print(f"== bench.{name}", file=sys.stderr)
        module = importlib.import_module(f"bench.{name}")
        if name == "scale":
            sections.append(module.run(quick=args.quick, scales=args.scale).strip())
        else:
            sections.append(module.run(quick=args.quick).strip())
    text = "\n\n".join(
        [
            "# Benchmarks",
            "Every Doxa figure here is measured beside its raw ceiling in the same run, on the "
            "same machine, and given as a ratio; `make bench` (`python -m bench`) rewrites this "
            "page. Timing thresholds never go into the tests.",
            f"Last full run: {machine()}.",
            *sections,
        ]
    )
    if args.quick or args.only:
        print(text)
    else:
        DOCUMENT.write_text(text + "\n", encoding="utf-8")
        print(f"wrote {DOCUMENT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
