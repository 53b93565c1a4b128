"""The service desk's pure rules: working days and deadlines, which standard applies, on time or
late, and which outage notice is due to a customer when."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from servicedesk import calendar, ontime, outages, standards, text
from servicedesk.errors import ServiceDeskError
from servicedesk.outages import Area, LastNotice, notice_due
from servicedesk.standards import Standard

ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
# 2026: National Day Wed 2 Sep and its adjacent day Tue 1 Sep.
SEPTEMBER = calendar.WorkingCalendar.of([date(2026, 9, 1), date(2026, 9, 2)])


def test_the_filing_day_does_not_count_and_weekends_and_holidays_are_skipped() -> None:
    # Filed Friday 28 Aug 2026 at 16:55, 3 working days: Sat 29, Sun 30 skipped; Mon 31 Aug is
    # day 1; Tue 1 and Wed 2 Sep are holidays; Thu 3 Sep day 2; Fri 4 Sep day 3. Due by the end
    # of Fri 4 Sep: Sat 5 Sep 00:00 local.
    filed = datetime(2026, 8, 28, 16, 55, tzinfo=ZONE)
    assert calendar.deadline(filed, 3, SEPTEMBER, ZONE) == datetime(2026, 9, 5, tzinfo=ZONE)
    # Filed on the Saturday: the same three days.
    assert calendar.deadline(filed + timedelta(days=1), 3, SEPTEMBER, ZONE) == datetime(
        2026, 9, 5, tzinfo=ZONE
    )
    # A UTC instant that is already Saturday in Vietnam (17:30 UTC Fri = 00:30 Sat local).
    late_friday = datetime(2026, 8, 28, 17, 30, tzinfo=UTC)
    assert calendar.deadline(late_friday, 1, SEPTEMBER, ZONE) == datetime(2026, 9, 1, tzinfo=ZONE)
    with pytest.raises(ValueError):
        calendar.WorkingCalendar.of([]).add_working_days(date(2026, 1, 1), 0)


@given(st.dates(date(2025, 1, 1), date(2028, 12, 31)), st.integers(1, 30))
def test_a_deadline_holds_exactly_n_working_days(day: date, n: int) -> None:
    cal = SEPTEMBER
    last = cal.add_working_days(day, n)
    between = [day + timedelta(days=i) for i in range(1, (last - day).days + 1)]
    assert sum(cal.is_working_day(d) for d in between) == n
    assert cal.is_working_day(last)


def test_overdue_flips_at_the_deadline() -> None:
    due = datetime(2026, 9, 5, tzinfo=ZONE)
    tick = timedelta(microseconds=1)
    assert not calendar.is_overdue(due, None, due - tick)
    assert calendar.is_overdue(due, None, due)
    assert not calendar.is_overdue(due, due - tick, due + timedelta(days=9))
    assert ontime.outcome(due, due - tick, due) == "on_time"
    assert ontime.outcome(due, due, due) == "late"
    assert ontime.outcome(due, None, due - tick) == "pending"
    assert ontime.outcome(due, None, due) == "late"


STANDARDS = [
    Standard(1, "new_supply", "residential", "town", 3, date(2017, 5, 15)),
    Standard(2, "new_supply", "residential", "countryside", 5, date(2017, 5, 15)),
    Standard(3, "new_supply", "non_residential", "any", 7, date(2017, 5, 15)),
    Standard(4, "complaint", "any", "any", 5, date(2017, 5, 15)),
    Standard(5, "complaint", "residential", "any", 4, date(2027, 1, 1)),
]


def test_the_most_specific_standard_in_force_wins() -> None:
    day = date(2026, 8, 28)
    assert standards.pick(STANDARDS, "new_supply", "residential", "town", day).working_days == 3
    assert (
        standards.pick(STANDARDS, "new_supply", "residential", "countryside", day).working_days == 5
    )
    assert standards.pick(STANDARDS, "new_supply", "non_residential", "town", day).id == 3
    assert standards.pick(STANDARDS, "complaint", "residential", "town", day).id == 4
    assert standards.pick(STANDARDS, "complaint", "residential", "town", date(2027, 1, 1)).id == 5
    with pytest.raises(ServiceDeskError):
        standards.pick(STANDARDS, "meter_check", "residential", "town", day)
    with pytest.raises(ServiceDeskError):
        standards.pick(STANDARDS, "new_supply", "residential", "town", date(2016, 1, 1))


def test_area_comes_from_the_longest_matching_prefix() -> None:
    rows = [("PB01", "countryside"), ("PB0101", "town"), ("PB0101000009", "countryside")]
    assert standards.area_for("PB0101000001", rows) == "town"
    assert standards.area_for("PB0102000001", rows) == "countryside"
    assert standards.area_for("PB0101000009", rows) == "countryside"
    assert standards.area_for("PC0101000001", rows) == standards.DEFAULT_AREA == "town"
    assert standards.customer_class("residential") == "residential"
    assert standards.customer_class("business") == "non_residential"


def test_state_changes_follow_the_arrows() -> None:
    standards.check_transition("received", "in_progress")
    standards.check_transition("received", "rejected")
    standards.check_transition("in_progress", "done")
    for current, new in [("received", "done"), ("done", "in_progress"), ("rejected", "done")]:
        with pytest.raises(ServiceDeskError):
            standards.check_transition(current, new)


def test_free_text_is_limited_and_control_characters_refused() -> None:
    assert text.check("<script>alert(1)</script>", 100, "reason") == "<script>alert(1)</script>"
    assert text.check("  đi kèm khoảng trắng \n", 100, "x") == "  đi kèm khoảng trắng \n"
    for bad in ("", "   ", "a\x00b", "x" * 101, "bell\x07"):
        with pytest.raises(ServiceDeskError):
            text.check(bad, 100, "reason")
    assert text.phone_problem("0912 345 678") is None
    assert text.phone_problem("+84 (912) 345-678") is None
    for bad in ("", "12345", "phone me", "0" * 40, "0912\x00345678"):
        assert text.phone_problem(bad) is not None


def test_an_area_is_a_province_and_a_prefix_or_a_list() -> None:
    assert outages.make_area(" Bình Dương ", "pb0101") == Area("Bình Dương", "PB0101")
    area = outages.make_area("Bình Dương", None, outages.parse_codes("pb0101000001, PB0101000002"))
    assert area.customer_codes == ("PB0101000001", "PB0101000002")
    assert area.covers("Bình Dương", "PB0101000002")
    assert not area.covers("Bình Dương", "PB0101000003")
    assert not area.covers("Đồng Nai", "PB0101000001")
    assert Area("Bình Dương", "PB0101").covers("Bình Dương", "PB0101999999")
    assert not Area("Bình Dương", "PB0101").covers("Bình Dương", "PB0102000001")
    for province, prefix, codes in [
        ("", None, ()),
        ("Bình Dương", "PB-01", ()),
        ("Bình Dương", "PB01", ("PB0101000001",)),
        ("Bình Dương", None, ("<script>",)),
    ]:
        with pytest.raises(ServiceDeskError):
            outages.make_area(province, prefix, codes)


def test_outage_times_are_checked() -> None:
    now = datetime(2026, 12, 1, 8, tzinfo=ZONE)
    outages.check_times(now + timedelta(hours=1), now + timedelta(hours=5), now)
    for start, end in [(5, 1), (1, 1), (-5, -1), (1, 24 * 40)]:
        with pytest.raises(ServiceDeskError):
            outages.check_times(now + timedelta(hours=start), now + timedelta(hours=end), now)
    assert outages.parse_time("2026-12-05T08:00", ZONE) == datetime(2026, 12, 5, 8, tzinfo=ZONE)
    assert outages.parse_time("2026-12-05T08:00+00:00", ZONE).utcoffset() == timedelta(0)
    for bad in ("tomorrow", "1800-01-01T00:00", "2026-13-01T00:00"):
        with pytest.raises(ServiceDeskError):
            outages.parse_time(bad, ZONE)


START = datetime(2026, 12, 5, 8, tzinfo=ZONE)
END = START + timedelta(hours=8)
LEAD = outages.NOTICE_LEAD


@pytest.mark.parametrize(
    ("covered", "version", "last", "now", "expected"),
    [
        # Never told: announced from 24 h before the start until the start, never after.
        (True, 1, None, START - LEAD - timedelta(seconds=1), None),
        (True, 1, None, START - LEAD, "planned"),
        (True, 1, None, START - timedelta(seconds=1), "planned"),
        (True, 1, None, START, None),
        # Told: nothing more until the outage changes; a change is sent at once until the end.
        (True, 1, LastNotice("planned", 1), START - timedelta(hours=2), None),
        (True, 2, LastNotice("planned", 1), START - timedelta(days=9), "changed"),
        (True, 2, LastNotice("planned", 1), END - timedelta(seconds=1), "changed"),
        (True, 2, LastNotice("planned", 1), END, None),
        (True, 3, LastNotice("changed", 2), START - timedelta(hours=1), "changed"),
        (True, 3, LastNotice("changed", 3), START - timedelta(hours=1), None),
        # Cancelled or no longer covered: only customers told are told, once, before the end.
        (False, 1, None, START - timedelta(hours=1), None),
        (False, 1, LastNotice("planned", 1), START - timedelta(hours=1), "cancelled"),
        (False, 2, LastNotice("changed", 2), START + timedelta(hours=1), "cancelled"),
        (False, 1, LastNotice("planned", 1), END, None),
        (False, 1, LastNotice("cancelled", 1), START - timedelta(hours=1), None),
        # Told "cancelled", then covered again: as if never told.
        (True, 3, LastNotice("cancelled", 2), START - timedelta(hours=1), "planned"),
        (True, 3, LastNotice("cancelled", 2), START - timedelta(days=3), None),
    ],
)
def test_which_notice_is_due(covered, version, last, now, expected) -> None:  # type: ignore[no-untyped-def]
    found = notice_due(
        covered=covered, version=version, starts_at=START, ends_at=END, last=last, now=now
    )
    assert found == expected


def test_display_state() -> None:
    assert outages.display_state("planned", START, END, START - timedelta(1)) == "planned"
    assert outages.display_state("planned", START, END, START) == "ongoing"
    assert outages.display_state("planned", START, END, END) == "ended"
    assert outages.display_state("cancelled", START, END, START) == "cancelled"
