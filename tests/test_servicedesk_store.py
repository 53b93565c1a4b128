"""The service desk against the real database: deadlines from the seeded standards and holidays,
state changes, the on-time share against a hand count, outages (audited) and their notices."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest
from test_staff_helpers import add_customer

from schema import audit
from servicedesk import ontime, outage_store, request_store
from servicedesk.errors import ServiceDeskError
from servicedesk.outages import NOTICE_LEAD, Area

pytestmark = pytest.mark.db
ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
NOW = datetime(2026, 8, 28, 15, 30, tzinfo=ZONE)  # a Friday


def _file(db: psycopg.Connection, customer: int, at: datetime, kind: str = "new_supply"):  # type: ignore[no-untyped-def]
    return request_store.file(db, customer, kind, "Xin lắp công tơ mới", "0912 345 678", at, ZONE)


def test_deadlines_come_from_the_seeded_standards_and_holidays(db) -> None:
    town = add_customer(db, "PB0101000001")
    country = add_customer(db, "PB0202000001")
    shop = add_customer(db, "PB0101000002")
    db.execute("UPDATE customers SET tariff_group = 'business' WHERE id = %s", (shop,))
    db.execute("INSERT INTO service_areas (customer_prefix, area) VALUES ('PB02', 'countryside')")

    # New residential supply in town, 3 working days, filed Friday 28 Aug 2026 15:30, before
    # National Day (Wed 2 Sep) and its adjacent day (Tue 1 Sep): Mon 31 Aug = day 1, Thu 3 Sep
    # = day 2, Fri 4 Sep = day 3 → due by the end of Friday 4 Sep, i.e. Sat 5 Sep 00:00.
    r = _file(db, town, NOW)
    assert (r.area, r.customer_class, r.working_days) == ("town", "residential", 3)
    assert r.deadline_at == datetime(2026, 9, 5, tzinfo=ZONE)
    assert r.state == "received" and r.province == "Bình Dương"

    # Countryside, 5 days, filed Friday 24 Apr 2026, before the Hùng Kings' compensatory day
    # (Mon 27 Apr) and 30 Apr / 1 May (Thu, Fri): Tue 28 = 1, Wed 29 = 2, Mon 4 May = 3,
    # Tue 5 = 4, Wed 6 = 5 → due Thu 7 May 00:00.
    r = _file(db, country, datetime(2026, 4, 24, 9, tzinfo=ZONE))
    assert (r.area, r.working_days) == ("countryside", 5)
    assert r.deadline_at == datetime(2026, 5, 7, tzinfo=ZONE)

    # Non-residential, 7 days, filed Friday 12 Feb 2027 (Tết 2027 estimated 4–10 Feb is
    # behind it): Mon 15 … Fri 19 = 1–5, Mon 22 = 6, Tue 23 = 7 → due Wed 24 Feb 00:00.
    r = _file(db, shop, datetime(2027, 2, 12, 10, tzinfo=ZONE))
    assert (r.customer_class, r.working_days) == ("non_residential", 7)
    assert r.deadline_at == datetime(2027, 2, 24, tzinfo=ZONE)

    # Filed Thursday 12 Feb 2026, 3 days across Tết 2026 (Mon 16 – Fri 20 Feb): Fri 13 = 1,
    # Mon 23 = 2, Tue 24 = 3 → due Wed 25 Feb 00:00.
    r = _file(db, town, datetime(2026, 2, 12, 10, tzinfo=ZONE))
    assert r.deadline_at == datetime(2026, 2, 25, tzinfo=ZONE)

    # A standard from a later date is one insert; requests filed before it keep theirs.
    db.execute(
        "INSERT INTO service_standards (kind, customer_class, area, working_days,"
        " effective_from, source) VALUES ('new_supply', 'residential', 'town', 2, '2026-09-01', 't')"
    )
    assert _file(db, town, datetime(2026, 9, 3, 9, tzinfo=ZONE)).working_days == 2
    assert request_store.get(db, 1).working_days == 3  # type: ignore[union-attr]


def test_bad_requests_are_refused_with_a_reason(db) -> None:
    c = add_customer(db, "PB0101000001")
    for kind, description, phone in [
        ("teleport", "x", "0912345678"),
        ("complaint", "", "0912345678"),
        ("complaint", "a\x00b", "0912345678"),
        ("complaint", "x" * 2001, "0912345678"),
        ("complaint", "x", "call me"),
    ]:
        with pytest.raises(ServiceDeskError):
            request_store.file(db, c, kind, description, phone, NOW, ZONE)
    assert db.execute("SELECT count(*) FROM service_requests").fetchone() == (0,)


def test_state_changes_are_recorded_with_their_notes(db) -> None:
    c = add_customer(db, "PB0101000001")
    r = _file(db, c, NOW)
    later = NOW + timedelta(hours=3)
    request_store.change_state(db, r.id, "in_progress", "Đã cử thợ", "lan", later)
    with pytest.raises(ServiceDeskError):
        request_store.change_state(db, r.id, "done", "", "lan", later)  # a note is required
    with pytest.raises(ServiceDeskError):
        request_store.change_state(db, r.id, "received", "back", "lan", later)
    done = request_store.change_state(db, r.id, "done", "Đã lắp <b>xong</b>", "lan", later)
    assert done.state == "done" and done.closed_at == later and done.outcome(later) == "on_time"
    events = request_store.events(db, r.id)
    assert [(e.actor, e.from_state, e.to_state, e.note) for e in events] == [
        ("customer", None, "received", ""),
        ("lan", "received", "in_progress", "Đã cử thợ"),
        ("lan", "in_progress", "done", "Đã lắp <b>xong</b>"),
    ]
    logged = audit.recent(db, action="request.state")
    assert [e.detail["to"] for e in logged] == ["done", "in_progress"]


def test_overdue_filter_flips_at_the_deadline(db) -> None:
    c = add_customer(db, "PB0101000001")
    r = _file(db, c, NOW)
    due = r.deadline_at
    before, at = due - timedelta(microseconds=1), due
    assert [x.id for x in request_store.search(db, before, overdue=True)] == []
    assert [x.id for x in request_store.search(db, before, overdue=False)] == [r.id]
    assert [x.id for x in request_store.search(db, at, overdue=True)] == [r.id]
    assert [x.id for x in request_store.search(db, at, overdue=False)] == []
    assert not r.overdue(before) and r.overdue(at)


def test_on_time_share_matches_a_hand_count(db) -> None:
    bd = add_customer(db, "PB0101000001", province="Bình Dương")
    dn = add_customer(db, "PB0303000001", province="Đồng Nai")
    # Five requests filed Mon 31 Aug 2026, 3 working days: Tue 1 and Wed 2 Sep are holidays,
    # Thu 3 = day 1, Fri 4 = 2, Mon 7 = 3 → all due Tue 8 Sep 00:00 (September). Bình Dương:
    #   A done Fri 4 Sep → on time;  B done at 00:00 on 8 Sep, the deadline itself → late;
    #   C rejected Thu 3 Sep → on time (an answer in time);  D still open on 9 Sep → late;
    #   E filed Mon 7 Sep, due Thu 10 Sep, open on 9 Sep → pending (left out of the share).
    # Đồng Nai: F done Wed 2 Sep → on time.
    filed = datetime(2026, 8, 31, 9, tzinfo=ZONE)
    ids = [_file(db, bd, filed).id for _ in range(4)]
    f = _file(db, dn, filed).id
    due = datetime(2026, 9, 8, tzinfo=ZONE)
    assert request_store.get(db, ids[0]).deadline_at == due  # type: ignore[union-attr]
    closes = {
        ids[0]: ("done", datetime(2026, 9, 4, 10, tzinfo=ZONE)),
        ids[1]: ("done", datetime(2026, 9, 8, 0, 0, tzinfo=ZONE)),  # at the deadline: late
        ids[2]: ("rejected", datetime(2026, 9, 3, 11, tzinfo=ZONE)),
        f: ("done", datetime(2026, 9, 2, 16, tzinfo=ZONE)),
    }
    for rid, (state, at) in closes.items():
        request_store.change_state(db, rid, "in_progress", "bắt đầu", "lan", at - timedelta(1))
        request_store.change_state(db, rid, state, "xong", "lan", at)
    pending = _file(db, bd, datetime(2026, 9, 7, 9, tzinfo=ZONE))  # due Thu 10 Sep 00:00
    now = datetime(2026, 9, 9, 12, tzinfo=ZONE)
    sept = date(2026, 9, 1)
    found = request_store.on_time_shares(db, now, ZONE, sept, sept)
    # Bình Dương: on time A, C = 2; late B, D = 2; pending 1 → 2 / 4 = 50 %. Đồng Nai: 1 / 1.
    assert found == [
        ontime.MonthShare("Bình Dương", sept, 2, 2, 1),
        ontime.MonthShare("Đồng Nai", sept, 1, 0, 0),
    ]
    assert found[0].share == 0.5 and found[1].share == 1.0
    # The SQL and the pure rule agree on the same rows.
    rows = db.execute("SELECT province, deadline_at, closed_at FROM service_requests").fetchall()
    assert ontime.shares(rows, now, ZONE) == found
    # Once its deadline has passed, the pending one counts as late.
    after = request_store.on_time_shares(db, pending.deadline_at, ZONE, sept, sept)
    assert after[0] == ontime.MonthShare("Bình Dương", sept, 2, 3, 0)
    assert request_store.on_time_shares(db, now, ZONE, date(2026, 10, 1), date(2026, 10, 1)) == []


# -- outages ------------------------------------------------------------------------------------

START = datetime(2026, 12, 5, 8, tzinfo=ZONE)
END = START + timedelta(hours=8)
T0 = datetime(2026, 12, 1, 9, tzinfo=ZONE)


def _customers(db: psycopg.Connection) -> dict[str, int]:
    return {
        code: add_customer(db, code, province=province)
        for code, province in [
            ("PB0101000001", "Bình Dương"),
            ("PB0101000002", "Bình Dương"),
            ("PB0102000001", "Bình Dương"),
            ("PB0303000001", "Đồng Nai"),
        ]
    }


def test_covers_in_sql_equals_the_python_rule(db) -> None:
    ids = _customers(db)
    areas = [
        Area("Bình Dương"),
        Area("Bình Dương", "PB0101"),
        Area("Bình Dương", "PB01"),
        Area("Bình Dương", None, ("PB0101000002", "PB0102000001")),
        Area("Đồng Nai"),
        Area("Đồng Nai", "PB0101"),
    ]
    province_of = {code: "Đồng Nai" if code.startswith("PB03") else "Bình Dương" for code in ids}
    for area in areas:
        o = outage_store.add(db, area, START, END, "Bảo trì", "thu", T0)
        expected = {code for code in ids if area.covers(province_of[code], code)}
        sql = {
            r[0]
            for r in db.execute(
                f"SELECT c.code FROM planned_outages o JOIN customers c ON {outage_store.COVERS_SQL}"
                " WHERE o.id = %s",
                (o.id,),
            )
        }
        assert sql == expected, area
        assert outage_store.covered_customers(db, o.id) == len(expected)


def test_outages_are_checked_audited_and_shown_to_the_right_customers(db) -> None:
    ids = _customers(db)
    with pytest.raises(ServiceDeskError, match="no customers in province"):
        outage_store.add(db, Area("Hà Giang"), START, END, "x", "thu", T0)
    with pytest.raises(ServiceDeskError, match="PB0303000001"):
        outage_store.add(
            db, Area("Bình Dương", None, ("PB0303000001",)), START, END, "x", "thu", T0
        )
    with pytest.raises(ServiceDeskError):
        outage_store.add(db, Area("Bình Dương"), START, END, "x\x00", "thu", T0)
    o = outage_store.add(db, Area("Bình Dương", "PB0101"), START, END, "Bảo trì", "thu", T0)
    shown = {
        c: [x.id for x in outage_store.upcoming_for_customer(db, i, T0)] for c, i in ids.items()
    }
    assert shown == {
        "PB0101000001": [o.id],
        "PB0101000002": [o.id],
        "PB0102000001": [],
        "PB0303000001": [],
    }
    assert [x.id for x in outage_store.upcoming_in(db, "Bình Dương", T0)] == [o.id]
    assert outage_store.upcoming_in(db, "Bình Dương", END) == []

    edited = outage_store.edit(
        db, o.id, Area("Bình Dương"), START, END + timedelta(hours=1), "Bảo trì", "minh", T0
    )
    assert edited.version == 2 and edited.updated_by == "minh"
    same = outage_store.edit(
        db, o.id, Area("Bình Dương"), START, END + timedelta(hours=1), "Bảo trì", "minh", T0
    )
    assert same.version == 2  # nothing changed, nothing written
    assert outage_store.upcoming_for_customer(db, ids["PB0102000001"], T0)[0].id == o.id

    outage_store.cancel(db, o.id, "Hoãn do mưa", "minh", T0)
    assert all(outage_store.upcoming_for_customer(db, i, T0) == [] for i in ids.values())
    with pytest.raises(ServiceDeskError, match="cancelled"):
        outage_store.cancel(db, o.id, "again", "minh", T0)
    with pytest.raises(ServiceDeskError):
        outage_store.edit(db, o.id, Area("Bình Dương"), START, END, "x", "minh", T0)
    log = audit.recent(db, action="outage.")
    assert [(e.actor, e.action) for e in log] == [
        ("minh", "outage.cancel"),
        ("minh", "outage.edit"),
        ("thu", "outage.add"),
    ]
    assert log[1].detail["before"]["customer_prefix"] == "PB0101"
    assert log[1].detail["after"]["customer_prefix"] is None
    assert log[0].detail["note"] == "Hoãn do mưa"


def _chosen(db: psycopg.Connection, now: datetime) -> set[tuple[str, str]]:
    handed: list[tuple[str, str]] = []
    outage_store.choose_notices(
        db, now, lambda conn, ns: handed.extend((n.customer_code, n.kind) for n in ns)
    )
    return set(handed)


def test_notices_24_hours_ahead_once_then_on_change_and_cancellation(db) -> None:
    _customers(db)
    o = outage_store.add(db, Area("Bình Dương", "PB0101"), START, END, "Bảo trì", "thu", T0)
    assert _chosen(db, START - NOTICE_LEAD - timedelta(seconds=1)) == set()
    at = START - NOTICE_LEAD
    assert _chosen(db, at) == {("PB0101000001", "planned"), ("PB0101000002", "planned")}
    assert _chosen(db, at + timedelta(hours=1)) == set()  # once per outage and customer
    # Widened to the whole province: the customers told hear of the change, the new one gets
    # the announcement (it is within 24 hours).
    outage_store.edit(db, o.id, Area("Bình Dương"), START, END, "Bảo trì", "thu", at)
    assert _chosen(db, at + timedelta(hours=2)) == {
        ("PB0101000001", "changed"),
        ("PB0101000002", "changed"),
        ("PB0102000001", "planned"),
    }
    # Narrowed to one customer: the others are told it no longer concerns them.
    outage_store.edit(
        db, o.id, Area("Bình Dương", None, ("PB0101000001",)), START, END, "Bảo trì", "thu", at
    )
    assert _chosen(db, at + timedelta(hours=3)) == {
        ("PB0101000001", "changed"),
        ("PB0101000002", "cancelled"),
        ("PB0102000001", "cancelled"),
    }
    outage_store.cancel(db, o.id, "Hoãn", "thu", at)
    assert _chosen(db, at + timedelta(hours=4)) == {("PB0101000001", "cancelled")}
    assert _chosen(db, at + timedelta(hours=5)) == set()
    assert outage_store.due_notices(db, at + timedelta(hours=5)) == []


def test_an_outage_moved_far_ahead_is_announced_again_as_a_change_at_once(db) -> None:
    _customers(db)
    o = outage_store.add(db, Area("Đồng Nai"), START, END, "Bảo trì", "thu", T0)
    assert _chosen(db, START - timedelta(hours=3)) == {("PB0303000001", "planned")}
    later = START + timedelta(days=7)
    outage_store.edit(
        db,
        o.id,
        Area("Đồng Nai"),
        later,
        later + timedelta(hours=4),
        "Bảo trì",
        "thu",
        START - timedelta(hours=2),
    )
    assert _chosen(db, START - timedelta(hours=1)) == {("PB0303000001", "changed")}
    assert _chosen(db, later - timedelta(hours=1)) == set()


def test_a_notice_is_handed_over_once_even_when_runs_overlap(db, db_url) -> None:
    _customers(db)
    outage_store.add(db, Area("Đồng Nai"), START, END, "Bảo trì", "thu", T0)
    at = START - timedelta(hours=1)
    with psycopg.connect(db_url, autocommit=True) as other:
        first = outage_store.due_notices(db, at)
        second = outage_store.due_notices(other, at)
        assert first == second and len(first) == 1
        assert len(outage_store.choose_notices(db, at)) == 1
        assert outage_store.choose_notices(other, at) == []
    assert db.execute("SELECT count(*) FROM outage_notices").fetchone() == (1,)


def test_utc_times_are_instants(db) -> None:
    _customers(db)
    start_utc = START.astimezone(UTC)
    o = outage_store.add(
        db, Area("Đồng Nai"), start_utc, start_utc + timedelta(hours=1), "x", "t", T0
    )
    assert o.starts_at == START
