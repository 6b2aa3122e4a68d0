"""Issue 19: why a library refused an IBAN, a BIC or a VAT number, as a machine code per exception class
(kernel/payout_details.py REASONS), said by a page in its language (portal/refusals.py); the detail keeps the
library's English words (what the JSON API answers)."""

from __future__ import annotations

import pytest

from kernel import payout_details
from kernel.payout_details import DetailError
from portal import i18n, refusals


@pytest.mark.parametrize(
    ("check", "value", "code", "library"),
    [
        (payout_details.check_iban, "DE89 3704 0044 0532 0130 01", "checksum", "Invalid checksum digits"),
        (payout_details.check_iban, "DE89 3704", "length", "Invalid IBAN length"),
        (payout_details.check_iban, "XX89 3704 0044 0532 0130 00", "country_code", "Unknown country-code 'XX'"),
        (payout_details.check_iban, "DE89 37!4 0044 0532 0130 00", "format", "Invalid characters in IBAN"),
        (payout_details.check_bic, "XYZ", "length", "Invalid length '3'"),
        (payout_details.check_bic, "DEUTDEFFXX!", "format", "Invalid structure"),
        (lambda f, v: payout_details.check_vat(f, v, "DE"), "DE12345678", "length", "invalid length"),
        (lambda f, v: payout_details.check_vat(f, v, "DE"), "DE136695970", "checksum", "checksum or check digit"),
        (lambda f, v: payout_details.check_vat(f, v, "DE"), "DEABCDEFGHI", "format", "invalid format"),
    ],
)
def test_each_refusal_keeps_the_librarys_words_and_names_its_reason(check, value, code, library):
    with pytest.raises(DetailError) as refused:
        check("field", value)
    assert refused.value.reason == code and library in refused.value.detail


def test_every_reason_code_is_said_on_pages_and_an_unknown_one_keeps_the_librarys_words():
    codes = {code for _, code in payout_details.REASONS}
    assert codes == set(refusals.REASONS)
    assert payout_details.reason(ValueError("odd")) == "other"
    detail = "iban: is not a valid IBAN (Invalid checksum digits)"
    token = i18n.CURRENT.set("pl")
    try:
        assert (
            refusals.shown(detail, "checksum") == "iban: nie jest prawidłowym numerem IBAN (cyfry kontrolne są błędne)"
        )
        assert refusals.shown(detail, "other").endswith("(Invalid checksum digits)")
        assert refusals.shown(detail).endswith("(Invalid checksum digits)")
    finally:
        i18n.CURRENT.reset(token)
