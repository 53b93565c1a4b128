"""What gets queued: bill-issued notices, usage-threshold alerts and planned-outage notices. I/O.

Each function renders the notice in the customer's language for each channel the customer
receives (:func:`channels_for`) and queues it with a dedupe key that names the notice for good,
so calling it again — a re-run, a retry, two schedulers — never queues a second copy:

- ``bill_issued``, key ``bill:<bill id>``: :func:`enqueue_bill_issued`, for the bills that
  ``doxa bills issue`` (issue 13) issues;
- ``threshold``, key ``threshold:<customer id>:<billing-month start>``:
  :func:`check_thresholds`, every 15 minutes in ``doxa notify run`` (or from the scheduler);
- ``outage``, key ``outage:<outage id>``: :func:`enqueue_outage`, when staff plan an outage
  (issue 16).

Only confirmed contacts (``customer_contacts``) receive notices, and only kinds the customer
left switched on.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from care import outbox, render
from care.render import Texts

PAYMENT_DAYS = 7  # a bill is due this many days after its notice, until bills hold a due date
_CHOICE = {"bill_issued": "notify_bill", "threshold": "notify_threshold", "outage": "notify_outage"}


@dataclass(frozen=True)
class Contact:
    customer_id: int
    code: str
    phone: str | None
    email: str | None
    preferred_channel: str
    language: str


def channels_for(contact: Contact) -> list[tuple[str, str]]:
    """(channel, recipient) pairs: the preferred channel when its contact is confirmed, else
    the other one (many rural customers have no email); ``both`` sends on each known one."""
    sms = ("sms", contact.phone) if contact.phone else None
    email = ("email", contact.email) if contact.email else None
    if contact.preferred_channel == "both":
        order = [sms, email]
    elif contact.preferred_channel == "email":
        order = [email or sms]
    else:
        order = [sms or email]
    return [pair for pair in order if pair is not None]


def _contacts_sql(kind: str) -> str:
    return f"""
        SELECT c.id, c.code, k.phone, k.email, k.preferred_channel, k.language
        FROM customer_contacts k JOIN customers c ON c.id = k.customer_id
        WHERE k.{_CHOICE[kind]} AND (k.phone IS NOT NULL OR k.email IS NOT NULL)"""


def _notices(
    kind: str, contact: Contact, texts: Texts, key: str, expires_at: datetime | None = None
) -> list[outbox.Notice]:
    out = []
    for channel, recipient in channels_for(contact):
        subject, body = (
            (texts.email.subject, texts.email.body) if channel == "email" else ("", texts.sms)
        )
        out.append(outbox.Notice(kind, contact.customer_id, channel, recipient,
                                 contact.language, subject, body, key, expires_at))  # fmt: skip
    return out


def enqueue_bill_issued(
    conn: psycopg.Connection,
    bill_ids: Sequence[int],
    now: datetime,
    zone: ZoneInfo,
    payment_days: int = PAYMENT_DAYS,
) -> int:
    """Queue the bill-issued notice of each of these bills that is ``issued`` (others are
    skipped); returns how many notices were new. Issue 13's ``doxa bills issue`` calls this
    with the ids it issued, in its own transaction or after it."""
    if not bill_ids:
        return 0
    rows = conn.execute(
        _contacts_sql("bill_issued")
        + """ AND c.id IN (SELECT customer_id FROM bills WHERE id = ANY(%(ids)s))""",
        {"ids": list(bill_ids)},
    ).fetchall()
    contacts = {r[0]: Contact(*r) for r in rows}
    if not contacts:
        return 0  # (a period issued for customers without contact details reads no bills)
    bills = conn.execute(
        "SELECT id, customer_id, period, period_start, period_end, consumption_kwh, total_vnd"
        " FROM bills WHERE id = ANY(%s) AND status = 'issued' AND customer_id = ANY(%s)"
        " ORDER BY id",
        (list(bill_ids), list(contacts)),
    ).fetchall()
    due = now.astimezone(zone).date() + timedelta(days=payment_days)
    queued: list[outbox.Notice] = []
    for bill_id, customer_id, period, start, end, kwh, total in bills:
        contact = contacts.get(customer_id)
        if contact is None:
            continue
        texts = render.bill_issued(
            contact.language,
            customer_code=contact.code,
            period=period,
            period_start=start,
            period_end=end,
            consumption_kwh=int(kwh),
            total_vnd=int(total),
            due=due,
        )
        queued += _notices("bill_issued", contact, texts, f"bill:{bill_id}")
    return outbox.enqueue(conn, queued, now)


def enqueue_outage(
    conn: psycopg.Connection,
    outage_id: int,
    *,
    province: str,
    customer_prefix: str | None,
    start: datetime,
    end: datetime,
    reason: str,
    now: datetime,
    zone: ZoneInfo,
) -> int:
    """Queue the notice of planned outage ``outage_id`` for every customer of ``province``
    (whose code starts with ``customer_prefix``, when given) who wants outage notices; it
    expires when the outage ends. Returns how many notices were new. For issue 16's
    ``doxa outages add`` and ``/staff/outages``."""
    prefix = (customer_prefix or "").upper()
    area = f"{province} ({prefix})" if prefix else province
    texts = {lang: render.outage(lang, area=area, start=start, end=end, reason=reason, zone=zone)
             for lang in render.LANGUAGES}  # fmt: skip
    pattern = prefix.replace("\\", "\\\\").replace("%", r"\%").replace("_", r"\_") + "%"
    queued: list[outbox.Notice] = []
    with conn.cursor() as cur:
        cur.execute(
            _contacts_sql("outage") + " AND c.province = %s AND c.code LIKE %s ORDER BY c.id",
            (province, pattern),
        )
        for row in cur:
            contact = Contact(*row)
            queued += _notices("outage", contact, texts[contact.language], f"outage:{outage_id}",
                               expires_at=end)  # fmt: skip
    return outbox.enqueue(conn, queued, now)


def enqueue_outage_notices(
    conn: psycopg.Connection, due: Sequence[Any], now: datetime, zone: ZoneInfo
) -> int:
    """Queue the outage notices chosen by ``servicedesk.outage_store.choose_notices`` (issue
    16): per customer, ``planned`` 24 hours ahead, ``changed`` or ``cancelled`` afterwards, each
    once (key ``outage:<id>:<customer>:v<version>:<kind>``), expiring when the outage ends.
    Customers without a confirmed contact, or who switched outage notices off, get none."""
    if not due:
        return 0
    rows = conn.execute(
        _contacts_sql("outage") + " AND c.id = ANY(%s)",
        (sorted({n.customer_id for n in due}),),
    ).fetchall()
    contacts = {r[0]: Contact(*r) for r in rows}
    queued: list[outbox.Notice] = []
    for n in due:
        contact = contacts.get(n.customer_id)
        if contact is None:
            continue
        area = f"{n.province} ({n.customer_prefix})" if n.customer_prefix else n.province
        if n.kind == "cancelled":
            texts = render.outage_cancelled(contact.language, area=area, start=n.starts_at,
                                            zone=zone)  # fmt: skip
        else:
            make = render.outage if n.kind == "planned" else render.outage_changed
            texts = make(contact.language, area=area, start=n.starts_at, end=n.ends_at,
                         reason=n.reason, zone=zone)  # fmt: skip
        key = f"outage:{n.outage_id}:{n.customer_id}:v{n.outage_version}:{n.kind}"
        queued += _notices("outage", contact, texts, key, expires_at=n.ends_at)
    return outbox.enqueue(conn, queued, now)


# -- usage thresholds --------------------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    """A customer's consumption so far in the current billing month (all their meters)."""

    period_start: date
    period_end: date
    kwh: float | None


def month_so_far(
    conn: psycopg.Connection, customer_id: int, now: datetime, zone: ZoneInfo
) -> Usage | None:
    """This billing month's kWh so far, by the metering rule the customer page and the bills
    use (``metering.usage``: from the index at the period start up to the latest reading, across
    resets, times the multiplier), summed over the active meters; the inputs of every meter in
    one batch (``schema.register_inputs``)."""
    from billing.periods import add_months, period_start
    from lookup_web import customer_queries as q
    from metering.calendar import local_midnight
    from metering.usage import use_between
    from schema.register_inputs import registers

    customer, meters = q.customer_and_meters(conn, customer_id)
    if customer is None:
        return None
    start = period_start(now.astimezone(zone).date(), customer.reading_day)
    begins = local_midnight(start, zone)
    latest = {m.id: q.latest_reading(conn, m.id, now) for m in meters if m.active}
    reached = {m: r.ts for m, r in latest.items() if r is not None and r.ts >= begins}
    found = registers(conn, {m: [begins, ts] for m, ts in reached.items()})
    total: float | None = None
    for meter in meters:
        if meter.id not in reached:
            continue
        use = use_between(
            found[meter.id], start, begins, reached[meter.id], meter.multiplier, partial=True
        )
        if use.kwh is not None:
            total = (total or 0.0) + float(use.kwh)
    return Usage(start, add_months(start, 1), total)


@dataclass(frozen=True)
class ThresholdChoice:
    contact: Contact
    threshold_kwh: int | None
    threshold_pct: int | None


def limit_for(choice: ThresholdChoice, last_bill_kwh: int | None) -> float | None:
    """The kWh that set the alert off: the customer's own kWh level, or the last issued bill
    raised by their %; the lower of the two when both are set. Pure."""
    limits = []
    if choice.threshold_kwh is not None:
        limits.append(float(choice.threshold_kwh))
    if choice.threshold_pct is not None and last_bill_kwh:
        limits.append(last_bill_kwh * (1 + choice.threshold_pct / 100))
    return min(limits) if limits else None


def check_thresholds(
    conn: psycopg.Connection,
    now: datetime,
    zone: ZoneInfo,
    customer_ids: Iterable[int] | None = None,
) -> int:
    """Queue a usage alert for each customer whose billing month so far is above their level,
    once per billing month; returns how many notices were new. Runs every 15 minutes in
    ``doxa notify run``; the scheduler (or the readings validation run) may call it too."""
    sql = _contacts_sql("threshold") + (
        " AND (k.threshold_kwh IS NOT NULL OR k.threshold_pct IS NOT NULL)"
    )
    params: dict[str, object] = {}
    if customer_ids is not None:
        sql += " AND c.id = ANY(%(ids)s)"
        params["ids"] = list(customer_ids)
    sql = sql.replace("SELECT c.id,", "SELECT k.threshold_kwh, k.threshold_pct, c.id,", 1)
    queued: list[outbox.Notice] = []
    for row in conn.execute(sql + " ORDER BY c.id", params).fetchall():
        choice = ThresholdChoice(Contact(*row[2:]), row[0], row[1])
        usage = month_so_far(conn, choice.contact.customer_id, now, zone)
        if usage is None or usage.kwh is None:
            continue
        last = conn.execute(
            "SELECT sum(consumption_kwh) FROM bills WHERE customer_id = %s AND status = 'issued'"
            " AND period_end <= %s GROUP BY period_end ORDER BY period_end DESC LIMIT 1",
            (choice.contact.customer_id, usage.period_start),
        ).fetchone()
        last_kwh = int(last[0]) if last and last[0] is not None else None
        limit = limit_for(choice, last_kwh)
        if limit is None or usage.kwh <= limit:
            continue
        by_pct = choice.threshold_kwh is None or (
            last_kwh is not None and limit < float(choice.threshold_kwh)
        )
        texts = render.threshold(
            choice.contact.language,
            customer_code=choice.contact.code,
            period_start=usage.period_start,
            kwh=usage.kwh,
            limit_kwh=limit,
            percent=choice.threshold_pct if by_pct else None,
            last_bill_kwh=last_kwh if by_pct else None,
        )
        key = f"threshold:{choice.contact.customer_id}:{usage.period_start.isoformat()}"
        expires = datetime.combine(usage.period_end, datetime.min.time(), zone)
        queued += _notices("threshold", choice.contact, texts, key, expires_at=expires)
    return outbox.enqueue(conn, queued, now)
