"""Planned-outage notices end to end into the customer-care outbox (issues 15 and 16): the
customers servicedesk chooses get one notice per channel, in their language, 24 hours ahead,
again when the outage changes or is cancelled, never twice; those without a confirmed contact
or who switched outage notices off get none."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from test_staff_helpers import add_customer

from doxa.commands.notify import _outage_notices
from servicedesk import outage_store
from servicedesk.outages import Area

pytestmark = pytest.mark.db
ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
START = datetime(2026, 12, 5, 8, tzinfo=ZONE)
END = START + timedelta(hours=4)
T0 = datetime(2026, 12, 1, 9, tzinfo=ZONE)


def _queued(db) -> list[tuple[str, str, str, str]]:  # type: ignore[no-untyped-def]
    return db.execute(
        "SELECT c.code, n.channel, n.dedupe_key, n.body FROM notices n"
        " JOIN customers c ON c.id = n.customer_id WHERE n.kind = 'outage' ORDER BY n.id"
    ).fetchall()


def test_outage_notices_reach_the_outbox_once_per_step(db) -> None:
    a = add_customer(db, "PB0101000001")
    b = add_customer(db, "PB0101000002")
    off = add_customer(db, "PB0101000003")
    add_customer(db, "PB0101000004")  # no confirmed contact
    db.execute(
        "INSERT INTO customer_contacts (customer_id, phone, email, preferred_channel, language,"
        " notify_outage) VALUES (%s, '+84912345678', NULL, 'sms', 'vi', true),"
        " (%s, NULL, 'b@example.org', 'email', 'en', true),"
        " (%s, '+84912345679', NULL, 'sms', 'vi', false)",
        (a, b, off),
    )
    o = outage_store.add(db, Area("Bình Dương", "PB0101"), START, END, "Bảo trì", "thu", T0)
    job = _outage_notices(ZONE)
    job(db, START - timedelta(hours=30))
    assert _queued(db) == []  # more than 24 hours ahead
    job(db, START - timedelta(hours=20))
    first = _queued(db)
    assert [(code, channel, key) for code, channel, key, _ in first] == [
        ("PB0101000001", "sms", f"outage:{o.id}:{a}:v1:planned"),
        ("PB0101000002", "email", f"outage:{o.id}:{b}:v1:planned"),
    ]
    assert "Binh Duong (PB0101)" in first[0][3] and "08:00 05/12/2026" in first[0][3]
    job(db, START - timedelta(hours=19))
    assert len(_queued(db)) == 2  # never twice

    outage_store.edit(db, o.id, Area("Bình Dương", "PB0101"), START + timedelta(hours=2),
                      END + timedelta(hours=2), "Bảo trì", "thu", START - timedelta(hours=18))  # fmt: skip
    job(db, START - timedelta(hours=17))
    changed = _queued(db)[2:]
    assert [key for _, _, key, _ in changed] == [
        f"outage:{o.id}:{a}:v2:changed",
        f"outage:{o.id}:{b}:v2:changed",
    ]
    assert "10:00 05/12/2026" in changed[0][3] and "da doi" in changed[0][3]
    assert (
        "now runs from 5 Dec 2026 10:00" in changed[1][3]
    )  # English for the customer who chose it

    outage_store.cancel(db, o.id, "Hoãn", "thu", START - timedelta(hours=3))
    job(db, START - timedelta(hours=2))
    cancelled = _queued(db)[4:]
    assert [key for _, _, key, _ in cancelled] == [
        f"outage:{o.id}:{a}:v2:cancelled",
        f"outage:{o.id}:{b}:v2:cancelled",
    ]
    assert "da huy" in cancelled[0][3]  # SMS: GSM-7, without diacritics
    job(db, START - timedelta(hours=1))
    assert len(_queued(db)) == 6
    # Every choice is recorded, contact or not: 4 customers × planned, changed, cancelled.
    assert db.execute("SELECT count(*) FROM outage_notices").fetchone() == (12,)
