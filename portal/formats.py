"""How the pages write money, rates and periods for people: "1,965.00 USD", "3.1 %", "1-31 Dec 2026".

Written for the page's locale (portal.i18n.CURRENT, English unless set) with Babel's CLDR data:
German "1.965,00 USD", French "1 965,00 USD". Money stays integer minor units; this is display only."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from babel.dates import format_date, format_interval, format_skeleton
from babel.numbers import format_decimal

from kernel.money import format_amount
from portal import i18n


def _locale(locale: str | None) -> str:
    return locale or i18n.CURRENT.get()


def _number(text: str, locale: str) -> str:
    """An exact decimal string ("-1965.00") grouped and pointed for the locale, every written digit kept."""
    _, _, frac = text.partition(".")
    pattern = "#,##0" + ("." + "0" * len(frac) if frac else "")
    return format_decimal(Decimal(text), format=pattern, locale=locale, decimal_quantization=True)


def money(value: int | str | None, currency: str | None, locale: str | None = None) -> str:
    """Minor units (int) or a decimal string as the amount with thousands separators and its currency:
    196500 USD -> "1,965.00 USD", "-0.05" USD -> "-0.05 USD", 1470 JPY -> "1,470 JPY"; None -> "—"."""
    if value is None or currency is None:
        return "—"
    if isinstance(value, bool):
        raise TypeError("money is never a bool")
    text = format_amount(value, currency) if isinstance(value, int) else str(value)
    return f"{_number(text.lstrip('+'), _locale(locale))} {currency}"


def number(value: int, locale: str | None = None) -> str:
    """A count grouped for the locale: 12345 -> "12,345" (en), "12.345" (de), "12 345" (fr)."""
    return format_decimal(value, locale=_locale(locale))


def percent(numerator: int, denominator: int, places: int = 1, locale: str | None = None) -> str:
    """A share as a percentage with its sign of meaning: 31 of 1000 -> "3.1 %"; nothing to divide -> "—"."""
    if denominator <= 0:
        return "—"
    share = (Decimal(numerator) * 100 / Decimal(denominator)).quantize(Decimal(1).scaleb(-places))
    return f"{_number(str(share), _locale(locale))} %"


def ratio_money(minor: int, count: int, currency: str) -> str:
    """An amount per unit (EPC, average order value) rounded half-even to the currency's minor unit."""
    if count <= 0:
        return "—"
    from kernel.money import round_minor

    return money(round_minor(Decimal(minor) / Decimal(count)), currency)


def change(current: int, previous: int) -> str:
    """The change against the previous period as people read it: "▲ 12 %", "▼ 3 %", "=", or "new"."""
    if current == previous:
        return "="
    if previous == 0:
        return i18n.gettext_("new")
    share = (Decimal(current - previous) * 100 / Decimal(abs(previous))).quantize(Decimal(1))
    return f"{'▲' if share > 0 else '▼'} {abs(share)} %"


DASH = "\u2013"  # an en dash, as ranges are written


def _day(day: dt.date, locale: str) -> str:
    return (
        format_date(day, "d MMM y", locale=locale) if locale == "en" else format_skeleton("yMMMd", day, locale=locale)
    )


def day(value: dt.date | dt.datetime | str, locale: str | None = None) -> str:
    """One day as people write it: "7 Dec 2026" (en), "7. Dez. 2026" (de), "7 gru 2026" (pl)."""
    return _day(dt.date.fromisoformat(str(value)[:10]), _locale(locale))


def period(start: dt.date | str, end: dt.date | str, inclusive: bool = False, locale: str | None = None) -> str:
    """A period as people say it. `end` is exclusive unless `inclusive`: 2026-12-01..2027-01-01 -> "December 2026";
    2026-12-01..2026-12-08 -> "1-7 Dec 2026"; across months "28 Nov - 4 Dec 2026" (en dashes). Month names
    are the locale's (CLDR, via Babel)."""
    lang = _locale(locale)
    first = dt.date.fromisoformat(str(start)[:10])
    last = dt.date.fromisoformat(str(end)[:10])
    if not inclusive:
        last -= dt.timedelta(days=1)
    if last < first or first == last:
        return _day(first, lang)
    next_day = last + dt.timedelta(days=1)
    if first.day == 1 and next_day.day == 1 and (last.year, last.month) == (first.year, first.month):
        return format_skeleton("yMMMM", first, locale=lang)
    if lang != "en":  # CLDR's interval patterns say a range the way each language does
        return format_interval(first, last, "yMMMd", locale=lang)
    if (first.year, first.month) == (last.year, last.month):
        return f"{first.day}{DASH}{_day(last, lang)}"
    if first.year == last.year:
        return f"{format_date(first, 'd MMM', locale=lang)} {DASH} {_day(last, lang)}"
    return f"{_day(first, lang)} {DASH} {_day(last, lang)}"
