"""Notice texts in the customer's language, for email and for SMS. Pure, apart from reading the
site's compiled message catalogue once per language.

The texts are Flask-Babel messages of the site's own catalogue (``lookup_web/translations``):
English source strings marked with ``N_`` here, Vietnamese in ``messages.po``. The worker and the
CLI run outside any request, so this module loads the catalogue with Babel itself
(``babel.support.Translations``) and formats numbers, money and dates with Babel for the locale.
SMS texts go through :func:`care.gsm.fit`: GSM-7 without accents, one 160-character segment.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_datetime
from babel.numbers import format_currency, format_decimal
from babel.support import NullTranslations, Translations

from care import gsm
from care.contacts import N_
from care.otp import LIFETIME

LANGUAGES = ("vi", "en")
CATALOGUES = Path(__file__).resolve().parent.parent / "lookup_web" / "translations"
SIGNATURE = N_("Doxa remote meter reading")


@dataclass(frozen=True)
class Email:
    subject: str
    body: str


@dataclass(frozen=True)
class Texts:
    """One notice for both channels."""

    email: Email
    sms: str


@cache
def _catalogue(language: str) -> NullTranslations:
    if language == "en":
        return NullTranslations()
    return Translations.load(str(CATALOGUES), [language], domain="messages")


class _Language:
    def __init__(self, language: str) -> None:
        if language not in LANGUAGES:
            raise ValueError(f"unknown language {language!r}")
        self.code = language
        self.t = _catalogue(language)

    def __call__(self, message: str, **values: object) -> str:
        text = self.t.ugettext(message)
        return text % values if values else text

    def kwh(self, value: float | int | Decimal) -> str:
        return format_decimal(value, format="#,##0.##", locale=self.code) + " kWh"

    def vnd(self, value: int | Decimal) -> str:
        return format_currency(value, "VND", locale=self.code)

    def vnd_sms(self, value: int | Decimal) -> str:
        # "₫" has no GSM-7 form; SMS in Vietnam write "d" or "VND".
        return format_decimal(value, format="#,##0", locale=self.code) + " VND"

    def day(self, value: date) -> str:
        return format_date(value, "dd/MM/yyyy" if self.code == "vi" else "d MMM yyyy", self.code)

    def when(self, value: datetime, zone: ZoneInfo) -> str:
        pattern = "HH:mm dd/MM/yyyy" if self.code == "vi" else "d MMM yyyy HH:mm"
        return format_datetime(value.astimezone(zone), pattern, locale=self.code)

    def period(self, value: str) -> str:
        year, month = value.split("-")
        return f"{month}/{year}"

    def email(self, subject: str, *paragraphs: str) -> Email:
        body = "\n\n".join([*paragraphs, self(SIGNATURE)]) + "\n"
        return Email(subject, body)


def bill_issued(
    language: str,
    *,
    customer_code: str,
    period: str,
    period_start: date,
    period_end: date,
    consumption_kwh: int,
    total_vnd: int,
    due: date,
) -> Texts:
    """The bill-issued notice: the amount with VAT and the day it is due."""
    _ = _Language(language)
    values = {"code": customer_code, "period": _.period(period), "due": _.day(due)}
    email = _.email(
        _(N_("Your electricity bill for %(period)s"), period=values["period"]),
        _(N_("Dear customer %(code)s,"), code=customer_code),
        _(
            N_(
                "Your electricity bill for %(start)s – %(end)s has been issued: %(kwh)s, "
                "%(total)s including VAT. Please pay by %(due)s."
            ),
            start=_.day(period_start),
            end=_.day(period_end),
            kwh=_.kwh(consumption_kwh),
            total=_.vnd(total_vnd),
            due=values["due"],
        ),
        _(N_("Look up your meter and this bill, line by line, on the Doxa website.")),
    )
    sms = _(
        N_("Doxa: electricity bill %(period)s for %(code)s: %(total)s, please pay by %(due)s."),
        total=_.vnd_sms(total_vnd),
        **values,
    )
    return Texts(email, gsm.fit(sms))


def threshold(
    language: str,
    *,
    customer_code: str,
    period_start: date,
    kwh: float,
    limit_kwh: float,
    percent: int | None = None,
    last_bill_kwh: int | None = None,
) -> Texts:
    """The usage alert: this billing month has reached the customer's level (kWh, or % above
    their last bill)."""
    _ = _Language(language)
    if percent is not None and last_bill_kwh is not None:
        limit = _(
            N_("%(pct)d%% above your last bill (%(last)s)"),
            pct=percent,
            last=_.kwh(last_bill_kwh),
        )
    else:
        limit = _.kwh(round(limit_kwh))
    used, since = _.kwh(round(kwh)), _.day(period_start)
    email = _.email(
        _(N_("Your electricity use has reached your alert level")),
        _(N_("Dear customer %(code)s,"), code=customer_code),
        _(
            N_(
                "Since %(since)s, the start of this billing month, you have used %(used)s: "
                "more than the alert level you set, %(limit)s."
            ),
            since=since,
            used=used,
            limit=limit,
        ),
        _(N_("You can change the alert level on your account page.")),
    )
    sms = _(
        N_("Doxa: %(code)s has used %(used)s since %(since)s, above your alert level %(limit)s."),
        code=customer_code,
        used=used,
        since=since,
        limit=limit,
    )
    return Texts(email, gsm.fit(sms))


def outage(
    language: str, *, area: str, start: datetime, end: datetime, reason: str, zone: ZoneInfo
) -> Texts:
    """A planned outage of the customer's area (the same text for every customer there)."""
    _ = _Language(language)
    values = {"area": area, "start": _.when(start, zone), "end": _.when(end, zone)}
    email = _.email(
        _(N_("Planned power outage in %(area)s"), area=area),
        _(N_("Dear customer,")),
        _(
            N_("The power will be cut in %(area)s from %(start)s to %(end)s. Reason: %(reason)s"),
            reason=reason,
            **values,
        ),
        _(N_("We are sorry for the inconvenience.")),
    )
    sms = _(N_("Doxa: planned outage %(area)s from %(start)s to %(end)s. %(reason)s"),
            reason=reason, **values)  # fmt: skip
    return Texts(email, gsm.fit(sms))


def verification_code(language: str, *, customer_code: str, code: str) -> Texts:
    """The one-time code that confirms a new phone number or email address."""
    _ = _Language(language)
    minutes = int(LIFETIME.total_seconds() // 60)
    email = _.email(
        _(N_("Your Doxa confirmation code: %(otp)s"), otp=code),
        _(
            N_(
                "Your code to confirm this email address for customer %(code)s is %(otp)s. "
                "It is valid for %(minutes)d minutes."
            ),
            code=customer_code,
            otp=code,
            minutes=minutes,
        ),
        _(N_("If you did not ask for it, ignore this message: nothing changes.")),
    )
    sms = _(
        N_("Doxa: your confirmation code is %(otp)s (valid %(minutes)d minutes). Never share it."),
        otp=code,
        minutes=minutes,
    )
    return Texts(email, gsm.fit(sms))
