"""The one place readings are fetched for the metering rules (``metering.register``), for a batch
of meters at once: bills, the closing-index export and the customer pages all call
:func:`registers`, with a batch of many meters or of one.

Given, for each meter, the instants it is asked about (period boundaries, local midnights, the
latest reading), three statements at most, whatever the number of meters:

1. **Nearest readings.** The reading at or before and at or after each (meter, instant) pair,
   given as arrays through ``unnest``: two one-row probes of the ``(meter_id, ts)`` index per
   pair (``LATERAL … ORDER BY ts LIMIT 1``), each first looking no further than a day away so
   TimescaleDB opens only the chunk(s) holding that day;
2. the pairs with a side not found within a day, again up to ``SEARCH_WINDOW`` away (a meter
   silent over the instant);
3. **Breaks.** Between the outermost readings found for each meter: its recorded replacements
   (``meter_resets``, with the old register's last reading when its final value was not written
   down) and the pairs of consecutive readings where the register fell by more than noise or
   climbed faster than a meter counts (one range scan per meter that returns only those pairs;
   the SQL test is a superset of :func:`metering.register.is_drop` / ``is_glitch``, which decide;
   ``tests/test_register_inputs.py`` holds the two together).

**Replacements across meters** (``predecessors``): when a meter replaced another at an instant,
the instants it is asked about up to the swap are also asked of the old meter, whose readings
before the swap (and its own breaks) join the new meter's history; the swap itself is the new
meter's ``meter_resets`` row, so the one rule (``metering.register``) sees one metering point
whose first stretch is the old meter's (named by its serial in the bill's segments).

A reading whose register is not a finite number is never fetched. Times come back aware, in the
session's time zone. Validation, estimation and edits (readings of quality ``estimated`` /
``edited``, reading history) and a daily rollup change what is read here, and nowhere else.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import psycopg

from metering.register import (
    DROP_NOISE_KWH,
    MAX_REGISTER_KW,
    SEARCH_WINDOW,
    Point,
    Register,
    Replacement,
    Stretch,
    breaks,
)

NEAR = timedelta(days=1)  # the first search around an instant; then SEARCH_WINDOW
_FINITE = "abs(energy_import_kwh) < 'Infinity'"  # false for ±Infinity and NaN

_NEAREST = f"""
SELECT lo.ts, lo.energy_import_kwh, lo.quality, hi.ts, hi.energy_import_kwh, hi.quality
  FROM unnest(%(meter)s::int[], %(at)s::timestamptz[]) WITH ORDINALITY AS b(meter_id, at, k)
  LEFT JOIN LATERAL (SELECT ts, energy_import_kwh, quality FROM readings
     WHERE meter_id = b.meter_id AND ts <= b.at AND ts > b.at - %(reach)s
       AND ts >= %(low)s AND ts <= %(high)s AND {_FINITE}
     ORDER BY ts DESC LIMIT 1) lo ON true
  LEFT JOIN LATERAL (SELECT ts, energy_import_kwh, quality FROM readings
     WHERE meter_id = b.meter_id AND ts >= b.at AND ts < b.at + %(reach)s
       AND ts >= %(low)s AND ts <= %(high)s AND {_FINITE}
     ORDER BY ts LIMIT 1) hi ON true
 ORDER BY b.k"""

# Kind, meter, then (ts, kWh, quality) twice: a replacement's instant, old final value and new
# start value with the old register's last reading; or a step's two readings.
_BREAKS = f"""
WITH span AS (
    SELECT * FROM unnest(%(meter)s::int[], %(lo)s::timestamptz[], %(hi)s::timestamptz[])
        AS s(meter_id, lo, hi)
), recorded AS (
    SELECT s.meter_id, r.ts, r.old_final_kwh, r.new_start_kwh,
           coalesce(lag(r.ts) OVER (PARTITION BY s.meter_id ORDER BY r.ts), s.lo) AS floor
      FROM span s JOIN meter_resets r ON r.meter_id = s.meter_id AND r.ts > s.lo AND r.ts <= s.hi
)
SELECT 'replacement', r.meter_id, r.ts, r.old_final_kwh, r.new_start_kwh,
       p.ts, p.energy_import_kwh, p.quality
  FROM recorded r
  LEFT JOIN LATERAL (SELECT ts, energy_import_kwh, quality FROM readings
     WHERE meter_id = r.meter_id AND ts < r.ts AND ts >= r.floor
       AND ts >= %(low)s AND ts <= %(high)s AND {_FINITE}
     ORDER BY ts DESC LIMIT 1) p ON r.old_final_kwh IS NULL
UNION ALL
SELECT 'step', s.meter_id, p.prev_ts, p.prev_kwh, NULL, p.ts, p.kwh, p.quality || '/' || p.prev_q
  FROM span s CROSS JOIN LATERAL (
    SELECT ts, energy_import_kwh AS kwh, quality,
           lag(ts) OVER w AS prev_ts, lag(energy_import_kwh) OVER w AS prev_kwh,
           lag(quality) OVER w AS prev_q
      FROM readings
     WHERE meter_id = s.meter_id AND ts >= s.lo AND ts <= s.hi
       AND ts >= %(low)s AND ts <= %(high)s AND {_FINITE}
    WINDOW w AS (ORDER BY ts)) p
 WHERE p.kwh < p.prev_kwh - %(noise)s
    OR p.kwh - p.prev_kwh > %(max_kw)s
       * greatest(extract(epoch FROM p.ts - p.prev_ts) / 3600, 1.0 / 3600) * %(slack)s"""

# The SQL test above is a superset of the Python rule (which decides): a climb within this
# fraction of the limit is fetched, then judged in Python.
_SLACK = 1 - 1e-9

Pair = tuple[Point | None, Point | None]


class Predecessor(NamedTuple):
    """The meter a meter replaced, and the instant of the swap (``meters.replaces_meter_id``,
    ``meters.installed_at``)."""

    meter_id: int
    serial: str
    until: datetime


def _point(ts: datetime | None, kwh: float | None, quality: str | None) -> Point | None:
    return None if ts is None or kwh is None else Point(ts, kwh, quality or "actual")


def nearest(conn: psycopg.Connection[Any], pairs: Sequence[tuple[int, datetime]]) -> list[Pair]:
    """The readings at or before and at or after each (meter id, instant), within
    :data:`SEARCH_WINDOW`, in the order of ``pairs``."""
    found = _nearest(conn, pairs, NEAR)
    missing = [k for k, (before, after) in enumerate(found) if before is None or after is None]
    if missing:
        far = _nearest(conn, [pairs[k] for k in missing], SEARCH_WINDOW)
        for k, (far_before, far_after) in zip(missing, far, strict=True):
            before, after = found[k]
            found[k] = (before or far_before, after or far_after)
    return found


def _nearest(
    conn: psycopg.Connection[Any], pairs: Sequence[tuple[int, datetime]], reach: timedelta
) -> list[Pair]:
    if not pairs:
        return []
    instants = [at for _, at in pairs]
    rows = conn.execute(
        _NEAREST,
        {
            "meter": [m for m, _ in pairs],
            "at": instants,
            "reach": reach,
            # Constant bounds as well, so the planner keeps only the chunks in range.
            "low": min(instants) - reach,
            "high": max(instants) + reach,
        },
        prepare=True,
    ).fetchall()
    return [(_point(*row[:3]), _point(*row[3:])) for row in rows]


def registers(
    conn: psycopg.Connection[Any],
    wanted: Mapping[int, Iterable[datetime]],
    serials: Mapping[int, str] | None = None,
    predecessors: Mapping[int, Predecessor] | None = None,
) -> dict[int, Register]:
    """Each meter's register around the instants asked of it (see the module docstring). A meter
    with no reading within reach gets an empty register (every index unknown)."""
    asked = {meter: sorted(set(instants)) for meter, instants in wanted.items()}
    pairs = [(meter, at) for meter, instants in asked.items() for at in instants]
    olds = {m: p for m, p in (predecessors or {}).items() if m in asked}
    # The old meter answers for the instants up to its swap (keyed by the new meter's id).
    old_pairs = [(m, p.meter_id, at) for m, p in olds.items() for at in asked[m] if at <= p.until]
    found = nearest(conn, pairs + [(old, at) for _, old, at in old_pairs])
    points: dict[int, dict[datetime, Point]] = defaultdict(dict)
    for (meter, _), pair in zip(pairs, found[: len(pairs)], strict=True):
        for p in pair:
            if p is not None and (meter not in olds or p.ts >= olds[meter].until):
                points[meter][p.ts] = p
    old_points: dict[int, dict[datetime, Point]] = defaultdict(dict)
    for (meter, _, _), pair in zip(old_pairs, found[len(pairs) :], strict=True):
        for p in pair:
            if p is not None and p.ts < olds[meter].until:
                old_points[meter][p.ts] = p
    spans = {m: (min(found), max(found)) for m, found in points.items() if found}
    for m, p in olds.items():
        # The swap (the new meter's meter_resets row) lies inside the new meter's span.
        lo, hi = spans.get(m, (p.until, p.until))
        spans[m] = (min(lo, p.until - _US, *old_points[m]), max(hi, p.until))
    replacements, steps = _breaks(conn, spans)
    old_spans = {
        olds[m].meter_id: (min(found), max(found)) for m, found in old_points.items() if found
    }
    old_replacements, old_steps = _breaks(conn, old_spans)
    out = {}
    for meter in asked:
        known = points.get(meter, {})
        meter_steps = steps.get(meter, [])
        meter_replacements = replacements.get(meter, [])
        old = olds.get(meter)
        if old is not None:
            known.update(old_points[meter])
            meter_steps = meter_steps + [
                s for s in old_steps.get(old.meter_id, []) if s[1].ts < old.until
            ]
            meter_replacements = meter_replacements + [
                r for r in old_replacements.get(old.meter_id, []) if r.ts < old.until
            ]
        register = _register(known, meter_replacements, meter_steps, (serials or {}).get(meter, ""))
        if old is not None:
            register = Register([_named(s, old) for s in register.stretches], register.glitches)
        out[meter] = register
    return out


def register_of_readings(
    conn: psycopg.Connection[Any], meter: int, readings: Sequence[Point], serial: str = ""
) -> Register:
    """One meter's register from every reading of a range, fetched by the caller in one scan
    (the Green Button export asks about each reading, so no nearest-reading probes), with the
    replacements and steps within their span."""
    known = {p.ts: p for p in readings}
    if not known:
        return Register.from_readings([], meter=serial)
    replacements, steps = _breaks(conn, {meter: (min(known), max(known))})
    return _register(known, replacements.get(meter, []), steps.get(meter, []), serial)


def _register(
    known: dict[datetime, Point],
    replacements: Sequence[Replacement],
    steps: Sequence[tuple[Point, Point]],
    serial: str,
) -> Register:
    for before, after in steps:
        known.setdefault(before.ts, before)
        known.setdefault(after.ts, after)
    resets, glitches = breaks(replacements, steps)
    return Register.from_readings(known.values(), resets, glitches, serial)


_US = timedelta(microseconds=1)


def _named(stretch: Stretch, old: Predecessor) -> Stretch:
    """A stretch that begins before the swap is the old meter's register."""
    return replace(stretch, meter=old.serial) if stretch.points[0].ts < old.until else stretch


def _breaks(
    conn: psycopg.Connection[Any], spans: Mapping[int, tuple[datetime, datetime]]
) -> tuple[dict[int, list[Replacement]], dict[int, list[tuple[Point, Point]]]]:
    """Recorded replacements and steps of each meter within its span (one statement)."""
    replacements: dict[int, list[Replacement]] = defaultdict(list)
    steps: dict[int, list[tuple[Point, Point]]] = defaultdict(list)
    if not spans:
        return replacements, steps
    meters = list(spans)
    rows = conn.execute(
        _BREAKS,
        {
            "meter": meters,
            "lo": [spans[m][0] for m in meters],
            "hi": [spans[m][1] for m in meters],
            "low": min(lo for lo, _ in spans.values()),
            "high": max(hi for _, hi in spans.values()),
            "noise": DROP_NOISE_KWH,
            "max_kw": MAX_REGISTER_KW,
            "slack": _SLACK,
        },
        prepare=True,
    ).fetchall()
    for kind, meter, ts1, kwh1, kwh2, ts2, kwh3, quality in rows:
        if kind == "replacement":
            last = _point(ts2, kwh3, quality)
            replacements[meter].append(Replacement(ts1, kwh1, kwh2, last))
        else:
            after_q, _, before_q = quality.partition("/")
            steps[meter].append((Point(ts1, kwh1, before_q), Point(ts2, kwh3, after_q)))
    return replacements, steps
