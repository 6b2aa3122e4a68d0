"""How the pages write money, rates and periods for people: "1,965.00 USD", "3.1 %", "1-31 Dec 2026"."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from kernel.money import format_amount


def _group(whole: str) -> str:
    out = []
    while len(whole) > 3:
        out.append(whole[-3:])
        whole = whole[:-3]
    return ",".join([whole, *reversed(out)])


def money(value: int | str | None, currency: str | None) -> str:
    """Minor units (int) or a decimal string as the amount with thousands separators and its currency:
    196500 USD -> "1,965.00 USD", "-0.05" USD -> "-0.05 USD", 1470 JPY -> "1,470 JPY"; None -> "—"."""
    if value is None or currency is None:
        return "—"
    if isinstance(value, bool):
        raise TypeError("money is never a bool")
    text = format_amount(value, currency) if isinstance(value, int) else str(value)
    sign = "-" if text.startswith("-") else ""
    whole, _, frac = text.lstrip("-+").partition(".")
    return f"{sign}{_group(whole)}{'.' + frac if frac else ''} {currency}"


def percent(numerator: int, denominator: int, places: int = 1) -> str:
    """A share as a percentage with its sign of meaning: 31 of 1000 -> "3.1 %"; nothing to divide -> "—"."""
    if denominator <= 0:
        return "—"
    share = (Decimal(numerator) * 100 / Decimal(denominator)).quantize(Decimal(1).scaleb(-places))
    return f"{share} %"


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
        return "new"
    share = (Decimal(current - previous) * 100 / Decimal(abs(previous))).quantize(Decimal(1))
    return f"{'▲' if share > 0 else '▼'} {abs(share)} %"


DASH = "\u2013"  # an en dash, as ranges are written
_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def period(start: dt.date | str, end: dt.date | str, inclusive: bool = False) -> str:
    """A period as people say it. `end` is exclusive unless `inclusive`: 2026-12-01..2027-01-01 -> "December 2026";
    2026-12-01..2026-12-08 -> "1-7 Dec 2026"; across months "28 Nov - 4 Dec 2026" (en dashes)."""
    first = dt.date.fromisoformat(str(start)[:10])
    last = dt.date.fromisoformat(str(end)[:10])
    if not inclusive:
        last -= dt.timedelta(days=1)
    if last < first:
        return f"{first.day} {_MONTHS[first.month - 1]} {first.year}"
    next_day = last + dt.timedelta(days=1)
    if first.day == 1 and next_day.day == 1 and (last.year, last.month) == (first.year, first.month):
        return first.strftime("%B %Y")
    if first == last:
        return f"{first.day} {_MONTHS[first.month - 1]} {first.year}"
    if (first.year, first.month) == (last.year, last.month):
        return f"{first.day}{DASH}{last.day} {_MONTHS[first.month - 1]} {first.year}"
    if first.year == last.year:
        return f"{first.day} {_MONTHS[first.month - 1]} {DASH} {last.day} {_MONTHS[last.month - 1]} {last.year}"
    head = f"{first.day} {_MONTHS[first.month - 1]} {first.year}"
    return f"{head} {DASH} {last.day} {_MONTHS[last.month - 1]} {last.year}"
