"""A partner's payout and tax details, checked: pure functions, no database (portal/payout_data.py stores them).

IBANs and BICs are checked with schwifty (country format and check digits), VAT numbers with python-stdnum
(the VAT number format and check digits of the partner's country; an EU number carries its country prefix).
Every refusal is a DetailError naming the field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import schwifty
import stdnum.eu.vat as eu_vat
from stdnum import exceptions as stdnum_exceptions
from stdnum import get_cc_module
from stdnum.exceptions import ValidationError as StdnumError

# Member states of the EU VAT area by ISO 3166 code (Greece writes EL in VAT numbers, Northern Ireland XI).
EU_COUNTRIES = frozenset("AT BE BG CY CZ DE DK EE ES FI FR GR HR HU IE IT LT LU LV MT NL PL PT RO SE SI SK".split())
_VAT_PREFIX = {"GR": "EL"}
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")

METHODS = ("sepa", "paypal")
ENTITIES = ("business", "individual")


class DetailError(ValueError):
    """A value refused; `field` names it. `reason`: the machine code of a library's reason (REASONS), whose own
    English words the detail keeps in brackets; None when the refusal is ours."""

    def __init__(self, field: str, detail: str, reason: str | None = None) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.detail = detail
        self.reason = reason


# Why schwifty or python-stdnum refused an IBAN, a BIC or a VAT number, as a machine code per exception class
# (the first that matches: a subclass before its base). A page says the code in its language
# (portal/refusals.py); the JSON API's detail keeps the library's English words.
_SCHWIFTY = schwifty.exceptions
REASONS: tuple[tuple[type[Exception], str], ...] = (
    (_SCHWIFTY.InvalidChecksumDigits, "checksum"),
    (_SCHWIFTY.InvalidBBANChecksum, "national_checksum"),
    (_SCHWIFTY.InvalidLength, "length"),
    (_SCHWIFTY.InvalidStructure, "format"),
    (_SCHWIFTY.InvalidCountryCode, "country_code"),
    (_SCHWIFTY.InvalidBankCode, "bank_code"),
    (_SCHWIFTY.InvalidBranchCode, "branch_code"),
    (_SCHWIFTY.InvalidAccountCode, "account_code"),
    (stdnum_exceptions.InvalidLength, "length"),
    (stdnum_exceptions.InvalidFormat, "format"),
    (stdnum_exceptions.InvalidChecksum, "checksum"),
    (stdnum_exceptions.InvalidComponent, "component"),
)


def reason(exc: Exception) -> str:
    """The machine code of a library's refusal; "other" for an exception REASONS does not list."""
    return next((code for kind, code in REASONS if isinstance(exc, kind)), "other")


@dataclass(frozen=True)
class PayoutDetails:
    legal_name: str
    address: str
    country: str  # ISO 3166-1 alpha-2
    entity: str  # business | individual
    method: str  # sepa | paypal
    iban: str | None  # compact, upper case (sepa)
    bic: str | None
    paypal_email: str | None  # (paypal)
    vat_number: str | None  # compact; EU numbers with their country prefix


def check_iban(field: str, value: str) -> str:
    try:
        return str(schwifty.IBAN(value).compact)
    except (schwifty.exceptions.SchwiftyException, ValueError) as exc:
        raise DetailError(field, f"is not a valid IBAN ({exc})", reason(exc)) from exc


def check_bic(field: str, value: str) -> str:
    try:
        return str(schwifty.BIC(value.replace(" ", "")).compact)
    except (schwifty.exceptions.SchwiftyException, ValueError) as exc:
        raise DetailError(field, f"is not a valid BIC ({exc})", reason(exc)) from exc


def check_vat(field: str, value: str, country: str) -> str:
    """The VAT number of a business registered in `country`, compact (EU: with its prefix, e.g. DE136695976)."""
    raw = re.sub(r"[\s.\-/]", "", value).upper()
    if country in EU_COUNTRIES:
        prefix = _VAT_PREFIX.get(country, country)
        if not raw.startswith(prefix):
            raw = prefix + raw
        try:
            return str(eu_vat.validate(raw))
        except StdnumError as exc:
            raise DetailError(field, f"is not a valid {country} VAT number ({exc})", reason(exc)) from exc
    module = get_cc_module(country.lower(), "vat")
    if module is None:
        if not re.fullmatch(r"[A-Z0-9]{4,20}", raw):
            raise DetailError(field, "must be 4 to 20 letters and digits")
        return raw
    try:
        return str(module.validate(raw))
    except StdnumError as exc:
        raise DetailError(field, f"is not a valid {country} VAT number ({exc})", reason(exc)) from exc


def _text(field: str, value: Any, hi: int, lines: bool = False) -> str:
    if not isinstance(value, str):
        raise DetailError(field, "must be a string")
    value = value.strip().replace("\r\n", "\n")
    if not 1 <= len(value) <= hi:
        raise DetailError(field, f"must be 1 to {hi} characters")
    allowed = "\t\n" if lines else "\t"
    if any(ord(c) < 32 and c not in allowed for c in value):
        raise DetailError(field, "must not hold control characters")
    return str(value)


def check(values: dict[str, Any]) -> PayoutDetails:
    """The details from a form or body (strings), each checked; DetailError naming the first bad field."""
    legal_name = _text("legal_name", values.get("legal_name"), 200)
    address = _text("address", values.get("address"), 500, lines=True)
    country = str(values.get("country") or "").strip().upper()
    if not _COUNTRY.fullmatch(country):
        raise DetailError("country", "must be a two-letter ISO 3166 country code, e.g. DE")
    entity = values.get("entity")
    if entity not in ENTITIES:
        raise DetailError("entity", "must be business or individual")
    method = values.get("method")
    if method not in METHODS:
        raise DetailError("method", "must be sepa or paypal")
    iban = bic = email = None
    if method == "sepa":
        if not values.get("iban"):
            raise DetailError("iban", "is required for a SEPA bank transfer")
        iban = check_iban("iban", str(values["iban"]))
        if values.get("bic"):
            bic = check_bic("bic", str(values["bic"]))
    else:
        email = str(values.get("paypal_email") or "").strip().lower()
        # Never a cell a spreadsheet would run as a formula: the PayPal file is CSV.
        if not _EMAIL.fullmatch(email) or len(email) > 254 or email[0] in "=+-@":
            raise DetailError("paypal_email", "must be the e-mail address of the PayPal account")
    vat = None
    if values.get("vat_number"):
        vat = check_vat("vat_number", str(values["vat_number"]), country)
    return PayoutDetails(legal_name, address, country, entity, method, iban, bic, email, vat)


def vat_country(vat_number: str) -> str:
    """The ISO country of a compact EU VAT number ('EL...' is GR)."""
    prefix = vat_number[:2]
    return "GR" if prefix == "EL" else prefix
