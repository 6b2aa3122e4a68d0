"""The tracker's payout-cap estimate is billing's commission (kernel/fees.py), rounded down: one set of rules."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from kernel.fees import FeeEvent, commission
from kernel.plans import build_plan, payout_estimate

PLANS = st.fixed_dictionaries(
    {},
    optional={
        "cpa": st.dictionaries(st.sampled_from(["signup", "lead", "purchase"]), st.integers(0, 10**6), max_size=3),
        "cps_percent": st.decimals(min_value=0, max_value=100, places=2).map(lambda d: str(d.normalize())),
        "tiers": st.just([{"percent": "12", "min_sales": 0}]),
    },
)
EVENTS = st.one_of(
    st.fixed_dictionaries({"type": st.just("action"), "action": st.sampled_from(["signup", "lead", "other"])}),
    st.fixed_dictionaries({"type": st.just("purchase"), "amount": st.integers(0, 10**9), "currency": st.just("EUR")}),
)


@given(PLANS, EVENTS)
def test_the_estimate_is_the_commission_rounded_down(plan: dict[str, object], event: dict[str, object]) -> None:
    fee_plan = build_plan("EUR", "half_even", dict(plan))
    kind = str(event["type"])
    paid = commission(
        fee_plan,
        FeeEvent(
            kind=kind,
            currency="EUR",
            action=str(event.get("action", "")),
            amount_minor=int(str(event.get("amount", 0))),
        ),
    )
    exact = sum(line.amount_minor for line in paid.lines)
    estimate = payout_estimate(plan, event, "EUR")
    assert exact - len(paid.lines) <= estimate <= exact  # each line rounded once, down instead of to even
    if "cps_percent" not in plan and "tiers" not in plan:
        assert estimate == exact  # fixed amounts are never rounded


def test_a_tier_reached_from_the_first_sale_counts() -> None:
    plan = {"cps_percent": "5", "tiers": [{"percent": "12", "min_sales": 0}]}
    assert payout_estimate(plan, {"type": "purchase", "amount": 1000, "currency": "EUR"}, "EUR") == 120
