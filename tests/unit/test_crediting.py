"""The coupon credit policies and a code's validity, from tables (tracker/crediting.py)."""

from __future__ import annotations

import pytest

from kernel.crediting import Coupon, decide, normalize, state, valid_code

A, B = 1, 2


@pytest.mark.parametrize(
    ("policy", "click", "coupon", "expected"),
    [
        ("always", None, None, None),
        ("always", B, None, "click"),
        ("always", None, A, "coupon"),
        ("always", B, A, "coupon"),  # another partner's click loses to the code
        ("always", A, A, "click"),  # the same partner: its click, with its sub ids
        ("no_click", B, A, "click"),
        ("no_click", None, A, "coupon"),
        ("no_click", None, None, None),
        ("same_partner", B, A, "click"),  # B keeps its click; the code credits nobody
        ("same_partner", A, A, "click"),
        ("same_partner", None, A, None),
    ],
)
def test_decide(policy: str, click: int | None, coupon: int | None, expected: str | None) -> None:
    assert decide(policy, click, coupon) == expected


@pytest.mark.parametrize(
    ("coupon", "now", "expected"),
    [
        (None, 100.0, "unknown"),
        (Coupon("X", A, 1, None, None, False), 100.0, "inactive"),
        (Coupon("X", A, 1, 200.0, None, True), 100.0, "not_yet_valid"),
        (Coupon("X", A, 1, 100.0, 200.0, True), 100.0, "valid"),  # from is inclusive
        (Coupon("X", A, 1, None, 200.0, True), 200.0, "expired"),  # until is exclusive
        (Coupon("X", A, None, None, None, True), 1e12, "valid"),
    ],
)
def test_state(coupon: Coupon | None, now: float, expected: str) -> None:
    assert state(coupon, now) == expected


@pytest.mark.parametrize(
    ("text", "code", "valid"),
    [(" anna10 ", "ANNA10", True), ("summer-24_x", "SUMMER-24_X", True), ("a b", "A B", False), ("-X", "-X", False)],
)
def test_codes(text: str, code: str, valid: bool) -> None:
    assert normalize(text) == code and valid_code(code) is valid
