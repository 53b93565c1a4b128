"""The service desk's part of the customer's meter page (``customer/_servicedesk.html``), and
the labels of request kinds and states shown across the site."""

from __future__ import annotations

from typing import Any

import psycopg
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from lookup_web import clock
from servicedesk import outage_store, request_store
from servicedesk.errors import ServiceDeskError

# servicedesk's messages, marked here so that message extraction finds them: the error
# templates (servicedesk.errors) and servicedesk.text's field problems.
MESSAGES = (
    _l("no customers in province %(province)s"),
    _l("no customer %(code)s in %(province)s"),
    _l("outage %(id)s is %(state)s"),
    _l("the province is required (at most 100 characters)"),
    _l("the customer-code prefix is letters and digits, e.g. PB0101"),
    _l("give a customer-code prefix or a list of customers, not both"),
    _l("at most %(n)s customer codes"),
    _l("not a customer code: %(code)s"),
    _l("the end must be after the start"),
    _l("the outage has already ended"),
    _l("a planned outage lasts at most 31 days"),
    _l("not an ISO 8601 time: %(text)s"),
    _l("not a plausible time: %(text)s"),
    _l("a request that is %(current)s cannot become %(new)s"),
    _l("no service standard for %(kind)s (%(klass)s, %(area)s) on %(day)s"),
    _l("This field is required."),
    _l("At most %(n)d characters."),
    _l("Control characters (such as NUL) are not allowed."),
    _l("A phone number, e.g. 0912 345 678 or +84 912 345 678."),
)


def describe(exc: ServiceDeskError) -> str:
    """The error in the visitor's language."""
    return _(exc.template, **exc.params) if exc.params else _(exc.template)


def kind_labels() -> dict[str, str]:
    return {
        "new_supply": _("New supply"),
        "meter_check": _("Meter check"),
        "contract_change": _("Contract change"),
        "complaint": _("Complaint"),
    }


def state_labels() -> dict[str, str]:
    return {
        "received": _("received"),
        "in_progress": _("in progress"),
        "done": _("done"),
        "rejected": _("rejected"),
    }


def panel(conn: psycopg.Connection, customer_id: int) -> dict[str, Any]:
    """What the customer's meter page shows of the service desk (``_servicedesk.html``): the
    outages covering them that have not ended, and their latest requests."""
    now = clock.now()
    row = conn.execute("SELECT province FROM customers WHERE id = %s", (customer_id,)).fetchone()
    return {
        "sd_province": row[0] if row else "",
        "sd_outages": outage_store.upcoming_for_customer(conn, customer_id, now, limit=5),
        "sd_requests": request_store.for_customer(conn, customer_id, limit=3),
        "sd_now": now,
        "sd_kinds": kind_labels(),
        "sd_states": state_labels(),
    }
