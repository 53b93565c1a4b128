"""Pricing (contract §8), pure: hand-computed bills with the arithmetic in the comments, and
properties checked by Hypothesis. The tables are the seeded residential ones (migration 0200)."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing.tariff import (
    Priced,
    TariffError,
    TariffTable,
    Tier,
    VatRate,
    days_in_month_before,
    price,
)
from metering.rounding import half_up, half_up_3


def table(effective_from: date, *tiers: tuple[int | None, int]) -> TariffTable:
    return TariffTable(effective_from, tuple(Tier(i + 1, w, p) for i, (w, p) in enumerate(tiers)))


# Decision 2699/QĐ-BCT and Decision 1279/QĐ-BCT, VND/kWh before VAT.
T_2024 = table(
    date(2024, 10, 11), (50, 1893), (50, 1956), (100, 2271), (100, 2860), (100, 3197), (None, 3302)
)
T_2025 = table(
    date(2025, 5, 10), (50, 1984), (50, 2050), (100, 2380), (100, 2998), (100, 3350), (None, 3460)
)
TARIFFS = [T_2024, T_2025]
VAT = [
    VatRate(date(2024, 10, 11), Decimal("0.10")),
    VatRate(date(2025, 7, 1), Decimal("0.08")),
    VatRate(date(2027, 1, 1), Decimal("0.10")),
]
# A regular month under the 2025 prices and 10 % VAT: 2025-05-15 → 2025-06-15 is N = 31 days and
# ends in June, so T = the days of May = 31; widths stay 50, 50, 100, 100, 100.
MAY_JUNE = (date(2025, 5, 15), date(2025, 6, 15))


def kwh_by_tier(priced: Priced) -> list[list[int]]:
    return [[line.kwh for line in part.lines] for part in priced.parts]


def test_rounding_is_half_up() -> None:
    assert [half_up(Decimal(x)) for x in ("0.5", "1.5", "2.5", "2.4999", "-2.5")] == [
        1,
        2,
        3,
        2,
        -3,
    ]
    assert half_up_3(Decimal("1.0005")) == Decimal("1.001")
    assert half_up_3(Decimal("1.0015")) == Decimal("1.002")


def test_t_is_the_month_before_the_month_the_period_ends_in() -> None:
    assert days_in_month_before(date(2025, 6, 15)) == 31  # May
    assert days_in_month_before(date(2025, 3, 1)) == 28  # February 2025
    assert days_in_month_before(date(2024, 3, 5)) == 29  # February 2024
    assert days_in_month_before(date(2025, 1, 5)) == 31  # December 2024


def test_0_kwh() -> None:
    bill = price(0, *MAY_JUNE, TARIFFS, VAT)
    # Every tier line is 0 kWh × price = 0; VAT 0; total 0.
    assert kwh_by_tier(bill) == [[0, 0, 0, 0, 0, 0]]
    assert (bill.amount_vnd, bill.vat_vnd, bill.total_vnd) == (0, 0, 0)


def test_exactly_50_kwh() -> None:
    bill = price(50, *MAY_JUNE, TARIFFS, VAT)
    # 50 × 1,984 = 99,200; VAT 10 % = 9,920; total 109,120.
    assert kwh_by_tier(bill) == [[50, 0, 0, 0, 0, 0]]
    assert (bill.amount_vnd, bill.vat_vnd, bill.total_vnd) == (99_200, 9_920, 109_120)


def test_51_kwh() -> None:
    bill = price(51, *MAY_JUNE, TARIFFS, VAT)
    # 50 × 1,984 = 99,200 + 1 × 2,050 = 101,250; VAT 10,125; total 111,375.
    assert kwh_by_tier(bill) == [[50, 1, 0, 0, 0, 0]]
    assert (bill.amount_vnd, bill.vat_vnd, bill.total_vnd) == (101_250, 10_125, 111_375)


def test_150_kwh() -> None:
    bill = price(150, *MAY_JUNE, TARIFFS, VAT)
    # 50 × 1,984 = 99,200; 50 × 2,050 = 102,500; 50 × 2,380 = 119,000 → 320,700;
    # VAT 32,070; total 352,770.
    assert kwh_by_tier(bill) == [[50, 50, 50, 0, 0, 0]]
    assert (bill.amount_vnd, bill.vat_vnd, bill.total_vnd) == (320_700, 32_070, 352_770)


def test_350_kwh() -> None:
    bill = price(350, *MAY_JUNE, TARIFFS, VAT)
    # 99,200 + 102,500 + 100 × 2,380 = 238,000 + 100 × 2,998 = 299,800 + 50 × 3,350 = 167,500
    # = 907,000; VAT 90,700; total 997,700.
    assert kwh_by_tier(bill) == [[50, 50, 100, 100, 50, 0]]
    assert (bill.amount_vnd, bill.vat_vnd, bill.total_vnd) == (907_000, 90_700, 997_700)


def test_1000_kwh() -> None:
    bill = price(1000, *MAY_JUNE, TARIFFS, VAT)
    # 99,200 + 102,500 + 238,000 + 299,800 + 100 × 3,350 = 335,000 + 600 × 3,460 = 2,076,000
    # = 3,150,500; VAT 315,050; total 3,465,550.
    assert kwh_by_tier(bill) == [[50, 50, 100, 100, 100, 600]]
    assert (bill.amount_vnd, bill.vat_vnd, bill.total_vnd) == (3_150_500, 315_050, 3_465_550)
    lines = bill.parts[0].lines
    assert [(ln.price_vnd, ln.amount_vnd) for ln in lines] == [
        (1984, 99_200),
        (2050, 102_500),
        (2380, 238_000),
        (2998, 299_800),
        (3350, 335_000),
        (3460, 2_076_000),
    ]


def test_vat_is_rounded_half_up() -> None:
    # 2024-11-05 → 2024-12-05 under the 2024 prices: 5 × 1,893 = 9,465; VAT 946.5 → 947.
    bill = price(5, date(2024, 11, 5), date(2024, 12, 5), TARIFFS, VAT)
    assert (bill.amount_vnd, bill.vat_vnd, bill.total_vnd) == (9_465, 947, 10_412)


def test_57_day_period_widens_the_tiers() -> None:
    # 2024-12-10 → 2025-02-05 is N = 57 days; it ends in February, so T = 31 (January).
    # Widths: round(50 × 57 / 31) = round(91.94) = 92; round(100 × 57 / 31) = round(183.87) = 184.
    # 400 kWh: 92 × 1,893 = 174,156; 92 × 1,956 = 179,952; 184 × 2,271 = 417,864;
    # 32 × 2,860 = 91,520 → 863,492; VAT 86,349.2 → 86,349; total 949,841.
    bill = price(400, date(2024, 12, 10), date(2025, 2, 5), TARIFFS, VAT)
    (part,) = bill.parts
    assert part.days == 57
    assert [ln.width_kwh for ln in part.lines] == [92, 92, 184, 184, 184, None]
    assert [ln.kwh for ln in part.lines] == [92, 92, 184, 32, 0, 0]
    assert (bill.amount_vnd, bill.vat_vnd, bill.total_vnd) == (863_492, 86_349, 949_841)


def test_period_crossing_the_2025_05_10_price_change() -> None:
    # 2025-04-20 → 2025-05-20: N = 30, ends in May so T = 30 (April). Split at 2025-05-10.
    # Part 1, 04-20 → 05-10, n = 20, 2024 prices: round(300 × 20/30) = 200 kWh;
    #   widths round(50 × 20/30 = 33.3) = 33, round(100 × 20/30 = 66.7) = 67;
    #   33 × 1,893 = 62,469; 33 × 1,956 = 64,548; 67 × 2,271 = 152,157; 67 × 2,860 = 191,620
    #   → 470,794; VAT 47,079.4 → 47,079.
    # Part 2, 05-10 → 05-20, n = 10, 2025 prices: the remaining 100 kWh;
    #   widths round(16.7) = 17, round(33.3) = 33;
    #   17 × 1,984 = 33,728; 17 × 2,050 = 34,850; 33 × 2,380 = 78,540; 33 × 2,998 = 98,934
    #   → 246,052; VAT 24,605.2 → 24,605.
    # Bill: 716,846 + VAT 71,684 = 788,530.
    bill = price(300, date(2025, 4, 20), date(2025, 5, 20), TARIFFS, VAT)
    p1, p2 = bill.parts
    assert (p1.start, p1.end, p1.days, p1.tariff_effective_from) == (
        date(2025, 4, 20),
        date(2025, 5, 10),
        20,
        date(2024, 10, 11),
    )
    assert (p2.start, p2.end, p2.days, p2.tariff_effective_from) == (
        date(2025, 5, 10),
        date(2025, 5, 20),
        10,
        date(2025, 5, 10),
    )
    assert [ln.width_kwh for ln in p1.lines] == [33, 33, 67, 67, 67, None]
    assert [ln.kwh for ln in p1.lines] == [33, 33, 67, 67, 0, 0]
    assert [ln.width_kwh for ln in p2.lines] == [17, 17, 33, 33, 33, None]
    assert [ln.kwh for ln in p2.lines] == [17, 17, 33, 33, 0, 0]
    assert (p1.amount_vnd, p1.vat_vnd, p2.amount_vnd, p2.vat_vnd) == (
        470_794,
        47_079,
        246_052,
        24_605,
    )
    assert (bill.amount_vnd, bill.vat_vnd, bill.total_vnd) == (716_846, 71_684, 788_530)


def test_period_crossing_the_2025_07_01_vat_change() -> None:
    # 2025-06-15 → 2025-07-15: N = 30, T = 30 (June), 2025 prices throughout. Split at 07-01.
    # Part 1, n = 16, VAT 10 %: round(200 × 16/30 = 106.7) = 107 kWh;
    #   widths round(26.7) = 27, round(53.3) = 53;
    #   27 × 1,984 = 53,568; 27 × 2,050 = 55,350; 53 × 2,380 = 126,140 → 235,058;
    #   VAT 23,505.8 → 23,506.
    # Part 2, n = 14, VAT 8 %: 93 kWh; widths round(23.3) = 23, round(46.7) = 47;
    #   23 × 1,984 = 45,632; 23 × 2,050 = 47,150; 47 × 2,380 = 111,860 → 204,642;
    #   VAT 16,371.36 → 16,371.
    # Bill: 439,700 + VAT 39,877 = 479,577.
    bill = price(200, date(2025, 6, 15), date(2025, 7, 15), TARIFFS, VAT)
    p1, p2 = bill.parts
    assert (p1.days, p1.consumption_kwh, p1.vat_rate) == (16, 107, Decimal("0.10"))
    assert (p2.days, p2.consumption_kwh, p2.vat_rate) == (14, 93, Decimal("0.08"))
    assert [ln.kwh for ln in p1.lines] == [27, 27, 53, 0, 0, 0]
    assert [ln.kwh for ln in p2.lines] == [23, 23, 47, 0, 0, 0]
    assert (p1.amount_vnd, p1.vat_vnd, p2.amount_vnd, p2.vat_vnd) == (
        235_058,
        23_506,
        204_642,
        16_371,
    )
    assert (bill.amount_vnd, bill.vat_vnd, bill.total_vnd) == (439_700, 39_877, 479_577)


def test_part_kwh_and_widths_round_half_up() -> None:
    # A table in force from 2026-03-13 splits 2026-02-20 → 2026-03-20 (N = 28, T = 28, February).
    # Part 1, n = 21: round(6 × 21/28 = 4.5) = 5 kWh. Part 2, n = 7: the remaining 1 kWh, and
    # tier 1 is round(50 × 7/28 = 12.5) = 13 kWh wide (half-even would give 4 and 12).
    later = table(date(2026, 3, 13), (50, 1000), (None, 2000))
    bill = price(6, date(2026, 2, 20), date(2026, 3, 20), [*TARIFFS, later], VAT)
    p1, p2 = bill.parts
    assert (p1.consumption_kwh, p2.consumption_kwh) == (5, 1)
    assert p2.lines[0].width_kwh == 13
    # Part 1: 5 × 1,984 = 9,920, VAT 8 % 793.6 → 794. Part 2: 1 × 1,000, VAT 80.
    assert (bill.amount_vnd, bill.vat_vnd, bill.total_vnd) == (10_920, 874, 11_794)


def test_a_five_tier_table_is_only_data() -> None:
    # The five-tier scheme of Decision 14/2025/QĐ-TTg (0–100, 101–200, 201–400, 401–700, 701+)
    # with made-up prices, from 2027-01-01 (VAT back to 10 %). 2027-01-10 → 2027-02-10, N = T = 31.
    # 750 kWh: 100 × 2,000 = 200,000; 100 × 2,200 = 220,000; 200 × 2,700 = 540,000;
    # 300 × 3,200 = 960,000; 50 × 3,500 = 175,000 → 2,095,000; VAT 209,500; total 2,304,500.
    five = table(date(2027, 1, 1), (100, 2000), (100, 2200), (200, 2700), (300, 3200), (None, 3500))
    bill = price(750, date(2027, 1, 10), date(2027, 2, 10), [*TARIFFS, five], VAT)
    assert kwh_by_tier(bill) == [[100, 100, 200, 300, 50]]
    assert (bill.amount_vnd, bill.vat_vnd, bill.total_vnd) == (2_095_000, 209_500, 2_304_500)


def test_breakdown_json_of_a_part() -> None:
    (part,) = price(51, *MAY_JUNE, TARIFFS, VAT).parts
    data = part.to_json()
    assert data["vat_rate"] == "0.10"
    assert data["lines"][1] == {
        "tier": 2,
        "width_kwh": 50,
        "kwh": 1,
        "price_vnd": 2050,
        "amount_vnd": 2050,
    }
    assert (data["amount_vnd"], data["vat_vnd"], data["total_vnd"]) == (101_250, 10_125, 111_375)
    odd = [VatRate(date(2024, 10, 11), Decimal("0.0750"))]
    (part,) = price(51, *MAY_JUNE, TARIFFS, odd).parts
    assert part.to_json()["vat_rate"] == "0.075"


def test_no_tariff_in_force_is_an_error() -> None:
    with pytest.raises(TariffError, match="no tariff table in force on 2024-09-05"):
        price(10, date(2024, 9, 5), date(2024, 10, 5), TARIFFS, VAT)


def test_malformed_tables_are_refused() -> None:
    with pytest.raises(TariffError, match="last tier must be unbounded"):
        table(date(2030, 1, 1), (50, 1000), (50, 2000))
    with pytest.raises(TariffError, match="numbered"):
        TariffTable(date(2030, 1, 1), (Tier(2, None, 1000),))


periods = st.tuples(
    st.dates(min_value=date(2024, 10, 11), max_value=date(2027, 6, 30)),
    st.integers(min_value=1, max_value=70),
).map(lambda t: (t[0], t[0] + timedelta(days=t[1])))


@given(consumption=st.integers(min_value=0, max_value=20_000), period=periods)
def test_tier_lines_add_up_to_the_consumption(consumption: int, period: tuple[date, date]) -> None:
    bill = price(consumption, *period, TARIFFS, VAT)
    assert sum(line.kwh for part in bill.parts for line in part.lines) == consumption
    assert sum(part.consumption_kwh for part in bill.parts) == consumption
    assert sum(part.days for part in bill.parts) == (period[1] - period[0]).days
    for part in bill.parts:
        for line in part.lines:
            assert line.kwh >= 0
            assert line.width_kwh is None or line.kwh <= line.width_kwh
    assert bill.total_vnd == bill.amount_vnd + bill.vat_vnd


@given(consumption=st.integers(min_value=0, max_value=20_000), period=periods)
def test_total_never_decreases_when_consumption_grows(
    consumption: int, period: tuple[date, date]
) -> None:
    lower = price(consumption, *period, TARIFFS, VAT)
    higher = price(consumption + 1, *period, TARIFFS, VAT)
    assert higher.total_vnd >= lower.total_vnd
    assert higher.amount_vnd >= lower.amount_vnd
