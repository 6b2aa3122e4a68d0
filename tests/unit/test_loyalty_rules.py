"""The loyalty core from tables: earnings per rule, multipliers, reversal policy, FIFO, tiers, value."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from kernel.loyalty_rules import (
    LoyaltyError,
    cumulative_share,
    earnings,
    fifo,
    parse_rules,
    parse_tiers,
    programme,
    reverse,
    summarise,
    tier_for,
)

AT = dt.datetime(2026, 6, 15, tzinfo=dt.UTC)
RULES = {
    "unit_minor": 100,
    "points_per_unit": 1,
    "offers": {"7": {"unit_minor": 100, "points_per_unit": 3}},
    "skus": {"TEA": {"unit_minor": 50, "points_per_unit": 1}},
    "categories": {"books": {"unit_minor": 100, "points_per_unit": 2}},
    "actions": {"signup": 50},
    "campaigns": [{"name": "June", "multiplier": "1.5", "starts_at": "2026-06-01", "ends_at": "2026-07-01"}],
}
TIERS = {"levels": [{"name": "Gold", "min": 1000, "multiplier": "2"}, {"name": "Silver", "min": 100}], "grace_days": 30}
PROG = programme(
    {"merchant_id": 1, "currency": "USD", "rules": RULES, "tiers": TIERS, "value_points": 100, "value_minor": 1}
)


def _purchase(amount: int, offer: int = 1, items: list | None = None, currency: str = "USD") -> dict:
    return {"type": "purchase", "amount": amount, "offer": offer, "items": items or [], "currency": currency}


@pytest.mark.parametrize(
    ("event", "at", "tier", "expected"),
    [
        (_purchase(1_000), AT, None, [("base", 15, 1_000)]),  # 10.00 -> 10 points, June 1.5x
        (_purchase(1_000), AT + dt.timedelta(days=30), None, [("base", 10, 1_000)]),  # July: no campaign
        (_purchase(1_099), AT + dt.timedelta(days=30), None, [("base", 10, 1_099)]),  # rounded down once
        (_purchase(1_000), AT + dt.timedelta(days=30), "Gold", [("base", 20, 1_000)]),
        (_purchase(1_000, offer=7), AT + dt.timedelta(days=30), None, [("offer:7", 30, 1_000)]),
        (_purchase(1_000, currency="EUR"), AT, None, []),
        (
            _purchase(
                1_000,
                items=[
                    {"sku": "TEA", "qty": 2, "price": 100},
                    {"sku": "B1", "category": "books", "qty": 1, "price": 300},
                ],
            ),
            AT + dt.timedelta(days=30),
            None,
            [("sku:TEA", 4, 200), ("category:books", 6, 300), ("base", 5, 500)],
        ),
        ({"type": "action", "action": "signup"}, AT, "Gold", [("action:signup", 150, None)]),
        ({"type": "action", "action": "review"}, AT, None, []),
    ],
)
def test_earnings(event: dict, at: dt.datetime, tier: str | None, expected: list) -> None:
    assert [(e.rule, e.points, e.amount_minor) for e in earnings(PROG, event, at, tier)] == expected


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"points_per_unit": -1}, "points_per_unit"),
        ({"unit_minor": 0}, "unit_minor"),
        ({"offers": {"x": {}}}, "offer id"),
        ({"actions": {"signup": 1.5}}, "actions.signup"),
        ({"campaigns": [{"multiplier": "2", "starts_at": "2026-02-01", "ends_at": "2026-01-01"}]}, "ends before"),
        ({"campaigns": [{"multiplier": "lots", "starts_at": "2026-01-01", "ends_at": "2026-02-01"}]}, "multiplier"),
        ({"bonus": 1}, "unknown"),
    ],
)
def test_bad_rules_are_refused_with_the_field(raw: dict, field: str) -> None:
    with pytest.raises(LoyaltyError, match=field) as caught:
        parse_rules(raw)
    assert caught.value.code == "invalid_field"


def test_bad_tiers_are_refused() -> None:
    with pytest.raises(LoyaltyError):
        parse_tiers({"basis": "visits"})
    with pytest.raises(LoyaltyError):
        parse_tiers({"levels": [{"name": "A", "min": 1}, {"name": "A", "min": 2}]})


@pytest.mark.parametrize(
    ("refunds", "sale", "points", "shares"),
    [
        ([3_333, 3_333, 3_334], 10_000, 100, [33, 66, 100]),  # partial refunds add up to the whole lot
        ([10_000], 10_000, 7, [7]),
        ([20_000], 10_000, 7, [7]),  # never more than the lot
        ([1], 10_000, 100, [0]),
    ],
)
def test_cumulative_share(refunds: list[int], sale: int, points: int, shares: list[int]) -> None:
    total, got = 0, []
    for amount in refunds:
        total += amount
        got.append(cumulative_share(points, total, sale))
    assert got == shares


@pytest.mark.parametrize(
    ("points", "remaining", "spent", "policy", "expected"),
    [
        (100, 20, 80, "negative", (20, 80)),
        (100, 20, 80, "clamp", (20, 0)),
        (10, 20, 80, "negative", (10, 0)),
        (100, 0, 50, "negative", (0, 50)),  # the rest expired: never charged
    ],
)
def test_reverse(points: int, remaining: int, spent: int, policy: str, expected: tuple[int, int]) -> None:
    taken = reverse(points, remaining, spent, policy)
    assert (taken.from_remaining, taken.debt) == expected


def test_fifo() -> None:
    assert fifo([(1, 5), (2, 0), (3, 10)], 8) == [(1, 5), (3, 3)]
    with pytest.raises(LoyaltyError) as caught:
        fifo([(1, 5)], 6)
    assert caught.value.code == "insufficient_points" and caught.value.status == 409


@pytest.mark.parametrize(
    ("total", "current", "since_days", "expected"),
    [
        (50, None, 0, None),
        (100, None, 0, "Silver"),
        (1000, "Silver", 0, "Gold"),
        (100, "Gold", 10, "Gold"),  # within the 30-day grace
        (100, "Gold", 40, "Silver"),  # after it
    ],
)
def test_tier_for(total: int, current: str | None, since_days: int, expected: str | None) -> None:
    tiers = parse_tiers(TIERS)
    assert tier_for(tiers, total, current, AT - dt.timedelta(days=since_days), AT) == expected


def test_value_and_summary() -> None:
    assert PROG.discount_minor(250) == 2  # 100 points = 0.01 USD: rounded down
    assert PROG.points_for_discount(3) == 300
    assert PROG.tiers.multiplier("Gold") == Decimal(2)
    totals = summarise([("earn", 100), ("spend", -30), ("expire", -10), ("reverse", -5), ("adjust", 7)])
    assert totals == {"earned": 100, "spent": 30, "expired": 10, "reversed": 5, "adjusted": 7, "balance": 62}
