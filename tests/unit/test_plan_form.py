"""The fee plan and caps editor both ways (pure): what people type -> the schema's JSON in minor units, each
refusal naming its form field; and a stored plan back into the same fields."""

from __future__ import annotations

import pytest

from portal import plan_form
from portal.errors import ApiError


@pytest.mark.parametrize(
    ("form", "plan", "caps"),
    [
        ({"m_cps": "true", "cps_percent": "7.5 %"}, {"cps_percent": "7.5"}, {}),
        ({"m_cps": "true", "cps_percent": "8", "m_cpc": "true", "cpc": "0.05"}, {"cps_percent": "8", "cpc": 5}, {}),
        (
            {
                "m_cpa": "true",
                "cpa_action_1": "signup",
                "cpa_amount_1": "2.50",
                "cpa_action_3": "lead",
                "cpa_amount_3": "1",
            },
            {"cpa": {"signup": 250, "lead": 100}},
            {},
        ),
        (
            {
                "m_cps": "true",
                "cps_percent": "5",
                "tier_percent_1": "7",
                "tier_min_sales_1": "100",
                "tier_percent_2": "9",
                "tier_min_amount_2": "50000",
            },
            {
                "cps_percent": "5",
                "tiers": [{"percent": "7", "min_sales": 100}, {"percent": "9", "min_amount": 5000000}],
            },
            {},
        ),
        ({"m_cpm": "true", "cpm": "1.50", "m_markup": "true"}, {"cpm": 150, "markup": True}, {}),
        ({"cps_percent": "9"}, {}, {}),  # a model's fields count only when the model is ticked
        (
            {
                "cap_offer_clicks_daily": "200",
                "cap_partner_payout_lifetime": "1000.00",
                "cap_offer_conversions_lifetime": "0",
            },
            {},
            {"clicks": {"daily": 200}, "conversions": {"lifetime": 0}, "per_partner": {"payout": {"lifetime": 100000}}},
        ),
    ],
)
def test_fields_become_the_schema_json_in_minor_units(form, plan, caps):
    assert plan_form.to_plan(form, "USD") == (plan, caps)


def test_yen_has_no_minor_unit():
    assert plan_form.to_plan({"m_cpc": "true", "cpc": "12"}, "JPY") == ({"cpc": 12}, {})


@pytest.mark.parametrize(
    ("form", "field"),
    [
        ({"m_cps": "true", "cps_percent": "120"}, "cps_percent"),
        ({"m_cps": "true", "cps_percent": "seven"}, "cps_percent"),
        ({"m_cps": "true", "cps_percent": "5", "tier_percent_2": "7"}, "tier_min_sales_2"),
        ({"m_cps": "true", "cps_percent": "5", "tier_percent_1": "7", "tier_min_sales_1": "0"}, "tier_min_sales_1"),
        (
            {
                "m_cps": "true",
                "cps_percent": "5",
                "tier_percent_1": "7",
                "tier_min_sales_1": "100",
                "tier_percent_2": "9",
                "tier_min_sales_2": "50",
            },
            "tier_min_sales_2",
        ),  # thresholds must rise: the schema's refusal lands on the second tier's field
        ({"m_cpa": "true"}, "cpa_action_1"),
        ({"m_cpa": "true", "cpa_action_1": "Sign Up", "cpa_amount_1": "1"}, "cpa_action_1"),
        ({"m_cpa": "true", "cpa_action_1": "signup", "cpa_amount_1": "1.234"}, "cpa_amount_1"),
        ({"m_cpc": "true", "cpc": "-1"}, "cpc"),
        ({"cap_partner_clicks_daily": "lots"}, "cap_partner_clicks_daily"),
        ({"cap_offer_payout_daily": "1.001"}, "cap_offer_payout_daily"),
    ],
)
def test_each_refusal_names_its_field(form, field):
    with pytest.raises(ApiError) as refused:
        plan_form.to_plan(form, "USD")
    assert refused.value.status == 400 and refused.value.detail.split(": ")[0] == field, refused.value.detail


@pytest.mark.parametrize(
    ("plan", "caps"),
    [
        ({"cps_percent": "8", "cpc": 5}, {"clicks": {"daily": 200}}),
        ({"cpa": {"lead": 100, "signup": 250}}, {"per_partner": {"payout": {"lifetime": 100000}}}),
        (
            {
                "cps_percent": "5",
                "tiers": [{"percent": "7", "min_sales": 100}, {"percent": "9", "min_amount": 5000000}],
            },
            {},
        ),
        ({"cpm": 150, "cpv": 1, "markup": True}, {"conversions": {"daily": 20, "lifetime": 500}}),
    ],
)
def test_a_stored_plan_comes_back_unchanged_through_the_form(plan, caps):
    assert plan_form.to_plan(plan_form.to_form(plan, caps, "USD"), "USD") == (plan, caps)
