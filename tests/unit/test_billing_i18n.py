"""Issue 19 "Languages", statement exports: billing's own catalogue (billing/locale/<lang>/LC_MESSAGES/billing.po)
translates every string billing marks (`w._()`, `N_()`), with the same placeholders, in each language; and the
words and formats an export uses follow the statement's language."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from billing import locales
from kernel.catalogues import SUPPORTED

BILLING = Path(locales.__file__).parent


def _marked() -> set[str]:
    found = extract_from_dir(str(BILLING), [("**.py", "python")], keywords={"_": None, "N_": None})
    return {message for _file, _line, message, _comments, _context in found}


def _catalogue(lang: str):
    with (locales.LOCALE_DIR / lang / "LC_MESSAGES" / "billing.po").open("rb") as handle:
        return read_po(handle, locale=lang)


def test_billing_marks_the_exports_words() -> None:
    marked = _marked()
    for expected in ("Statement %(number)s", "Date (UTC)", "Self-billed invoice %(number)s", "VAT rate"):
        assert expected in marked
    assert any(m.startswith("Reverse charge:") for m in marked) and any(m.startswith("No VAT") for m in marked)


@pytest.mark.parametrize("lang", [lang for lang in SUPPORTED if lang != "en"])
def test_each_catalogue_translates_every_billing_string(lang: str) -> None:
    catalog = _catalogue(lang)
    missing = []
    for message in sorted(_marked()):
        entry = catalog.get(message)
        if entry is None or "fuzzy" in entry.flags or not entry.string:
            missing.append(message)
    assert missing == [], f"{lang}: run the billing update in docs/i18n.md and translate these"


@pytest.mark.parametrize("lang", [lang for lang in SUPPORTED if lang != "en"])
def test_placeholders_survive_translation(lang: str) -> None:
    for entry in _catalogue(lang):
        if entry.id:
            wanted = sorted(re.findall(r"%\(\w+\)[sd]", entry.id))
            assert sorted(re.findall(r"%\(\w+\)[sd]", entry.string)) == wanted, (lang, entry.id, entry.string)


def test_catalogues_compile_at_import() -> None:
    assert locales.Words("pl")._("Statement %(number)s") == "Zestawienie %(number)s"
    assert locales.Words("de")._("Payment terms") == "Zahlungsbedingungen"
    assert locales.Words("en")._("Payment terms") == "Payment terms"  # English is the msgids


@pytest.mark.parametrize(
    ("lang", "money", "day"),
    [
        ("en", "123,456.78 PLN", "Dec 1, 2026"),
        ("de", "123.456,78 PLN", "01.12.2026"),
        ("es", "123.456,78 PLN", "1 dic 2026"),
        ("fr", "123\u202f456,78 PLN", "1 déc. 2026"),
        ("pl", "123\u00a0456,78 PLN", "1 gru 2026"),
    ],
)
def test_money_and_dates_for_people_in_each_language(lang: str, money: str, day: str) -> None:
    w = locales.Words(lang, human=True)
    assert w.money(12345678, "PLN") == money and w.day(dt.date(2026, 12, 1)) == day
    assert w.amount(-5, "EUR").endswith("0,05") if lang != "en" else w.amount(-5, "EUR") == "-0.05"
    assert locales.Words(lang, human=True).amount(1470, "JPY") in ("1,470", "1.470", "1\u202f470", "1\u00a0470")


@pytest.mark.parametrize("lang", SUPPORTED)
def test_machine_values_never_change_with_the_language(lang: str) -> None:
    w = locales.Words(lang, human=False)
    assert (w.money(12345678, "PLN"), w.amount(-5, "EUR"), w.day(dt.date(2026, 12, 1))) == (
        "123456.78 PLN",
        "-0.05",
        "2026-12-01",
    )
