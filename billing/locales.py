"""The words and formats of a statement's exports, in the statement's language.

A statement closed from layout 3 on (billing/statement_doc.py) carries its language (statements.locale, fixed
when it closes): its PDF is written in that language, with money, numbers and dates formatted by Babel's CLDR
data; its CSV translates its labels and sentences only, its machine columns stay as they were. Statements
closed before (layouts 1 and 2) are English, plain decimals and ISO dates, byte for byte as they were.

Catalogues: billing/locale/<lang>/LC_MESSAGES/billing.po, compiled into memory at import (kernel/catalogues.py);
billing cannot import the portal's. See docs/i18n.md."""

from __future__ import annotations

import datetime as dt
import gettext
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from babel.dates import format_date
from babel.numbers import format_decimal

from kernel.catalogues import SUPPORTED, compile_po
from kernel.money import format_amount

__all__ = ["ENGLISH", "N_", "SUPPORTED", "Words"]

LOCALE_DIR = Path(__file__).parent / "locale"
TRANSLATIONS: dict[str, gettext.NullTranslations] = {
    lang: compile_po(LOCALE_DIR / lang / "LC_MESSAGES" / "billing.po", lang) for lang in SUPPORTED
}


def N_(message: str) -> str:
    """gettext's marker: extracted into billing's catalogues, translated when an export is written."""
    return message


@dataclass(frozen=True)
class Words:
    """How one export writes: `lang` for its words; `human` for money, numbers and dates written for people
    in that language (the PDF of layout 3 on) rather than for machines (plain decimals, ISO dates: the CSV,
    and every export of layouts 1 and 2)."""

    lang: str = "en"
    human: bool = False

    def _(self, message: str) -> str:
        return TRANSLATIONS.get(self.lang, TRANSLATIONS["en"]).gettext(message)

    def amount(self, minor: int, currency: str) -> str:
        """The amount alone: "1234.50" (machine), "1.234,50" (de), "1 234,50" (fr, pl)."""
        text = format_amount(minor, currency)
        if not self.human:
            return text
        _, _, frac = text.partition(".")
        pattern = "#,##0" + ("." + "0" * len(frac) if frac else "")
        return format_decimal(Decimal(text), format=pattern, locale=self.lang, decimal_quantization=True)

    def money(self, minor: int, currency: str) -> str:
        """The amount and its currency's ISO code after it, in every language: "1.234,50 EUR"."""
        return f"{self.amount(minor, currency)} {currency}"

    def number(self, value: int | Decimal) -> str:
        return format_decimal(value, locale=self.lang) if self.human else str(value)

    def day(self, day: dt.date) -> str:
        """ "2026-12-01" (machine); "Dec 1, 2026", "01.12.2026", "1 déc. 2026", "1 gru 2026" (human)."""
        return format_date(day, "medium", locale=self.lang) if self.human else day.isoformat()


ENGLISH = Words()  # layouts 1 and 2, and every CSV's machine columns
