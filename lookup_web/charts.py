"""Bar charts drawn on the server as inline SVG: no script, no font, no request beyond the page.

The SVG scales to its container (``viewBox``), carries a ``<title>``/``<desc>`` for screen readers
and a ``<title>`` per bar (the tooltip). Colours come from the stylesheet through classes, so
estimated and partial values are told apart by pattern and label, not colour alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

from markupsafe import Markup, escape

WIDTH = 640
HEIGHT = 240
LEFT = 56  # room for the value axis labels
RIGHT = 8
TOP = 12
BOTTOM = 28  # room for the day/month labels


class Bar(NamedTuple):
    label: str  # shown under the bar (some are skipped when crowded)
    tooltip: str  # full text: date, value, "estimated"
    value: float | None  # None: no data, nothing drawn
    estimated: bool = False
    partial: bool = False


def _drawable(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def nice_step(top: float, lines: int = 4) -> float:
    """A round grid step (1, 2 or 5 × 10ⁿ) giving at most ``lines`` lines up to ``top``."""
    if top <= 0:
        return 1.0
    raw = top / lines
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if factor * magnitude >= raw:
            return float(factor * magnitude)
    return float(10 * magnitude)


def bar_chart(
    bars: Sequence[Bar],
    *,
    chart_id: str,
    title: str,
    description: str,
    axis_format: Callable[[float], str],
) -> Markup:
    """An accessible SVG bar chart; ``axis_format`` writes the value axis labels (locale)."""
    # Any stored value may come through (a broken meter's 1.7e308 kWh): a value that is not a
    # finite number is not drawn, and the scale never overflows.
    bars = [b if _drawable(b.value) else b._replace(value=None) for b in bars]
    peak = max((b.value for b in bars if b.value is not None), default=0.0)
    step = nice_step(peak)
    lines = max(1, math.ceil(peak / step))
    top = step * lines
    if not math.isfinite(top):  # near the largest double: the scale ends at the value itself
        top, lines = peak, math.floor(peak / step)
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM
    slot = plot_w / max(1, len(bars))
    gap = min(4.0, slot * 0.2)
    label_every = max(1, math.ceil(len(bars) / 8))

    cid = escape(chart_id)
    parts = [
        f'<svg class="chart" id="{cid}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'role="img" aria-labelledby="{cid}-t {cid}-d" '
        f'preserveAspectRatio="xMidYMid meet" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{cid}-t">{escape(title)}</title>',
        f'<desc id="{cid}-d">{escape(description)}</desc>',
        f'<defs><pattern id="{cid}-hatch" width="6" height="6" '
        'patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
        '<rect width="6" height="6" class="hatch-bg"/>'
        '<line x1="0" y1="0" x2="0" y2="6" class="hatch-line"/></pattern></defs>',
    ]
    for k in range(lines + 1):
        y = TOP + plot_h - plot_h * (step * k / top)
        parts.append(
            f'<line class="grid" x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}"/>'
            f'<text class="axis" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{escape(axis_format(step * k))}</text>"
        )
    width = max(1.0, slot - gap)
    # What is the same for every bar is written once (a 90-day chart has 90 bars).
    bottom = TOP + plot_h
    hatch = f' fill="url(#{cid}-hatch)"'
    openings = {
        (estimated, partial): '<rect class="bar'
        + (" estimated" if estimated else "")
        + (" partial" if partial else "")
        + '"'
        + (hatch if estimated else "")
        for estimated in (False, True)
        for partial in (False, True)
    }
    size = f'" width="{width:.1f}" height="'
    label_y = f'" y="{HEIGHT - 8}" text-anchor="middle">'
    for i, bar in enumerate(bars):
        x = LEFT + slot * i + gap / 2
        if bar.value is not None:
            h = min(max(plot_h * (bar.value / top), 0.5), plot_h)
            parts.append(
                f'{openings[bool(bar.estimated), bool(bar.partial)]} x="{x:.1f}"'
                f' y="{bottom - h:.1f}{size}{h:.1f}"><title>{escape(bar.tooltip)}</title></rect>'
            )
        if i % label_every == 0:
            parts.append(
                f'<text class="axis" x="{x + width / 2:.1f}{label_y}{escape(bar.label)}</text>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))
