"""Tables for kernel.money: currencies, strict parsing, formatting, rounding, conversion and allocation."""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernel.money import (
    EXPONENTS,
    AmountError,
    allocate,
    convert,
    exponent,
    format_amount,
    normalize_currency,
    parse_amount,
    round_minor,
)

# No example database: the tests must not leave files in the work tree.
PROPERTY = settings(database=None, deadline=None, max_examples=300)
SAMPLE_CURRENCIES = ["USD", "EUR", "JPY", "KWD", "BHD", "CLF", "UYW", "ISK", "XOF"]


def half_even(value: Fraction) -> int:
    """Independent reference: Python's round() on a Fraction breaks ties to even."""
    return round(value)


def half_up(value: Fraction) -> int:
    """Independent reference: ties away from zero, symmetric for negative amounts."""
    magnitude = math.floor(abs(value) + Fraction(1, 2))
    return magnitude if value >= 0 else -magnitude


REFERENCE = {"half_even": half_even, "half_up": half_up}


@pytest.mark.parametrize(
    ("code", "exp"),
    [
        ("JPY", 0),
        ("KRW", 0),
        ("ISK", 0),
        ("CLP", 0),
        ("VND", 0),
        ("XOF", 0),
        ("XAF", 0),
        ("XPF", 0),
        ("UYI", 0),
        ("USD", 2),
        ("EUR", 2),
        ("GBP", 2),
        ("CHF", 2),
        ("XCG", 2),
        ("ZWG", 2),
        ("SLE", 2),
        ("VES", 2),
        ("MRU", 2),
        ("KWD", 3),
        ("BHD", 3),
        ("JOD", 3),
        ("OMR", 3),
        ("TND", 3),
        ("LYD", 3),
        ("IQD", 3),
        ("CLF", 4),
        ("UYW", 4),
    ],
)
def test_exponents(code: str, exp: int) -> None:
    assert EXPONENTS[code] == exp
    assert exponent(code.lower()) == exp


@pytest.mark.parametrize("code", ["XAU", "XAG", "XPD", "XPT", "XDR", "XSU", "XUA", "XTS", "XXX", "XBA", "XBD"])
def test_codes_without_minor_unit_are_left_out(code: str) -> None:
    assert code not in EXPONENTS


def test_exponent_table_shape() -> None:
    assert len(EXPONENTS) > 160
    assert all(len(code) == 3 and code.isascii() and code.isupper() for code in EXPONENTS)
    assert set(EXPONENTS.values()) == {0, 2, 3, 4}
    with pytest.raises(TypeError):
        EXPONENTS["ABC"] = 2  # type: ignore[index]


@pytest.mark.parametrize(("given_code", "expected"), [("USD", "USD"), ("usd", "USD"), ("Jpy", "JPY"), ("kwd", "KWD")])
def test_normalize_currency(given_code: str, expected: str) -> None:
    assert normalize_currency(given_code) == expected


@pytest.mark.parametrize(
    "bad", ["", "US", "USDD", " USD", "USD ", "XAU", "US1", "\uff35\uff33\uff24", "ÜSD", "EU€", None, 840]
)
def test_normalize_currency_refuses(bad: object) -> None:
    with pytest.raises(AmountError) as caught:
        normalize_currency(bad)  # type: ignore[arg-type]
    assert caught.value.code == "unknown_currency"


@pytest.mark.parametrize(
    ("text", "currency", "minor"),
    [
        ("0", "USD", 0),
        ("0.00", "USD", 0),
        ("12.34", "USD", 1234),
        ("12.3", "USD", 1230),
        ("1.500", "USD", 150),
        ("1.5000000000", "USD", 150),
        ("007.10", "USD", 710),
        ("129.99", "usd", 12999),
        ("100", "JPY", 100),
        ("100.000", "JPY", 100),
        ("1.234", "KWD", 1234),
        ("0.001", "KWD", 1),
        ("1.2345", "CLF", 12345),
        ("10000000000000.00", "USD", 10**15),
        ("1000000000000000", "JPY", 10**15),
    ],
)
def test_parse_amount(text: str, currency: str, minor: int) -> None:
    assert parse_amount(text, currency) == minor
    # Independent check: the exact value of the string times 10**exponent.
    assert Fraction(text) * 10 ** EXPONENTS[currency.upper()] == minor


@pytest.mark.parametrize(
    ("text", "currency", "code"),
    [
        ("", "USD", "invalid_amount"),
        ("-1", "USD", "negative_amount"),
        ("-0.50", "USD", "negative_amount"),
        ("--1", "USD", "invalid_amount"),
        ("+1", "USD", "invalid_amount"),
        ("1e3", "USD", "invalid_amount"),
        ("1E3", "USD", "invalid_amount"),
        ("NaN", "USD", "invalid_amount"),
        ("nan", "USD", "invalid_amount"),
        ("inf", "USD", "invalid_amount"),
        ("Infinity", "USD", "invalid_amount"),
        ("1,00", "USD", "invalid_amount"),
        ("1_000", "USD", "invalid_amount"),
        (".5", "USD", "invalid_amount"),
        ("5.", "USD", "invalid_amount"),
        ("1.2.3", "USD", "invalid_amount"),
        ("0x10", "USD", "invalid_amount"),
        ("\u0661\u0662", "USD", "invalid_amount"),
        ("\uff11\uff12", "USD", "invalid_amount"),
        (" 1", "USD", "invalid_amount"),
        ("1 ", "USD", "invalid_amount"),
        ("1\n", "USD", "invalid_amount"),
        ("1" * 33, "JPY", "invalid_amount"),
        ("0.001", "USD", "too_many_decimals"),
        ("1.0001", "USD", "too_many_decimals"),
        ("1.5", "JPY", "too_many_decimals"),
        ("0.0001", "KWD", "too_many_decimals"),
        ("1.23456", "CLF", "too_many_decimals"),
        ("10000000000000.01", "USD", "amount_too_large"),
        ("1000000000000001", "JPY", "amount_too_large"),
        ("1", "XAU", "unknown_currency"),
        ("1", "US", "unknown_currency"),
        ("abc", "XXX", "unknown_currency"),
    ],
)
def test_parse_amount_refuses(text: str, currency: str, code: str) -> None:
    with pytest.raises(AmountError) as caught:
        parse_amount(text, currency)
    assert caught.value.code == code
    assert caught.value.detail
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("value", [12.5, 12, None, b"12", Decimal("12")])
def test_parse_amount_refuses_non_strings(value: object) -> None:
    with pytest.raises(AmountError) as caught:
        parse_amount(value, "USD")  # type: ignore[arg-type]
    assert caught.value.code == "invalid_amount"


@pytest.mark.parametrize(("text", "ok"), [("1.00", True), ("1.01", False), ("0.99", True)])
def test_parse_amount_custom_limit(text: str, ok: bool) -> None:
    if ok:
        assert parse_amount(text, "USD", max_minor=100) == int(Fraction(text) * 100)
    else:
        with pytest.raises(AmountError, match="amount_too_large"):
            parse_amount(text, "USD", max_minor=100)


@pytest.mark.parametrize(
    ("minor", "currency", "text"),
    [
        (1234, "USD", "12.34"),
        (-5, "USD", "-0.05"),
        (0, "USD", "0.00"),
        (-1234, "USD", "-12.34"),
        (100, "JPY", "100"),
        (-100, "JPY", "-100"),
        (1, "KWD", "0.001"),
        (-1001, "KWD", "-1.001"),
        (12345, "CLF", "1.2345"),
        (5, "usd", "0.05"),
        (10**15, "USD", "10000000000000.00"),
    ],
)
def test_format_amount(minor: int, currency: str, text: str) -> None:
    assert format_amount(minor, currency) == text


@pytest.mark.parametrize("bad", [12.5, True, Decimal("1"), "12"])
def test_format_amount_refuses_non_int(bad: object) -> None:
    with pytest.raises(TypeError):
        format_amount(bad, "USD")  # type: ignore[arg-type]


@PROPERTY
@given(minor=st.integers(0, 10**15), currency=st.sampled_from(SAMPLE_CURRENCIES))
def test_format_then_parse_round_trips(minor: int, currency: str) -> None:
    text = format_amount(minor, currency)
    assert parse_amount(text, currency) == minor
    assert Fraction(text) * 10 ** EXPONENTS[currency] == minor


@pytest.mark.parametrize(
    ("value", "even", "up"),
    [
        (Decimal("0.5"), 0, 1),
        (Decimal("1.5"), 2, 2),
        (Decimal("2.5"), 2, 3),
        (Decimal("-2.5"), -2, -3),
        (Decimal("-0.5"), 0, -1),
        (Decimal("50.5"), 50, 51),
        (Decimal("2.4999999"), 2, 2),
        (Decimal("2.5000001"), 3, 3),
        (Decimal("-2.5000001"), -3, -3),
        (Decimal("7"), 7, 7),
        (Decimal("1E+30"), 10**30, 10**30),
        # More digits than the default 28-digit context: still exact.
        (Decimal("123456789012345678901234567890.5"), 123456789012345678901234567890, 123456789012345678901234567891),
        (Fraction(1, 3), 0, 0),
        (Fraction(5, 2), 2, 3),
        (7, 7, 7),
    ],
)
def test_round_minor(value: Decimal | Fraction | int, even: int, up: int) -> None:
    assert round_minor(value) == even
    assert round_minor(value, "half_even") == even
    assert round_minor(value, "half_up") == up


@pytest.mark.parametrize(
    ("value", "mode", "error"),
    [
        (0.5, "half_even", TypeError),
        (True, "half_even", TypeError),
        ("0.5", "half_even", TypeError),
        (Decimal("NaN"), "half_even", ValueError),
        (Decimal("Infinity"), "half_up", ValueError),
        (Decimal("1"), "up", ValueError),
        (Decimal("1"), "ROUND_HALF_UP", ValueError),
    ],
)
def test_round_minor_refuses(value: object, mode: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        round_minor(value, mode)  # type: ignore[arg-type]


@PROPERTY
@given(value=st.fractions(max_denominator=10**6), mode=st.sampled_from(["half_even", "half_up"]))
def test_round_minor_matches_reference(value: Fraction, mode: str) -> None:
    assert round_minor(value, mode) == REFERENCE[mode](value)
    assert abs(round_minor(value, mode) - value) <= Fraction(1, 2)


@pytest.mark.parametrize(
    ("minor", "source", "target", "rate", "mode", "expected"),
    [
        (10000, "JPY", "USD", Decimal("0.0067"), "half_even", 6700),  # 10,000 yen -> 67.00 USD
        (1234, "USD", "JPY", Decimal("149.5"), "half_even", 1845),  # 12.34 USD -> 1844.83 yen
        (1000, "USD", "KWD", Decimal("0.3075"), "half_even", 3075),  # 10.00 USD -> 3.075 KWD
        (1000, "JPY", "KWD", Decimal("0.00205"), "half_even", 2050),  # 1000 yen -> 2.050 KWD
        (3075, "KWD", "USD", Decimal("3.2520"), "half_even", 1000),  # 3.075 KWD -> 9.99990 USD
        (1, "USD", "EUR", Decimal("0.5"), "half_even", 0),
        (1, "USD", "EUR", Decimal("0.5"), "half_up", 1),
        (3, "USD", "EUR", Decimal("0.5"), "half_even", 2),
        (1, "KWD", "JPY", Decimal("500"), "half_even", 0),  # 0.001 KWD -> 0.5 yen
        (1, "KWD", "JPY", Decimal("500"), "half_up", 1),
        (-1234, "USD", "JPY", Decimal("149.5"), "half_even", -1845),
        (12345, "USD", "USD", Decimal("1"), "half_even", 12345),
    ],
)
def test_convert(minor: int, source: str, target: str, rate: Decimal, mode: str, expected: int) -> None:
    assert convert(minor, source, target, rate, mode) == expected
    shift = EXPONENTS[target] - EXPONENTS[source]
    assert REFERENCE[mode](Fraction(minor) * Fraction(str(rate)) * Fraction(10) ** shift) == expected


@pytest.mark.parametrize(
    ("minor", "rate", "target", "error"),
    [
        (100, 1.1, "EUR", TypeError),
        (100, "1.1", "EUR", TypeError),
        (1.5, Decimal("1.1"), "EUR", TypeError),
        (100, Decimal("0"), "EUR", ValueError),
        (100, Decimal("-1.1"), "EUR", ValueError),
        (100, Decimal("NaN"), "EUR", ValueError),
        (100, Decimal("Infinity"), "EUR", ValueError),
        (100, Decimal("1.1"), "XAU", AmountError),
    ],
)
def test_convert_refuses(minor: object, rate: object, target: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        convert(minor, "USD", target, rate)  # type: ignore[arg-type]


@PROPERTY
@given(
    minor=st.integers(-(10**15), 10**15),
    source=st.sampled_from(SAMPLE_CURRENCIES),
    target=st.sampled_from(SAMPLE_CURRENCIES),
    rate=st.decimals(min_value=Decimal("0.000001"), max_value=Decimal("100000"), places=6),
    mode=st.sampled_from(["half_even", "half_up"]),
)
def test_convert_matches_reference(minor: int, source: str, target: str, rate: Decimal, mode: str) -> None:
    exact = Fraction(minor) * Fraction(str(rate)) * Fraction(10) ** (EXPONENTS[target] - EXPONENTS[source])
    assert convert(minor, source, target, rate, mode) == REFERENCE[mode](exact)


@pytest.mark.parametrize(
    ("total", "weights", "parts"),
    [
        (100, [1, 1, 1], [34, 33, 33]),
        (10, [1, 0, 2], [3, 0, 7]),
        (-10, [1, 0, 2], [-3, 0, -7]),
        (0, [1, 2], [0, 0]),
        (7, [5], [7]),
        (5, [1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0, 0]),
        (1, [0, 1], [0, 1]),
        (12999, [975, 200], [10786, 2213]),
        (1, [10**15, 1], [1, 0]),
    ],
)
def test_allocate(total: int, weights: list[int], parts: list[int]) -> None:
    assert allocate(total, weights) == parts
    assert sum(parts) == total


@pytest.mark.parametrize(
    ("total", "weights", "error"),
    [
        (10, [], ValueError),
        (10, [0, 0], ValueError),
        (10, [-1, 2], ValueError),
        (10, [1.5, 1], TypeError),
        (10.0, [1, 1], TypeError),
        (10, [True, 1], TypeError),
    ],
)
def test_allocate_refuses(total: object, weights: list[object], error: type[Exception]) -> None:
    with pytest.raises(error):
        allocate(total, weights)  # type: ignore[arg-type]


@PROPERTY
@given(
    total=st.integers(-(10**15), 10**15),
    weights=st.lists(st.integers(0, 10**9), min_size=1, max_size=20).filter(any),
)
def test_allocate_sums_exactly(total: int, weights: list[int]) -> None:
    parts = allocate(total, weights)
    assert sum(parts) == total
    weight_sum = sum(weights)
    for part, weight in zip(parts, weights, strict=True):
        exact = Fraction(total * weight, weight_sum)
        assert abs(part - exact) < 1  # each part is its exact share rounded down or up
        if weight == 0:
            assert part == 0
