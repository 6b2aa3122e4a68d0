"""Self-billed invoices, the pure part: which VAT rule applies, and VAT rounded once per line."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest

from billing.invoices import lines_with_vat, vat_rule


@pytest.mark.parametrize(
    ("merchant", "entity", "partner", "has_vat", "rule"),
    [
        ("ES", "individual", "ES", False, "none"),
        ("ES", "individual", "DE", True, "none"),  # an individual charges no VAT, whatever it typed
        ("ES", None, None, False, "none"),  # no tax details given
        ("ES", "business", "ES", True, "domestic"),
        ("ES", "business", "DE", True, "reverse_charge"),
        ("ES", "business", "DE", False, "domestic"),  # no valid VAT number: no reverse charge
        ("ES", "business", "US", False, "domestic"),
        ("ES", "business", "GB", True, "domestic"),  # not a member state
        ("GB", "business", "DE", True, "domestic"),  # the merchant is not in the EU
        ("FR", "business", "GR", True, "reverse_charge"),
    ],
)
def test_vat_rule(merchant, entity, partner, has_vat, rule):
    assert vat_rule(merchant, entity, partner, has_vat) == rule


@pytest.mark.parametrize(
    ("nets", "rate", "rounding", "vats"),
    [
        ([1000], "21", "half_even", [210]),
        ([5, 5], "10", "half_even", [0, 0]),  # 0.5 each, to even: the total is not rounded again (it would be 1)
        ([5, 5], "10", "half_up", [1, 1]),
        ([15], "10", "half_even", [2]),  # 1.5 -> 2
        ([333, 333, 334], "21", "half_even", [70, 70, 70]),
        ([12345], "5.5", "half_even", [679]),  # 678.975 -> 679
        ([-1000], "21", "half_even", [-210]),  # a negative line (a reversal)
        ([0], "20", "half_even", [0]),
    ],
)
def test_vat_is_rounded_once_per_line(nets, rate, rounding, vats):
    lines = lines_with_vat([(f"line {n}", net) for n, net in enumerate(nets)], "domestic", Decimal(rate), rounding)
    assert [line.vat_minor for line in lines] == vats
    for line in lines:  # an independent computation: exact fraction, then the rounding rule
        exact = Fraction(line.net_minor) * Fraction(rate) / 100
        assert abs(Fraction(line.vat_minor) - exact) <= Fraction(1, 2)
    assert all(isinstance(line.vat_minor, int) for line in lines)


@pytest.mark.parametrize("rule", ["reverse_charge", "none"])
def test_no_vat_outside_the_domestic_rule(rule):
    lines = lines_with_vat([("a", 1000), ("b", 999)], rule, Decimal("21"))
    assert [line.vat_minor for line in lines] == [0, 0]
