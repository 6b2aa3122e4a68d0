"""Tables for kernel.fees and kernel.pricing: every fee model, overrides, tiers, markup prices and reversals."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernel.fees import (
    FeeError,
    FeeEvent,
    FeeLine,
    FeePlan,
    Item,
    PlanOverride,
    PriceVersion,
    Tier,
    commission,
    commission_lines,
    cpm_accrual,
    effective_plan,
    price_at,
    reversal_lines,
    tier_for,
)
from kernel.money import AmountError

# No example database: the tests must not leave files in the work tree.
PROPERTY = settings(database=None, deadline=None, max_examples=300)


def half_even(value: Fraction) -> int:
    """Independent reference: Python's round() on a Fraction breaks ties to even."""
    return round(value)


def half_up(value: Fraction) -> int:
    """Independent reference: ties away from zero, symmetric for negative amounts."""
    magnitude = math.floor(abs(value) + Fraction(1, 2))
    return magnitude if value >= 0 else -magnitude


REFERENCE = {"half_even": half_even, "half_up": half_up}


def at(month: int, day: int, hour: int = 0) -> datetime:
    return datetime(2025, month, day, hour, tzinfo=UTC)


def amounts(lines: list[FeeLine]) -> list[tuple[str, int, str]]:
    return [(line.kind, line.amount_minor, line.currency) for line in lines]


# --- cps: percent of sale, rounded once, in the sale's currency -------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "currency", "percent", "mode", "expected", "basis"),
    [
        (1010, "USD", "5", "half_even", 50, "5% of 10.10 USD"),  # 50.5 cents: tie to even
        (1010, "USD", "5", "half_up", 51, "5% of 10.10 USD"),
        (1030, "USD", "5", "half_even", 52, "5% of 10.30 USD"),  # 51.5: even is up
        (1030, "USD", "5", "half_up", 52, "5% of 10.30 USD"),
        (12999, "USD", "7.5", "half_even", 975, "7.5% of 129.99 USD"),  # 974.925
        (12999, "USD", "7.50", "half_up", 975, "7.5% of 129.99 USD"),
        (1010, "JPY", "5", "half_even", 50, "5% of 1010 JPY"),  # 50.5 yen
        (1010, "JPY", "5", "half_up", 51, "5% of 1010 JPY"),
        (10010, "KWD", "5", "half_even", 500, "5% of 10.010 KWD"),  # 500.5 fils
        (10010, "KWD", "5", "half_up", 501, "5% of 10.010 KWD"),
        (10100, "KWD", "12.345", "half_even", 1247, "12.345% of 10.100 KWD"),  # 1246.845
        (9999, "EUR", "100", "half_even", 9999, "100% of 99.99 EUR"),
        (1, "USD", "33.3333333333333333333333333333333", "half_up", 0, None),  # more digits than 28
    ],
)
def test_cps(amount: int, currency: str, percent: str, mode: str, expected: int, basis: str | None) -> None:
    plan = FeePlan(currency="USD", cps_percent=Decimal(percent), rounding=mode)
    lines = commission_lines(plan, FeeEvent("purchase", currency, amount_minor=amount))
    assert REFERENCE[mode](Fraction(amount) * Fraction(percent) / 100) == expected
    assert amounts(lines) == ([("cps", expected, currency)] if expected else [])
    if basis:
        assert lines[0].basis == basis


@PROPERTY
@given(
    sales=st.lists(st.integers(0, 10**9), max_size=40),
    percent=st.decimals(min_value=0, max_value=100, places=3),
    mode=st.sampled_from(["half_even", "half_up"]),
)
def test_cps_statement_total_matches_reference(sales: list[int], percent: Decimal, mode: str) -> None:
    plan = FeePlan(currency="EUR", cps_percent=percent, rounding=mode)
    total = sum(
        line.amount_minor
        for sale in sales
        for line in commission_lines(plan, FeeEvent("purchase", "EUR", amount_minor=sale))
    )
    assert total == sum(REFERENCE[mode](Fraction(sale) * Fraction(str(percent)) / 100) for sale in sales)


# --- cpa, hybrid cpa + cps, cpc, cpv ----------------------------------------------------------------------------

CPA_PLAN = FeePlan(currency="USD", cpa_minor={"lead": 500, "signup": 150, "purchase": 200})


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (FeeEvent("action", "USD", action="lead"), [("cpa", 500, "USD")]),
        (FeeEvent("action", "USD", action="signup"), [("cpa", 150, "USD")]),
        (FeeEvent("action", "USD", action="survey"), []),
        (FeeEvent("purchase", "USD", amount_minor=12999), [("cpa", 200, "USD")]),
        (FeeEvent("purchase", "EUR", action="lead", amount_minor=100), [("cpa", 500, "USD")]),
        (FeeEvent("click", "USD"), []),
        (FeeEvent("view", "USD"), []),
    ],
)
def test_cpa(event: FeeEvent, expected: list[tuple[str, int, str]]) -> None:
    assert amounts(commission_lines(CPA_PLAN, event)) == expected


@pytest.mark.parametrize(
    ("sale", "currency", "expected"),
    [
        (12999, "USD", [("cpa", 200, "USD"), ("cps", 650, "USD")]),  # 649.95
        (10, "USD", [("cpa", 200, "USD")]),  # cps of 0.5 cent ties to 0: no empty line
        (2000, "EUR", [("cpa", 200, "USD"), ("cps", 100, "EUR")]),  # cpa in the plan's currency, cps in the sale's
    ],
)
def test_hybrid_cpa_cps(sale: int, currency: str, expected: list[tuple[str, int, str]]) -> None:
    plan = FeePlan(currency="USD", cpa_minor={"purchase": 200}, cps_percent=Decimal(5))
    assert amounts(commission_lines(plan, FeeEvent("purchase", currency, amount_minor=sale))) == expected


@pytest.mark.parametrize(
    ("unique", "bot", "expected"),
    [(True, False, [("cpc", 30, "GBP")]), (False, False, []), (True, True, []), (False, True, [])],
)
def test_cpc_only_unique_human_clicks(unique: bool, bot: bool, expected: list[tuple[str, int, str]]) -> None:
    plan = FeePlan(currency="GBP", cpc_minor=30, cpa_minor={"lead": 100})
    assert amounts(commission_lines(plan, FeeEvent("click", "GBP", unique=unique, bot=bot))) == expected


@pytest.mark.parametrize(("bot", "expected"), [(False, [("cpv", 2, "JPY")]), (True, [])])
def test_cpv(bot: bool, expected: list[tuple[str, int, str]]) -> None:
    plan = FeePlan(currency="JPY", cpv_minor=2)
    assert amounts(commission_lines(plan, FeeEvent("view", bot=bot))) == expected  # a view carries no currency


# --- cpm: accrued on the cumulative count ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "before", "now", "mode", "expected"),
    [
        (250, 0, 1000, "half_even", 250),
        (250, 0, 1, "half_even", 0),  # 0.25
        (250, 0, 2, "half_even", 0),  # 0.5 ties to 0
        (250, 0, 2, "half_up", 1),
        (250, 2, 3, "half_even", 1),  # 0.75 -> 1, minus 0
        (250, 2, 3, "half_up", 0),  # 1 - 1
        (1, 0, 499, "half_even", 0),
        (1, 0, 500, "half_even", 0),
        (1, 0, 500, "half_up", 1),
        (1, 500, 1500, "half_even", 2),  # 1.5 -> 2, minus 0
        (3, 7, 7, "half_even", 0),
        (2500, 999, 1001, "half_even", 4),  # 2502.5 -> 2502, minus 2497.5 -> 2498
    ],
)
def test_cpm_accrual(rate: int, before: int, now: int, mode: str, expected: int) -> None:
    reference = REFERENCE[mode](Fraction(now * rate, 1000)) - REFERENCE[mode](Fraction(before * rate, 1000))
    assert cpm_accrual(rate, before, now, mode) == expected == reference


@pytest.mark.parametrize(("before", "now"), [(5, 4), (-1, 3), (0, 1.5)])
def test_cpm_accrual_refuses(before: Any, now: Any) -> None:
    with pytest.raises(FeeError):
        cpm_accrual(100, before, now)


@PROPERTY
@given(
    rate=st.integers(0, 100_000),
    batches=st.lists(st.integers(0, 5_000), max_size=50),
    mode=st.sampled_from(["half_even", "half_up"]),
)
def test_cpm_batches_add_up_to_the_one_shot_amount(rate: int, batches: list[int], mode: str) -> None:
    seen, paid = 0, 0
    for batch in batches:
        paid += cpm_accrual(rate, seen, seen + batch, mode)
        seen += batch
    assert paid == cpm_accrual(rate, 0, seen, mode) == REFERENCE[mode](Fraction(seen * rate, 1000))


@pytest.mark.parametrize(
    ("rate", "views", "mode"), [(250, 1000, "half_even"), (333, 2500, "half_up"), (7, 4321, "half_even")]
)
def test_cpm_view_events_add_up(rate: int, views: int, mode: str) -> None:
    plan = FeePlan(currency="USD", cpm_minor=rate, rounding=mode)
    lines = [line for n in range(views) for line in commission_lines(plan, FeeEvent("view", "USD", views_before=n))]
    assert all(line.kind == "cpm" and line.amount_minor > 0 for line in lines)
    assert sum(line.amount_minor for line in lines) == REFERENCE[mode](Fraction(views * rate, 1000))


# --- tiers ------------------------------------------------------------------------------------------------------

SALES_LADDER = (Tier(Decimal(5)), Tier(Decimal(7), min_sales=100), Tier(Decimal(9), min_sales=500))
AMOUNT_LADDER = (Tier(Decimal(3)), Tier(Decimal(4), min_amount_minor=100_000))
MIXED_LADDER = (Tier(Decimal(2), min_sales=10), Tier(Decimal(6), min_sales=50, min_amount_minor=500_000))


@pytest.mark.parametrize(
    ("ladder", "sales_before", "amount_before", "percent"),
    [
        (SALES_LADDER, 0, 0, 5),
        (SALES_LADDER, 99, 10**12, 5),  # the 100th sale still gets the lower rate
        (SALES_LADDER, 100, 0, 7),  # the 101st gets the new one
        (SALES_LADDER, 499, 0, 7),
        (SALES_LADDER, 500, 0, 9),
        (SALES_LADDER, 10**6, 0, 9),
        (AMOUNT_LADDER, 10**6, 99_999, 3),
        (AMOUNT_LADDER, 0, 100_000, 4),
        (MIXED_LADDER, 9, 0, None),
        (MIXED_LADDER, 10, 0, 2),
        (MIXED_LADDER, 50, 0, 6),
        (MIXED_LADDER, 11, 500_000, 6),
        (MIXED_LADDER, 11, 499_999, 2),
        ((), 1000, 1000, None),
    ],
)
def test_tier_for(ladder: tuple[Tier, ...], sales_before: int, amount_before: int, percent: int | None) -> None:
    tier = tier_for(ladder, sales_before, amount_before)
    assert (tier.percent if tier else None) == percent


@pytest.mark.parametrize(
    ("sales_before", "expected", "basis"),
    [
        (0, 500, "5% of 100.00 USD"),
        (9, 500, "5% of 100.00 USD"),
        (10, 700, "7% of 100.00 USD, tier from 10 sales or 5000.00 USD"),
        (11, 700, "7% of 100.00 USD, tier from 10 sales or 5000.00 USD"),
    ],
)
def test_tiered_cps_line(sales_before: int, expected: int, basis: str) -> None:
    plan = FeePlan(currency="USD", cps_percent=Decimal(5), cps_tiers=(Tier(Decimal(7), 10, 500_000),))
    lines = commission_lines(plan, FeeEvent("purchase", "USD", amount_minor=10_000, sales_before=sales_before))
    assert amounts(lines) == [("cps", expected, "USD")]
    assert lines[0].basis == basis


@pytest.mark.parametrize(
    "ladder",
    [
        (Tier(Decimal(7), min_sales=100), Tier(Decimal(5), min_sales=10)),
        (Tier(Decimal(7), min_sales=100), Tier(Decimal(9), min_sales=100)),
        (Tier(Decimal(3), min_amount_minor=500), Tier(Decimal(4), min_amount_minor=100)),
    ],
)
def test_tier_ladder_must_rise(ladder: tuple[Tier, ...]) -> None:
    with pytest.raises(FeeError, match="invalid_plan"):
        FeePlan(currency="USD", cps_tiers=ladder)


# --- markup: partner's retail minus merchant's wholesale, at the prices in force --------------------------------

WHOLESALE = {"MUG": (PriceVersion(at(2, 1), 1600), PriceVersion(at(1, 1), 1500)), "CAP": (PriceVersion(at(1, 1), 800),)}
RETAIL = {"MUG": (PriceVersion(at(1, 1), 1999), PriceVersion(at(2, 15), 2199)), "CAP": (PriceVersion(at(1, 1), 1100),)}
MARKUP_PLAN = FeePlan(currency="EUR", wholesale=WHOLESALE, retail=RETAIL)


@pytest.mark.parametrize(
    ("when", "items", "expected"),
    [
        (at(1, 10), [("MUG", 2, 0)], 2 * (1999 - 1500)),
        (at(1, 31, 23), [("MUG", 1, 0)], 1999 - 1500),
        (at(2, 1), [("MUG", 1, 0)], 1999 - 1600),  # the wholesale change applies from its very instant
        (at(2, 20), [("MUG", 3, 0)], 3 * (2199 - 1600)),
        # Every item of a basket, every unit: one line per sale, the sum of the items' margins.
        (at(2, 20), [("MUG", 1, 0), ("CAP", 4, 950)], (2199 - 1600) + 4 * (1100 - 800)),
        (at(2, 20), [("CAP", 2, 0), ("MUG", 1, 0), ("CAP", 1, 0)], 3 * (1100 - 800) + (2199 - 1600)),
        (at(2, 20), [("CAP", 1, 800), ("HAT", 5, 900)], 1100 - 800),  # HAT has no retail price: earns nothing
        (at(2, 20), [("HAT", 1, 900)], None),  # nothing earned: no line
    ],
)
def test_markup(when: datetime, items: list[tuple[str, int, int]], expected: int | None) -> None:
    event = FeeEvent("purchase", "EUR", amount_minor=1, items=tuple(Item(*item) for item in items), occurred_at=when)
    lines = commission_lines(MARKUP_PLAN, event)
    assert amounts(lines) == ([("markup", expected, "EUR")] if expected else [])


def test_markup_basis_lists_every_item_and_says_why_an_item_earns_nothing() -> None:
    event = FeeEvent("purchase", "EUR", items=(("MUG", 2, 0), ("HAT", 1, 500), ("CAP", 1, 0)), occurred_at=at(1, 10))
    found = commission(MARKUP_PLAN, event)
    assert [line.basis for line in found.lines] == ["2 x MUG (19.99 - 15.00) + 1 x CAP (11.00 - 8.00) EUR"]
    assert found.notes == ("sku HAT: no wholesale price, earns nothing",)
    no_retail = commission(replace(MARKUP_PLAN, wholesale={**WHOLESALE, "HAT": (PriceVersion(at(1, 1), 400),)}), event)
    assert no_retail.notes == ("sku HAT: no retail price for this partner, earns nothing",)
    assert no_retail.lines == found.lines


def test_at_most_one_line_per_kind_whatever_the_plan() -> None:
    # The ledger keys a line by (source event, kind): a second line of a kind would be dropped as a replay.
    plan = replace(MARKUP_PLAN, cpa_minor={"purchase": 100}, cps_percent=Decimal(5))
    items = tuple(Item(sku, qty, 0) for sku, qty in (("MUG", 1), ("CAP", 2), ("MUG", 3), ("CAP", 1)))
    lines = commission_lines(plan, FeeEvent("purchase", "EUR", amount_minor=10_000, items=items, occurred_at=at(2, 2)))
    assert sorted(line.kind for line in lines) == ["cpa", "cps", "markup"]


def test_markup_over_a_period_with_price_changes() -> None:
    sales = [(at(1, d), "MUG", 1 + d % 3) for d in range(1, 29, 3)] + [
        (at(2, d), "MUG", d % 4 + 1) for d in range(1, 28)
    ]
    total = sum(
        line.amount_minor
        for when, sku, qty in sales
        for line in commission_lines(MARKUP_PLAN, FeeEvent("purchase", "EUR", items=((sku, qty, 0),), occurred_at=when))
    )

    def margin(when: datetime) -> int:  # the price calendar, written out by hand
        wholesale = 1500 if when < at(2, 1) else 1600
        retail = 1999 if when < at(2, 15) else 2199
        return retail - wholesale

    assert total == sum(qty * margin(when) for when, _, qty in sales)


@pytest.mark.parametrize(
    ("plan", "items", "when", "note"),
    [
        (MARKUP_PLAN, (("CAP", 1, 799),), at(1, 2), None),  # the reported unit price plays no part
        (
            FeePlan(currency="EUR", wholesale=WHOLESALE, retail={"MUG": (PriceVersion(at(1, 1), 1550),)}),
            (("MUG", 1, 0),),
            at(2, 2),
            "sku MUG: retail 15.50 below wholesale 16.00, earns nothing",
        ),
        (MARKUP_PLAN, (("HAT", 1, 999),), at(2, 1), "sku HAT: no wholesale price, earns nothing"),
        (
            MARKUP_PLAN,
            (("MUG", 1, 0),),
            at(2, 1).replace(year=2024),
            "sku MUG: no wholesale price in force, earns nothing",
        ),
        (MARKUP_PLAN, (), at(2, 1), "markup: the sale lists no items"),
    ],
)
def test_markup_items_that_earn_nothing_say_why(
    plan: FeePlan, items: tuple[tuple[str, int, int], ...], when: datetime, note: str | None
) -> None:
    found = commission(plan, FeeEvent("purchase", "EUR", amount_minor=5000, items=items, occurred_at=when))
    assert found.notes == ((note,) if note else ())
    if note:
        assert found.lines == ()


@pytest.mark.parametrize(
    ("plan", "event", "code"),
    [
        (MARKUP_PLAN, FeeEvent("purchase", "USD", items=(("MUG", 1, 0),), occurred_at=at(2, 1)), "currency_mismatch"),
        (MARKUP_PLAN, FeeEvent("purchase", "EUR", items=(("MUG", 1, 0),)), "invalid_event"),
        (
            MARKUP_PLAN,
            FeeEvent("purchase", "EUR", items=(("MUG", 1, 0),), occurred_at=datetime(2025, 2, 1)),
            "invalid_event",
        ),
    ],
)
def test_markup_refuses(plan: FeePlan, event: FeeEvent, code: str) -> None:
    with pytest.raises(FeeError) as caught:
        commission_lines(plan, event)
    assert caught.value.code == code


@pytest.mark.parametrize(
    ("when", "amount"),
    [(at(1, 1), 1), (at(1, 31), 1), (at(2, 1), 2), (at(2, 1, 1), 2), (at(3, 1), 3)],
)
def test_price_at(when: datetime, amount: int) -> None:
    versions = [PriceVersion(at(3, 1), 3), PriceVersion(at(1, 1), 1), PriceVersion(at(2, 1), 2)]
    assert price_at(versions, when).amount_minor == amount


@pytest.mark.parametrize(
    ("versions", "when", "code"),
    [
        ([PriceVersion(at(1, 1), 1)], at(1, 1).replace(year=2024), "no_price_in_force"),
        ([], at(1, 1), "no_price_in_force"),
        ([PriceVersion(at(1, 1), 1), PriceVersion(at(1, 1), 2)], at(2, 1), "ambiguous_price"),
        ([PriceVersion(at(1, 1), 1)], datetime(2025, 2, 1), "invalid_event"),
    ],
)
def test_price_at_refuses(versions: list[PriceVersion], when: datetime, code: str) -> None:
    with pytest.raises(FeeError) as caught:
        price_at(versions, when)
    assert caught.value.code == code


# --- plans, overrides and events --------------------------------------------------------------------------------

OFFER_PLAN = FeePlan(
    currency="usd",
    cpa_minor={"lead": 500, "signup": 150},
    cps_percent=Decimal("5"),
    cps_tiers=(Tier(Decimal(7), min_sales=100),),
    wholesale={"MUG": (PriceVersion(at(1, 1), 1500),)},
    retail={"MUG": (PriceVersion(at(1, 1), 1999),)},
    rounding="half_up",
)


PLAN_FIELDS = [spec.name for spec in dataclasses.fields(FeePlan)]


@pytest.mark.parametrize(
    ("override", "changed"),
    [
        (None, {}),
        (PlanOverride(), {}),
        (PlanOverride(cps_percent=Decimal("7.5")), {"cps_percent": Decimal("7.5")}),
        (PlanOverride(cpa_minor={"lead": 700}), {"cpa_minor": {"lead": 700, "signup": 150}}),
        (PlanOverride(cpa_minor={"survey": 90}), {"cpa_minor": {"lead": 500, "signup": 150, "survey": 90}}),
        (PlanOverride(cps_tiers=()), {"cps_tiers": ()}),
        (PlanOverride(cpc_minor=25, cpm_minor=0), {"cpc_minor": 25, "cpm_minor": 0}),
        (
            PlanOverride(retail={"MUG": (PriceVersion(at(1, 1), 2499),), "CAP": (PriceVersion(at(1, 1), 900),)}),
            {"retail": {"MUG": (PriceVersion(at(1, 1), 2499),), "CAP": (PriceVersion(at(1, 1), 900),)}},
        ),
    ],
)
def test_effective_plan(override: PlanOverride | None, changed: dict[str, Any]) -> None:
    plan = effective_plan(OFFER_PLAN, override)
    for name in PLAN_FIELDS:
        expected = changed.get(name, getattr(OFFER_PLAN, name))
        assert (
            dict(getattr(plan, name)) == expected
            if name in ("cpa_minor", "retail")
            else getattr(plan, name) == expected
        )
    assert plan.currency == "USD" and plan.rounding == "half_up"
    assert OFFER_PLAN.cpa_minor == {"lead": 500, "signup": 150}  # the offer's plan is never changed


def test_override_is_validated_when_applied() -> None:
    with pytest.raises(FeeError, match="invalid_plan"):
        effective_plan(OFFER_PLAN, PlanOverride(cps_percent=7.5))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"cps_percent": 7.5}, FeeError),
        ({"cps_percent": Decimal("100.01")}, FeeError),
        ({"cps_percent": Decimal("-1")}, FeeError),
        ({"cps_percent": Decimal("NaN")}, FeeError),
        ({"cpa_minor": {"lead": -1}}, FeeError),
        ({"cpa_minor": {"lead": 1.5}}, FeeError),
        ({"cpa_minor": {"": 1}}, FeeError),
        ({"cpc_minor": 0.3}, FeeError),
        ({"cpm_minor": True}, FeeError),
        ({"rounding": "up"}, FeeError),
        ({"wholesale": {"MUG": ()}}, FeeError),
        ({"wholesale": {"MUG": (1500,)}}, FeeError),
        ({"wholesale": {"MUG": (PriceVersion(at(1, 1), 1), PriceVersion(at(1, 1), 2))}}, FeeError),
        ({"currency": "XAU"}, AmountError),
    ],
)
def test_plan_refuses(fields: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        FeePlan(**{"currency": "USD", **fields})


@pytest.mark.parametrize(
    "fields",
    [
        {"kind": "refund"},
        {"currency": None},
        {"amount_minor": -1},
        {"amount_minor": 12.5},
        {"sales_before": -1},
        {"views_before": 1.0},
        {"items": (("MUG", 0, 100),)},
        {"items": (("MUG", 1.5, 100),)},
        {"items": (("", 1, 100),)},
        {"items": (("MUG", 1, -100),)},
    ],
)
def test_event_refuses(fields: dict[str, Any]) -> None:
    with pytest.raises(FeeError, match="invalid_event"):
        FeeEvent(**{"kind": "purchase", "currency": "USD", **fields})


@pytest.mark.parametrize(
    "bad", [{"valid_from": datetime(2025, 1, 1), "amount_minor": 1}, {"valid_from": at(1, 1), "amount_minor": -1}]
)
def test_price_version_refuses(bad: dict[str, Any]) -> None:
    with pytest.raises(FeeError):
        PriceVersion(**bad)


# --- reversals --------------------------------------------------------------------------------------------------

SALE_LINES = [FeeLine("cps", 975, "USD", "7.5% of 129.99 USD"), FeeLine("cpa", 200, "USD", "action 'purchase'")]


@pytest.mark.parametrize(
    ("lines", "refunded", "sale", "before", "mode", "expected"),
    [
        (SALE_LINES, 12999, 12999, 0, "half_even", [-975, -200]),  # full refund: exact negation
        (SALE_LINES, 20000, 12999, 0, "half_even", [-975, -200]),  # more than the sale: capped
        (SALE_LINES, 6500, 12999, 0, "half_even", [-488, -100]),  # 487.54 and 100.01
        (SALE_LINES, 6499, 12999, 6500, "half_even", [-487, -100]),  # the rest: exactly what is left
        (SALE_LINES, 100, 12999, 12999, "half_even", []),  # nothing left to take back
        (SALE_LINES, 1, 12999, 0, "half_even", []),  # under half a cent on every line
        ([FeeLine("cps", 101, "KWD", "")], 1, 2, 0, "half_even", [-50]),  # 50.5 fils: to even
        ([FeeLine("cps", 101, "KWD", "")], 1, 2, 0, "half_up", [-51]),
        ([FeeLine("cps", 101, "KWD", "")], 1, 2, 1, "half_up", [-50]),  # 101 - 51
        ([FeeLine("markup", 3, "JPY", "")], 1, 3, 1, "half_even", [-1]),
    ],
)
def test_reversal_lines(
    lines: list[FeeLine], refunded: int, sale: int, before: int, mode: str, expected: list[int]
) -> None:
    reversed_lines = reversal_lines(lines, refunded, sale, refunded_before_minor=before, mode=mode)
    assert [line.amount_minor for line in reversed_lines] == expected
    low, high = min(before, sale), min(before + refunded, sale)
    reference = [
        REFERENCE[mode](Fraction(line.amount_minor * high, sale))
        - REFERENCE[mode](Fraction(line.amount_minor * low, sale))
        for line in lines
    ]
    assert [-amount for amount in reference if amount] == expected


def test_reversal_keeps_kind_and_currency() -> None:
    reversed_lines = reversal_lines(SALE_LINES, 2600, 12999, currency="USD")
    assert [(line.kind, line.currency) for line in reversed_lines] == [("cps", "USD"), ("cpa", "USD")]
    assert reversed_lines[0].basis == "refund of 26.00 USD of 129.99 USD: 7.5% of 129.99 USD"


@pytest.mark.parametrize(
    ("lines", "refunded", "sale", "before"),
    [
        (SALE_LINES, 0, 12999, 0),
        (SALE_LINES, 100, 0, 0),
        (SALE_LINES, -100, 12999, 0),
        (SALE_LINES, 100, 12999, -1),
        (SALE_LINES, 1.5, 12999, 0),
        ([FeeLine("cps", -975, "USD", "")], 100, 12999, 0),
    ],
)
def test_reversal_refuses(lines: list[FeeLine], refunded: Any, sale: int, before: int) -> None:
    with pytest.raises(FeeError, match="invalid_event"):
        reversal_lines(lines, refunded, sale, refunded_before_minor=before)


@PROPERTY
@given(
    paid=st.lists(st.integers(1, 10**9), min_size=1, max_size=5),
    sale=st.integers(1, 10**9),
    refunds=st.lists(st.integers(1, 10**9), min_size=1, max_size=10),
    mode=st.sampled_from(["half_even", "half_up"]),
)
def test_successive_refunds_never_take_back_more_than_was_paid(
    paid: list[int], sale: int, refunds: list[int], mode: str
) -> None:
    lines = [FeeLine("cps", amount, "EUR", f"line {index}") for index, amount in enumerate(paid)]
    taken = [0] * len(paid)
    refunded = 0
    for refund in refunds:
        for line in reversal_lines(lines, refund, sale, refunded_before_minor=refunded, mode=mode):
            assert line.amount_minor < 0
            taken[int(line.basis.rsplit(" ", 1)[1])] -= line.amount_minor
        refunded += refund
        assert all(0 <= back <= amount for back, amount in zip(taken, paid, strict=True))
        # Independent: what the cumulative refunded share of each line comes to, rounded once.
        share = Fraction(min(refunded, sale), sale)
        assert taken == [REFERENCE[mode](amount * share) for amount in paid]
    if refunded >= sale:
        assert taken == paid
