"""The caps configuration and the payout estimate, from tables."""

from __future__ import annotations

from typing import Any

import pytest

from kernel.caps import CapConfigError, Limit, parse
from kernel.plans import payout_estimate
from tracker.caps import check_command


@pytest.mark.parametrize(
    ("config", "limits"),
    [
        ({}, ()),
        ({"clicks": {"daily": 5}}, (Limit("clicks", "daily", False, 5),)),
        (
            {"conversions": {"lifetime": 9}, "per_partner": {"payout": {"daily": 100}}},
            (Limit("conversions", "lifetime", False, 9), Limit("payout", "daily", True, 100)),
        ),
    ],
)
def test_parse(config: dict[str, Any], limits: tuple[Limit, ...]) -> None:
    assert parse(config) == limits


@pytest.mark.parametrize(
    "config",
    [
        {"views": {"daily": 5}},
        {"clicks": {"weekly": 5}},
        {"clicks": {"daily": -1}},
        {"clicks": {"daily": 1.5}},
        {"clicks": {"daily": True}},
        {"per_partner": [1]},
        {"clicks": 5},
    ],
)
def test_malformed_caps_are_refused(config: dict[str, Any]) -> None:
    with pytest.raises(CapConfigError):
        parse(config)


def test_check_command_keys_share_the_offer_hash_tag() -> None:
    limits = parse({"clicks": {"daily": 5, "lifetime": 50}, "per_partner": {"clicks": {"daily": 2}}})
    command = check_command("cm", 7, 3, limits, {"clicks": 1}, 0.0)
    assert command is not None
    keys = command[3 : 3 + command[2]]
    assert keys == ("cm:cap:{o7}:clicks:d19700101", "cm:cap:{o7}:clicks:life", "cm:cap:{o7}:p3:clicks:d19700101")
    assert command[3 + command[2] :] == (5, 172800, 1, 50, 0, 1, 2, 172800, 1)
    assert check_command("cm", 7, 3, limits, {"conversions": 1}, 0.0) is None


@pytest.mark.parametrize(
    ("plan", "event", "payout"),
    [
        ({"cpa": {"signup": 250}}, {"type": "action", "action": "signup"}, 250),
        ({"cpa": {"signup": 250}}, {"type": "action", "action": "lead"}, 0),
        ({"cps_percent": "10"}, {"type": "purchase", "amount": 4000}, 400),
        ({"cps_percent": "7.5"}, {"type": "purchase", "amount": 999}, 74),  # rounded down for caps
        ({"cps_percent": "5", "cpa": {"purchase": 100}}, {"type": "purchase", "amount": 2000}, 200),
        ({"cps_percent": "bogus"}, {"type": "purchase", "amount": 2000}, 0),
    ],
)
def test_payout_estimate(plan: dict[str, Any], event: dict[str, Any], payout: int) -> None:
    assert payout_estimate(plan, event) == payout
