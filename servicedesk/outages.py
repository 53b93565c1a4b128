"""Planned outages: the area an outage covers, checks on what staff enter, and which notices are
due to whom, when.

**Area.** A province, and optionally a customer-code prefix (a branch, e.g. ``PB0101``) or a
list of customer codes — never both. ``outage_store.COVERS_SQL`` is the same rule in SQL (for
the customer page and for choosing notices over millions of customers); a test holds the two
equal.

**Notices** (handed to the customer-care outbox), decided per outage and customer by
:func:`notice_due` from what the customer was last told:

- ``planned``: once per outage, from ``NOTICE_LEAD`` (24 hours) before it starts until it
  starts — so an outage entered less than 24 hours ahead is announced at once; never after it
  has started (the customer can no longer plan for it).
- ``changed``: the outage was edited (its ``version`` went up: times, reason or area) after the
  customer was told, and it has not ended. Sent at once, however far ahead the new times are.
- ``cancelled``: the outage was cancelled, or an edit left the customer outside its area, after
  they were told, and it has not ended. Customers never told are not told of a cancellation.

A customer told ``cancelled`` who is covered again later (the area widened back) counts as
never told. Each notice is chosen once (``outage_notices``' primary key).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from servicedesk.errors import ServiceDeskError

NOTICE_LEAD = timedelta(hours=24)
STATES = ("planned", "cancelled")
MAX_CODES = 1000
PREFIX_RE = re.compile(r"[A-Z0-9]{1,13}")
CODE_RE = re.compile(r"[A-Z]{2}[A-Z0-9]{4}[0-9]{5,7}")  # contract §6, as customers.code
NoticeKind = Literal["planned", "changed", "cancelled"]


@dataclass(frozen=True)
class Area:
    province: str
    customer_prefix: str | None = None
    customer_codes: tuple[str, ...] = ()

    def covers(self, province: str, code: str) -> bool:
        if province != self.province:
            return False
        if self.customer_prefix is not None and not code.startswith(self.customer_prefix):
            return False
        return not self.customer_codes or code in self.customer_codes


def parse_codes(text: str) -> tuple[str, ...]:
    """Customer codes separated by commas, semicolons, spaces or lines, upper-cased, each once."""
    found = text.replace(",", " ").replace(";", " ").upper().split()
    return tuple(dict.fromkeys(found))


def make_area(province: str, prefix: str | None, codes: Sequence[str] = ()) -> Area:
    """A checked area (the province's existence is checked against the database elsewhere)."""
    province = province.strip()
    if not province or len(province) > 100:
        raise ServiceDeskError("the province is required (at most 100 characters)")
    prefix = (prefix or "").strip().upper() or None
    if prefix is not None and not PREFIX_RE.fullmatch(prefix):
        raise ServiceDeskError("the customer-code prefix is letters and digits, e.g. PB0101")
    codes = tuple(codes)
    if prefix and codes:
        raise ServiceDeskError("give a customer-code prefix or a list of customers, not both")
    if len(codes) > MAX_CODES:
        raise ServiceDeskError("at most %(n)s customer codes", n=MAX_CODES)
    bad = [c for c in codes if not CODE_RE.fullmatch(c)]
    if bad:
        raise ServiceDeskError("not a customer code: %(code)s", code=bad[0][:20])
    return Area(province, prefix, codes)


def check_times(starts_at: datetime, ends_at: datetime, now: datetime) -> None:
    if starts_at.tzinfo is None or ends_at.tzinfo is None:
        raise ValueError("times must carry their time zone")
    if ends_at <= starts_at:
        raise ServiceDeskError("the end must be after the start")
    if ends_at <= now:
        raise ServiceDeskError("the outage has already ended")
    if ends_at - starts_at > timedelta(days=31):
        raise ServiceDeskError("a planned outage lasts at most 31 days")


def display_state(state: str, starts_at: datetime, ends_at: datetime, now: datetime) -> str:
    """``cancelled``, else ``planned`` (ahead), ``ongoing`` or ``ended`` at ``now``."""
    if state == "cancelled":
        return "cancelled"
    if now < starts_at:
        return "planned"
    return "ongoing" if now < ends_at else "ended"


@dataclass(frozen=True)
class LastNotice:
    kind: NoticeKind
    version: int


def notice_due(
    *,
    covered: bool,
    version: int,
    starts_at: datetime,
    ends_at: datetime,
    last: LastNotice | None,
    now: datetime,
) -> NoticeKind | None:
    """The notice due now to one customer about one outage (see the module docstring).
    ``covered``: the outage is planned (not cancelled) and its area covers the customer."""
    told = last is not None and last.kind != "cancelled"
    if not covered:
        return "cancelled" if told and now < ends_at else None
    if not told:
        return "planned" if starts_at - NOTICE_LEAD <= now < starts_at else None
    assert last is not None
    return "changed" if last.version < version and now < ends_at else None


def parse_time(text: str, zone: ZoneInfo) -> datetime:
    """ISO 8601 with an offset, or without one as local time in ``zone`` (what the staff page's
    date-and-time fields send)."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ServiceDeskError("not an ISO 8601 time: %(text)s", text=text[:40]) from None
    if not 2000 <= value.year <= 2200:
        raise ServiceDeskError("not a plausible time: %(text)s", text=text[:40])
    return value.replace(tzinfo=zone) if value.tzinfo is None else value
