"""Currencies and amounts: ISO 4217 exponents, strict parsing, exact rounding, conversion and allocation."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal
from fractions import Fraction
from types import MappingProxyType

__all__ = [
    "DEFAULT_MAX_MINOR",
    "EXPONENTS",
    "ROUNDING",
    "AmountError",
    "allocate",
    "convert",
    "exponent",
    "format_amount",
    "normalize_currency",
    "parse_amount",
    "round_minor",
]

_BY_EXPONENT: dict[int, str] = {
    0: "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF",
    2: (
        "AED AFN ALL AMD AOA ARS AUD AWG AZN BAM BBD BDT BMD BND BOB BOV BRL BSD BTN BWP BYN BZD CAD CDF CHE CHF"
        " CHW CNY COP COU CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GTQ GYD HKD HNL"
        " HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU"
        " MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR"
        " SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD USN UYU UZS VED"
        " VES WST XCD XCG YER ZAR ZMW ZWG"
        # Withdrawn recently; kept so that late events and refunds of older orders still parse.
        " ANG BGN CUC SLL ZWL"
    ),
    3: "BHD IQD JOD KWD LYD OMR TND",
    4: "CLF UYW",
}

# Code -> number of minor-unit digits. Codes without a minor unit (gold, SDRs, the test code) are left out.
EXPONENTS: Mapping[str, int] = MappingProxyType(
    {code: exp for exp, codes in _BY_EXPONENT.items() for code in codes.split()}
)

ROUNDING: Mapping[str, str] = MappingProxyType({"half_even": ROUND_HALF_EVEN, "half_up": ROUND_HALF_UP})

DEFAULT_MAX_MINOR = 10**15
_MAX_AMOUNT_CHARS = 32
# [0-9] rather than \d: \d would accept Arabic-Indic and other Unicode digits.
_AMOUNT = re.compile(r"(-?)([0-9]+)(?:\.([0-9]+))?")


class AmountError(ValueError):
    """A currency or amount refused at the boundary; `code` is machine-readable, `detail` is for people."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


def normalize_currency(code: str) -> str:
    """Return the upper-case ISO 4217 code for `code` (matched case-insensitively), or raise unknown_currency."""
    if isinstance(code, str) and len(code) == 3 and code.isascii():
        upper = code.upper()
        if upper in EXPONENTS:
            return upper
    raise AmountError("unknown_currency", f"not an ISO 4217 currency with minor units: {code!r}")


def exponent(currency: str) -> int:
    """Return the number of minor-unit digits of `currency` (JPY 0, USD 2, KWD 3, CLF 4)."""
    return EXPONENTS[normalize_currency(currency)]


def parse_amount(text: str, currency: str, *, max_minor: int = DEFAULT_MAX_MINOR) -> int:
    """Parse a plain decimal string such as "129.99" into integer minor units of `currency`.

    Only ASCII digits with an optional fractional part are accepted: no sign, exponent, spaces, grouping or
    bare point. Trailing zeros past the currency's exponent are fine ("1.500" USD is 150); other extra digits
    are refused rather than rounded.
    """
    ccy = normalize_currency(currency)
    if not isinstance(text, str):
        raise AmountError("invalid_amount", f"amount must be a decimal string, not {type(text).__name__}")
    if len(text) > _MAX_AMOUNT_CHARS:
        raise AmountError("invalid_amount", f"amount longer than {_MAX_AMOUNT_CHARS} characters")
    match = _AMOUNT.fullmatch(text)
    if match is None:
        raise AmountError("invalid_amount", f"not a plain decimal amount: {text!r}")
    sign, whole, frac = match.groups()
    if sign:
        raise AmountError("negative_amount", f"amount must not be negative: {text!r}")
    exp = EXPONENTS[ccy]
    digits = (frac or "").rstrip("0")
    if len(digits) > exp:
        raise AmountError("too_many_decimals", f"{ccy} has {exp} decimal places: {text!r}")
    minor = int(whole + digits.ljust(exp, "0"))
    if minor > max_minor:
        raise AmountError("amount_too_large", f"amount over the limit of {format_amount(max_minor, ccy)} {ccy}")
    return minor


def format_amount(minor: int, currency: str) -> str:
    """Render minor units as a plain decimal string: 1234 USD -> "12.34", -5 USD -> "-0.05", 100 JPY -> "100"."""
    _require_int(minor, "minor")
    exp = exponent(currency)
    sign = "-" if minor < 0 else ""
    whole, frac = divmod(abs(minor), 10**exp)
    return f"{sign}{whole}.{frac:0{exp}d}" if exp else f"{sign}{whole}"


def round_minor(value: Decimal | Fraction | int, mode: str = "half_even") -> int:
    """Round an exact amount in minor units to an integer, once; ties go to even or away from zero ("half_up").

    "down" (toward zero) is for estimates that must never round up, e.g. the tracker's payout caps: it is not
    one of the ROUNDING modes a merchant's plan may choose.
    """
    if mode not in ROUNDING and mode != "down":
        raise ValueError(f"unknown rounding mode {mode!r}; expected one of {sorted(ROUNDING)}")
    if isinstance(value, bool) or not isinstance(value, int | Decimal | Fraction):
        raise TypeError(f"money is never {type(value).__name__}: pass a Decimal, Fraction or int")
    if isinstance(value, Decimal) and not value.is_finite():
        raise ValueError(f"cannot round a non-finite amount: {value}")
    num, den = value.as_integer_ratio()
    whole, rest = divmod(abs(num), den)
    twice = 2 * rest
    if mode == "down":
        pass
    elif twice > den or (twice == den and (mode == "half_up" or whole % 2 == 1)):
        whole += 1
    return whole if num >= 0 else -whole


def convert(minor: int, from_ccy: str, to_ccy: str, rate: Decimal, mode: str = "half_even") -> int:
    """Convert minor units of `from_ccy` into minor units of `to_ccy`, rounding once.

    `rate` is how many units of `to_ccy` one unit of `from_ccy` buys (Decimal("0.0067") for JPY -> USD);
    the different exponents of the two currencies are taken into account exactly.
    """
    _require_int(minor, "minor")
    if isinstance(rate, bool) or not isinstance(rate, Decimal | int):
        raise TypeError(f"a rate is a Decimal, never {type(rate).__name__}")
    if (isinstance(rate, Decimal) and not rate.is_finite()) or rate <= 0:
        raise ValueError(f"a rate must be finite and positive: {rate}")
    shift = exponent(to_ccy) - exponent(from_ccy)
    return round_minor(Fraction(minor) * Fraction(rate) * Fraction(10) ** shift, mode)


def allocate(total: int, weights: Sequence[int]) -> list[int]:
    """Split `total` in proportion to `weights` so that the parts add up to exactly `total`.

    Largest remainder: each part gets the floor of its exact share, and the units left over go to the
    largest fractional remainders, earlier positions first on ties. A zero weight always gets 0; a
    negative total is split as the negation of the positive split.
    """
    _require_int(total, "total")
    for weight in weights:
        _require_int(weight, "weight")
        if weight < 0:
            raise ValueError(f"weights must not be negative: {weight}")
    weight_sum = sum(weights)
    if weight_sum == 0:
        raise ValueError("weights must contain at least one positive weight")
    magnitude = abs(total)
    parts: list[int] = []
    remainders: list[tuple[int, int]] = []
    for index, weight in enumerate(weights):
        share, rest = divmod(magnitude * weight, weight_sum)
        parts.append(share)
        remainders.append((-rest, index))
    for _, index in sorted(remainders)[: magnitude - sum(parts)]:
        parts[index] += 1
    return parts if total >= 0 else [-part for part in parts]


def _require_int(value: object, name: str) -> None:
    # bool is an int subclass and float sneaks in from JSON: both are bugs on a money path.
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int of minor units, not {type(value).__name__}")
