"""Numbers, energy, money and dates in the visitor's language (Jinja filters).

Vietnamese writes ``1.234,56 kWh``, ``1.234.567 ₫`` and ``dd/mm/yyyy``; English ``1,234.56 kWh``,
``₫1,234,567`` and ``4 May 2025``. Times are shown in the site's time zone (``TIMEZONE``).

A meter page formats a couple of hundred values, so each language has one :class:`Formatter`
(made once per process: it holds nothing but the locale's marks), and numbers are formatted by
Python with the locale's marks swapped in (Babel's convenience functions parse the pattern and
look the locale up again on every call, some 50 times slower). Amounts of money go through Babel,
remembered per value: the same prices come back on every page.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from zoneinfo import ZoneInfo

from babel import Locale
from babel.numbers import format_currency
from flask import Flask, current_app, g
from flask_babel import get_locale

DASH = "–"


class Formatter:
    """Formatting for one locale and time zone."""

    def __init__(self, locale: Locale, zone: ZoneInfo) -> None:
        self.locale = locale
        self.zone = zone
        self.vietnamese = locale.language == "vi"
        self.months = locale.months["format"]["abbreviated"]
        symbols = locale.number_symbols.get("latn", locale.number_symbols)
        self._marks = str.maketrans({",": symbols["group"], ".": symbols["decimal"]})

    def number(self, value: float | Decimal | int | None, digits: int = 2) -> str:
        """``1234.5`` → ``1.234,50`` (vi) with exactly ``digits`` decimals; None → en dash."""
        if value is None:
            return DASH
        return f"{value:,.{digits}f}".translate(self._marks)

    def kwh(self, value: float | Decimal | int | None, digits: int = 2) -> str:
        """Energy with its unit (a no-break space keeps them together): ``1.234,56 kWh``."""
        if value is None:
            return DASH
        return f"{value:,.{digits}f}".translate(self._marks) + "\u00a0kWh"

    def vnd(self, value: int | Decimal | None) -> str:
        """Whole Vietnamese đồng with thousands separators: ``1.234.567 ₫``."""
        if value is None:
            return DASH
        return _currency(value, self.locale)

    def day(self, value: date | datetime | None) -> str:
        """``04/05/2025`` (vi, numeric as Vietnamese bills write it) or ``4 May 2025`` (en)."""
        if value is None:
            return DASH
        if isinstance(value, datetime):
            value = value.astimezone(self.zone).date()
        if self.vietnamese:
            return f"{value.day:02d}/{value.month:02d}/{value.year}"
        return f"{value.day} {self.months[value.month]} {value.year}"

    def short_day(self, value: date) -> str:
        if self.vietnamese:
            return f"{value.day:02d}/{value.month:02d}"
        return f"{value.day} {self.months[value.month]}"

    def moment(self, value: datetime | None) -> str:
        """A reading time in the site's zone: ``04/05/2025 13:05``."""
        if value is None:
            return DASH
        local = value.astimezone(self.zone)
        return f"{self.day(local.date())} {local.hour:02d}:{local.minute:02d}"

    def month(self, value: date) -> str:
        """``05/2025`` (vi) or ``May 2025`` (en)."""
        if self.vietnamese:
            return f"{value.month:02d}/{value.year}"
        return f"{self.months[value.month]} {value.year}"


@lru_cache(maxsize=4096)
def _currency(value: int | Decimal, locale: Locale) -> str:
    return format_currency(value, "VND", locale=locale)


_FORMATTERS: dict[tuple[str, str], Formatter] = {}


def formatter() -> Formatter:
    """The request's formatter: one per language and time zone, shared by all requests."""
    try:
        return g._doxa_formatter  # type: ignore[no-any-return]
    except AttributeError:
        locale = get_locale() or Locale.parse("vi")
        zone = current_app.config["TIMEZONE"]
        made = _FORMATTERS.get((str(locale), zone))
        if made is None:
            made = _FORMATTERS[str(locale), zone] = Formatter(locale, ZoneInfo(zone))
        g._doxa_formatter = made
        return made


def number(value: float | Decimal | int | None, digits: int = 2) -> str:
    return formatter().number(value, digits)


def kwh(value: float | Decimal | int | None, digits: int = 2) -> str:
    return formatter().kwh(value, digits)


def vnd(value: int | Decimal | None) -> str:
    return formatter().vnd(value)


def local_date(value: date | datetime | None) -> str:
    return formatter().day(value)


def local_datetime(value: datetime | None) -> str:
    return formatter().moment(value)


def month(value: date) -> str:
    return formatter().month(value)


def short_day(value: date) -> str:
    return formatter().short_day(value)


def init_app(app: Flask) -> None:
    for name, fn in {
        "number": number,
        "kwh": kwh,
        "vnd": vnd,
        "local_date": local_date,
        "local_datetime": local_datetime,
        "month": month,
        "short_day": short_day,
    }.items():
        app.jinja_env.filters[name] = fn
