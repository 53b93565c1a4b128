"""Pricing a consumption with a tiered tariff (contract §8): pure functions, no I/O.

Given the billed kWh of a period ``[start, end)`` (N days), the tariff tables and the VAT rates:

1. the period is split at every price or VAT change strictly inside it (the change day belongs to
   the later part); a part of n days gets round(kWh × n / N), the last part the remainder;
2. each part's tier widths are round(width × n / T), T being the number of days of the calendar
   month before the month of ``end`` (so a regular monthly period keeps the widths as they are),
   times the households sharing the meter (contract §11);
3. the kWh of a part fill its tiers in order; a tier line costs kWh × price;
4. VAT is round(amount × rate) per part; the total is amount + VAT.

Every rounding is half-up, on exact fractions. A new tariff (say the five-tier scheme announced in
Decision 14/2025/QĐ-TTg) is a new :class:`TariffTable` in the database, not new code.
"""

from __future__ import annotations

import calendar
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any, NamedTuple, Protocol, TypeVar

from doxa.errors import TariffError
from metering.rounding import Exact, half_up


@dataclass(frozen=True)
class Tier:
    tier: int
    width_kwh: int | None  # None: unbounded (the last tier)
    price_vnd: int


@dataclass(frozen=True)
class TariffTable:
    """Prices in force from ``effective_from`` until the next table of the same group."""

    effective_from: date
    tiers: tuple[Tier, ...]
    source: str = ""

    def __post_init__(self) -> None:
        label = f"tariff table from {self.effective_from}"
        if not self.tiers:
            raise TariffError(f"{label} has no tiers")
        if [t.tier for t in self.tiers] != list(range(1, len(self.tiers) + 1)):
            raise TariffError(f"{label}: tiers must be numbered 1, 2, 3… in order")
        if self.tiers[-1].width_kwh is not None:
            raise TariffError(f"{label}: the last tier must be unbounded (no width)")
        for t in self.tiers[:-1]:
            if t.width_kwh is None or t.width_kwh <= 0:
                raise TariffError(f"{label}: tier {t.tier} needs a positive width")
        if any(t.price_vnd < 0 for t in self.tiers):
            raise TariffError(f"{label}: a price is negative")


@dataclass(frozen=True)
class VatRate:
    effective_from: date
    rate: Decimal  # 0.10 for 10 %


@dataclass(frozen=True)
class Line:
    tier: int
    width_kwh: int | None  # the prorated width of this part
    kwh: int
    price_vnd: int

    @property
    def amount_vnd(self) -> int:
        return self.kwh * self.price_vnd

    def to_json(self) -> dict[str, Any]:
        return {
            "tier": self.tier,
            "width_kwh": self.width_kwh,
            "kwh": self.kwh,
            "price_vnd": self.price_vnd,
            "amount_vnd": self.amount_vnd,
        }


@dataclass(frozen=True)
class Part:
    """The days of a period under one tariff table and one VAT rate: ``[start, end)``."""

    start: date
    end: date
    consumption_kwh: int
    tariff_effective_from: date
    vat_rate: Decimal
    lines: tuple[Line, ...]

    @property
    def days(self) -> int:
        return (self.end - self.start).days

    @property
    def amount_vnd(self) -> int:
        return sum(line.amount_vnd for line in self.lines)

    @property
    def vat_vnd(self) -> int:
        return half_up(self.amount_vnd * Fraction(self.vat_rate))

    @property
    def total_vnd(self) -> int:
        return self.amount_vnd + self.vat_vnd

    def to_json(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "days": self.days,
            "consumption_kwh": self.consumption_kwh,
            "tariff_effective_from": self.tariff_effective_from.isoformat(),
            "vat_rate": _rate_text(self.vat_rate),
            "lines": [line.to_json() for line in self.lines],
            "amount_vnd": self.amount_vnd,
            "vat_vnd": self.vat_vnd,
            "total_vnd": self.total_vnd,
        }


def _rate_text(rate: Decimal) -> str:
    """0.1000 → "0.10", 0.075 → "0.075": two decimals at least, and every significant one."""
    cents = rate.quantize(Decimal("0.01"))
    return str(cents if cents == rate else rate.normalize())


@dataclass(frozen=True)
class Priced:
    """A period's bill amounts: one part per tariff/VAT regime."""

    consumption_kwh: int
    parts: tuple[Part, ...]

    @property
    def amount_vnd(self) -> int:
        return sum(p.amount_vnd for p in self.parts)

    @property
    def vat_vnd(self) -> int:
        return sum(p.vat_vnd for p in self.parts)

    @property
    def total_vnd(self) -> int:
        return sum(p.total_vnd for p in self.parts)


class _Dated(Protocol):
    @property
    def effective_from(self) -> date: ...


_D = TypeVar("_D", bound=_Dated)


def in_force(items: Sequence[_D], day: date) -> _D | None:
    """The item with the latest ``effective_from`` on or before ``day``."""
    best: _D | None = None
    for item in items:
        if item.effective_from <= day and (
            best is None or item.effective_from > best.effective_from
        ):
            best = item
    return best


def days_in_month_before(end: date) -> int:
    """T of contract §8: the days of the calendar month before the month in which a period ends
    (``end`` is the closing day, the exclusive bound)."""
    last_of_previous = end.replace(day=1) - timedelta(days=1)
    return calendar.monthrange(last_of_previous.year, last_of_previous.month)[1]


def split_days(
    start: date, end: date, tariffs: Sequence[TariffTable], vat_rates: Sequence[VatRate]
) -> list[tuple[date, date]]:
    """``[start, end)`` cut at every price or VAT change strictly inside it."""
    changes = sorted(
        {t.effective_from for t in tariffs if start < t.effective_from < end}
        | {v.effective_from for v in vat_rates if start < v.effective_from < end}
    )
    bounds = [start, *changes, end]
    return list(itertools.pairwise(bounds))


def prorated_width(width_kwh: int | None, days: int, month_days: int) -> int | None:
    """A tier's width for ``days`` of a month of ``month_days``: round(width × n / T), half-up
    (None: the unbounded last tier)."""
    return None if width_kwh is None else half_up(Fraction(width_kwh * days, month_days))


def shared_width(width_kwh: int | None, households: int) -> int | None:
    """A tier's width on a meter shared by ``households`` (Circular 16/2014 Art. 10 as amended
    by Circular 09/2023): the prorated width times the households, so two households exactly
    double every tier."""
    if households < 1:
        raise ValueError(f"households must be at least 1, not {households}")
    return None if width_kwh is None else width_kwh * households


def fill_tiers(
    kwh: int, table: TariffTable, days: int, month_days: int, households: int = 1
) -> tuple[Line, ...]:
    """Spread ``kwh`` over the tiers of ``table``, widths prorated to ``days`` / ``month_days``
    and multiplied by the ``households`` sharing the meter (contract §11)."""
    lines = []
    left = kwh
    for tier in table.tiers:
        width = shared_width(prorated_width(tier.width_kwh, days, month_days), households)
        take = left if width is None else min(left, width)
        lines.append(Line(tier.tier, width, take, tier.price_vnd))
        left -= take
    return tuple(lines)


def price(
    consumption_kwh: int,
    start: date,
    end: date,
    tariffs: Sequence[TariffTable],
    vat_rates: Sequence[VatRate],
    households: int = 1,
) -> Priced:
    """Price ``consumption_kwh`` used over ``[start, end)`` (see the module docstring) on a
    meter shared by ``households``."""
    if consumption_kwh < 0:
        raise ValueError(f"consumption cannot be negative: {consumption_kwh}")
    total_days = (end - start).days
    if total_days <= 0:
        raise ValueError(f"empty period {start} – {end}")
    month_days = days_in_month_before(end)
    spans = split_days(start, end, tariffs, vat_rates)
    parts = []
    given = 0
    for i, (part_start, part_end) in enumerate(spans):
        days = (part_end - part_start).days
        if i == len(spans) - 1:
            kwh = consumption_kwh - given
        else:
            kwh = min(
                half_up(Fraction(consumption_kwh * days, total_days)), consumption_kwh - given
            )
        given += kwh
        table = in_force(tariffs, part_start)
        if table is None:
            raise TariffError(f"no tariff table in force on {part_start}")
        vat = in_force(vat_rates, part_start)
        if vat is None:
            raise TariffError(f"no VAT rate in force on {part_start}")
        lines = fill_tiers(kwh, table, days, month_days, households)
        parts.append(Part(part_start, part_end, kwh, table.effective_from, vat.rate, lines))
    return Priced(consumption_kwh, tuple(parts))


class Band(NamedTuple):
    """A tier of one period as the customer sees it: kWh above ``lower_kwh`` up to
    ``upper_kwh`` (None: unbounded) cost ``price_vnd`` each."""

    number: int
    lower_kwh: int
    upper_kwh: int | None
    price_vnd: int


def bands(tiers: Sequence[Tier], start: date, end: date, households: int = 1) -> list[Band]:
    """The tiers of the period ``[start, end)`` with their widths prorated (and multiplied by
    the households) as its bill's are."""
    days, month_days = (end - start).days, days_in_month_before(end)
    out = []
    lower = 0
    for tier in tiers:
        width = shared_width(prorated_width(tier.width_kwh, days, month_days), households)
        out.append(Band(tier.tier, lower, None if width is None else lower + width, tier.price_vnd))
        if width is None:
            break
        lower += width
    return out


def band_reached(period_bands: Sequence[Band], kwh: Exact) -> Band | None:
    """The highest tier a consumption of ``kwh`` (rounded half-up to whole kWh) reaches."""
    whole = half_up(kwh)
    for band in period_bands:
        if band.upper_kwh is None or whole <= band.upper_kwh:
            return band
    return period_bands[-1] if period_bands else None
