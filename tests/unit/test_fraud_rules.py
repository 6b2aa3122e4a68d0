"""The fraud rules as a table: each flags past its threshold and not before (billing/fraud.py)."""

from __future__ import annotations

import pytest

from kernel.fraud import DATACENTER_ASNS, Facts, Rules, check

ON = Rules.parse(
    {"too_soon_seconds": 10, "rate_factor": 5, "rate_min_clicks": 100, "forbidden_referrers": ["Bad.Example"]}
)


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        (Facts(), None),
        (Facts(seconds_since_click=9.99), "too_soon"),
        (Facts(seconds_since_click=10.0), None),
        (Facts(customer_is_partner=True), "self_referral"),
        (Facts(other_partner=True), "multi_partner"),
        (Facts(asn=16509), "datacenter"),
        (Facts(asn=3320), None),
        (Facts(referrer="bad.example"), "forbidden_referrer"),
        (Facts(referrer="x.bad.example."), "forbidden_referrer"),
        (Facts(referrer="notbad.example"), None),
        (Facts(partner_rate=(6, 100), offer_rate=(10, 1000)), "conversion_rate"),  # 6 % > 5 x 1 %
        (Facts(partner_rate=(5, 100), offer_rate=(10, 1000)), None),  # exactly 5 x: not far enough
        (Facts(partner_rate=(99, 99), offer_rate=(10, 1000)), None),  # too few clicks to judge
        (Facts(partner_rate=(99, 100), offer_rate=(0, 1000)), None),  # no norm yet
    ],
)
def test_check(facts: Facts, expected: str | None) -> None:
    assert check(ON, facts) == expected


def test_defaults_are_safe() -> None:
    rules = Rules.parse({})
    assert (rules.too_soon_seconds, rules.rate_factor, rules.on_expiry, rules.hold_days) == (0, 0, "reject", 30)
    assert check(rules, Facts(seconds_since_click=0.1, partner_rate=(100, 100), offer_rate=(1, 1000))) is None
    assert rules.datacenter_asns == DATACENTER_ASNS
    assert Rules.load(1, {"hold_days": "x"}) == Rules()  # unusable stored rules: the defaults, ingest goes on
