"""The customer pages' pure parts: daily and monthly use from the metering rules, tiers, the SVG
charts, formatting."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from xml.etree import ElementTree

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_web_customer_data import ZONE

from billing.periods import Period, add_months, period_start
from billing.tariff import Tier, band_reached, bands
from lookup_web import charts
from lookup_web.i18n import LANGUAGES
from metering.calendar import local_midnight
from metering.register import Point, Register
from metering.usage import billed_period, daily, projected_total, use_between

SVG = "{http://www.w3.org/2000/svg}"
WIDTHS = [(50, 1984), (50, 2050), (100, 2380), (100, 2998), (100, 3350), (None, 3460)]
TIERS = [Tier(n, width, price) for n, (width, price) in enumerate(WIDTHS, start=1)]


def at(day: int, hour: float = 0, month: int = 6) -> datetime:
    return local_midnight(date(2025, month, day), ZONE) + timedelta(hours=hour)


def register(readings: list[Point]) -> Register:
    return Register.from_readings(readings)


def kwh(values: list) -> list[float | None]:
    return [None if v.kwh is None else float(v.kwh) for v in values]


def test_index_is_interpolated_and_flagged_when_readings_are_far_apart() -> None:
    near = register([Point(at(1, 23.5), 100.0), Point(at(2, 0.5), 101.0)]).index_at(at(2))
    assert (near.kwh, near.estimated) == (Decimal("100.500"), False)
    far = register([Point(at(1, 21), 100.0), Point(at(2, 0), 103.0)]).index_at(at(2))
    assert far.kwh == 103 and not far.estimated  # a reading exactly at the boundary
    gap = register([Point(at(1, 18), 100.0), Point(at(2, 6), 112.0)]).index_at(at(2))
    assert gap.kwh == 106 and gap.estimated
    assert register([Point(at(2, 1), 5.0)]).index_at(at(2)).kwh is None


def test_days_add_up_to_the_period_whatever_the_reading_times() -> None:
    # Irregular readings over 5 days at a steady 0.7 kWh/h; multiplier 2.
    hours = (0.2, 5, 13.7, 23.9, 30, 47.5, 49, 70, 95.5, 97, 119.9, 121)
    readings = [Point(at(1, h), 10 + 0.7 * (h - 0.2)) for h in hours]
    days = [date(2025, 6, d) for d in range(2, 6)]
    amounts = daily(register(readings), days, ZONE, Decimal(2), latest=None)
    assert kwh(amounts) == pytest.approx([0.7 * 24 * 2] * 4)
    # Estimated where a midnight falls between readings more than 2 h apart (24 h and 72 h).
    assert [a.estimated for a in amounts] == [True, True, True, False]
    assert not any(a.partial for a in amounts)


def test_estimated_reading_at_a_midnight_marks_both_days() -> None:
    readings = [Point(at(1, h), float(h), "actual") for h in range(0, 72)]
    readings[24] = Point(at(2), 24.0, "estimated")
    days = [date(2025, 6, 1), date(2025, 6, 2), date(2025, 6, 3)]
    amounts = daily(register(readings), days, ZONE, Decimal(1), latest=None)
    assert [a.estimated for a in amounts] == [True, True, False]
    assert amounts[2].kwh is None  # the 4th's midnight has no reading after it


def test_today_runs_to_the_latest_reading() -> None:
    readings = [Point(at(19, h / 2), h / 2) for h in range(0, 68)]  # up to 20 June 09:30
    days = [date(2025, 6, 19), date(2025, 6, 20)]
    amounts = daily(register(readings), days, ZONE, Decimal(1), readings[-1])
    assert amounts[0].kwh == 24 and not amounts[0].partial
    assert amounts[1].kwh == Decimal("9.5") and amounts[1].partial


def test_billing_periods_follow_the_reading_day() -> None:
    assert period_start(date(2025, 6, 20), 15) == date(2025, 6, 15)
    assert period_start(date(2025, 6, 14), 15) == date(2025, 5, 15)
    assert period_start(date(2025, 1, 3), 28) == date(2024, 12, 28)
    assert period_start(date(2025, 3, 1), 1) == date(2025, 3, 1)
    assert add_months(date(2025, 1, 28), 1) == date(2025, 2, 28)
    assert add_months(date(2025, 1, 15), -13) == date(2023, 12, 15)
    # Period 2025-06 (reading day 15) runs 15 May to 15 June and is named after June.
    assert Period.ending_after(date(2025, 5, 15)) == Period(2025, 6)


def test_periods_and_projection() -> None:
    readings = [Point(at(15, 0, 5), 100.0), Point(at(15), 286.0, "estimated")]
    latest = Point(at(20, 10), 318.0)
    reg = register([*readings, latest])
    closed = billed_period(reg, date(2025, 5, 15), date(2025, 6, 15), ZONE, Decimal(1))
    assert closed.kwh == 186 and closed.estimated
    so_far = use_between(reg, date(2025, 6, 15), at(15), latest.ts, Decimal(1), partial=True)
    assert so_far.kwh == 32 and so_far.partial and so_far.estimated
    total = projected_total(so_far.kwh, at(15), at(15, 0, 7), latest.ts)
    assert float(total) == pytest.approx(32.0 * 30 / (5 + 10 / 24), abs=0.001)
    assert projected_total(Decimal(3), at(15), at(15, 0, 7), at(15, 20)) is None  # under a day


def test_tier_widths_are_prorated_for_short_periods() -> None:
    regular = bands(TIERS, date(2025, 5, 15), date(2025, 6, 15))
    assert [(t.lower_kwh, t.upper_kwh) for t in regular] == [
        (0, 50), (50, 100), (100, 200), (200, 300), (300, 400), (400, None),
    ]  # fmt: skip
    # 20 days ending in May (T = 30 days of April): round(50 × 20 / 30) = 33, 67 for 100.
    short = bands(TIERS, date(2025, 4, 20), date(2025, 5, 10))
    assert [t.upper_kwh for t in short] == [33, 66, 133, 200, 267, None]
    assert band_reached(regular, Decimal("50.4")).number == 1
    assert band_reached(regular, Decimal("50.5")).number == 2  # half-up: 51 kWh
    assert band_reached(regular, 180).number == 3
    assert band_reached(regular, 5000).number == 6


def _chart(bars: list[charts.Bar], title: str = "Tiêu đề") -> ElementTree.Element:
    svg = charts.bar_chart(
        bars, chart_id="c1", title=title, description="mô tả", axis_format=lambda v: f"{v:g}"
    )
    return ElementTree.fromstring(str(svg))


def test_chart_is_valid_svg_with_one_bar_per_value() -> None:
    bars = [charts.Bar(str(d), f"day {d}", float(d), estimated=d == 3) for d in range(1, 8)]
    bars.append(charts.Bar("8", "day 8", None))
    svg = _chart(bars)
    drawn = [r for r in svg.iter(f"{SVG}rect") if r.get("class", "").startswith("bar")]
    assert len(drawn) == 7
    assert [r.get("class") for r in drawn].count("bar estimated") == 1
    heights = [float(r.get("height")) for r in drawn]
    assert heights == sorted(heights)  # taller for larger values
    assert svg.find(f"{SVG}title").text == "Tiêu đề"
    assert svg.get("aria-labelledby") == "c1-t c1-d"


def test_chart_escapes_text_and_survives_empty_data() -> None:
    svg = _chart([charts.Bar("<b>", "</title><script>x</script>", 1.0)], title="<x>&")
    assert svg.find(f"{SVG}title").text == "<x>&"
    assert not list(svg.iter(f"{SVG}script"))
    empty = _chart([charts.Bar("a", "a", None), charts.Bar("b", "b", 0.0)])
    assert len([r for r in empty.iter(f"{SVG}rect") if "bar" in r.get("class", "")]) == 1


def test_chart_survives_any_value() -> None:
    """A finite but absurd value (a register of 1.7e308 kWh stored by a broken meter), an
    infinity or NaN: still a valid chart, the absurd bar drawn within the plot, never an error."""
    for huge in (1.7e308, 1.7976931348623157e308, math.inf, math.nan, -5.0):
        svg = _chart([charts.Bar("a", "a", 3.0), charts.Bar("b", "b", huge)])
        for rect in svg.iter(f"{SVG}rect"):
            if "bar" in rect.get("class", ""):
                assert 0 <= float(rect.get("height")) <= charts.HEIGHT


@given(st.floats(min_value=0.001, max_value=1e9))
def test_grid_step_is_round_and_fits(top: float) -> None:
    step = charts.nice_step(top)
    mantissa = step / 10 ** math.floor(math.log10(step))
    assert round(mantissa, 6) in (1, 2, 5, 10)
    assert top / step <= 4 + 1e-9


def test_formatting_per_language() -> None:
    from flask import Flask
    from flask_babel import Babel

    from lookup_web import formatting

    app = Flask(__name__)
    app.config["TIMEZONE"] = "Asia/Ho_Chi_Minh"
    chosen = {"lang": "vi"}
    Babel(app, locale_selector=lambda: chosen["lang"], timezone_selector=lambda: "Asia/Ho_Chi_Minh")
    assert LANGUAGES == ("vi", "en")
    with app.test_request_context():
        assert formatting.kwh(1234.567) == "1.234,57\u00a0kWh"
        assert formatting.vnd(1234567) == "1.234.567\u00a0₫"
        assert formatting.local_date(date(2025, 5, 4)) == "04/05/2025"
        assert (
            formatting.local_datetime(datetime(2025, 5, 4, 6, 5, tzinfo=ZONE)) == "04/05/2025 06:05"
        )
        assert formatting.number(None) == "–"
    chosen["lang"] = "en"
    with app.test_request_context():
        assert formatting.kwh(1234.567) == "1,234.57\u00a0kWh"
        assert formatting.vnd(1234567) == "₫1,234,567"
        assert formatting.local_date(date(2025, 5, 4)) == "4 May 2025"
        assert (
            formatting.local_datetime(datetime(2025, 5, 4, 23, 5, tzinfo=UTC)) == "5 May 2025 06:05"
        )
        assert formatting.month(date(2025, 5, 1)) == "May 2025"


def _luminance(hex_colour: str) -> float:
    channels = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def test_text_colours_meet_wcag_aa_contrast() -> None:
    """Every text/background pair of the stylesheet's palette has a contrast of at least 4.5:1."""
    import re
    from pathlib import Path

    css = (Path(__file__).resolve().parent.parent / "lookup_web/static/style.css").read_text()
    palette = dict(re.findall(r"--([a-z-]+):\s*(#[0-9a-fA-F]{6})", css))
    pairs = [
        ("ink", "paper"), ("ink", "page"), ("muted", "paper"), ("muted", "page"),
        ("brand", "paper"), ("brand", "page"), ("brand-ink", "brand"), ("accent", "brand"),
        ("warn-ink", "warn-bg"), ("error-ink", "error-bg"), ("ink", "warn-bg"),
    ]  # fmt: skip
    for text, background in pairs:
        lighter, darker = sorted(
            (_luminance(palette[text]), _luminance(palette[background])), reverse=True
        )
        ratio = (lighter + 0.05) / (darker + 0.05)
        assert ratio >= 4.5, (text, background, round(ratio, 2))
