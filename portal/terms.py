"""Offer terms in plain language, from the fee plan and caps (pure): what a partner reads on an offer card,
e.g. "8 % of each sale + 0.05 USD per click, paid after a 14-day hold, daily cap 200 clicks"."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from babel.numbers import format_decimal, get_decimal_symbol

from portal.formats import money
from portal.i18n import CURRENT, N_, gettext_, ngettext_

# Written in the page's language (portal/i18n.py); each phrase is one catalogue string.
_CAPS = {
    ("", "daily"): N_("daily cap %(amount)s"),
    ("", "lifetime"): N_("lifetime cap %(amount)s"),
    ("your ", "daily"): N_("your daily cap %(amount)s"),
    ("your ", "lifetime"): N_("your lifetime cap %(amount)s"),
}


def _pct(value: str) -> str:
    text = str(value)
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return f"{text.replace('.', get_decimal_symbol(CURRENT.get()))} %"


def _count(limit: int, metric: str) -> str:
    number = format_decimal(limit, locale=CURRENT.get())
    if metric == "clicks":
        return ngettext_("%(num)s click", "%(num)s clicks", limit) % {"num": number}
    return ngettext_("%(num)s conversion", "%(num)s conversions", limit) % {"num": number}


def earnings(plan: Mapping[str, Any], currency: str) -> list[str]:
    """One phrase per paying model, in the order a partner cares about (sales first)."""
    parts: list[str] = []
    if plan.get("markup"):
        parts.append(gettext_("your retail price minus the wholesale price on each unit sold"))
    if plan.get("cps_percent") is not None:
        parts.append(gettext_("%(percent)s of each sale") % {"percent": _pct(plan["cps_percent"])})
    for tier in plan.get("tiers") or []:
        if "min_sales" in tier:
            said = gettext_("%(percent)s once you pass %(count)s sales in a month")
            parts.append(said % {"percent": _pct(tier["percent"]), "count": tier["min_sales"]})
        else:
            said = gettext_("%(percent)s once your sales reach %(amount)s in a month")
            parts.append(said % {"percent": _pct(tier["percent"]), "amount": money(tier["min_amount"], currency)})
    for action, amount in sorted((plan.get("cpa") or {}).items()):
        parts.append(gettext_("%(amount)s per %(action)s") % {"amount": money(amount, currency), "action": action})
    if plan.get("cpc") is not None:
        parts.append(gettext_("%(amount)s per click") % {"amount": money(plan["cpc"], currency)})
    if plan.get("cpv") is not None:
        parts.append(gettext_("%(amount)s per view") % {"amount": money(plan["cpv"], currency)})
    if plan.get("cpm") is not None:
        parts.append(gettext_("%(amount)s per 1,000 views") % {"amount": money(plan["cpm"], currency)})
    return parts


def caps(limits: Mapping[str, Any], currency: str) -> list[str]:
    """One phrase per cap: "daily cap 200 clicks", "your lifetime cap 5 conversions"."""
    out: list[str] = []
    for scope, table in (("", limits), ("your ", limits.get("per_partner") or {})):
        for metric in ("clicks", "conversions", "payout"):
            for period, limit in sorted((table.get(metric) or {}).items()):
                amount = money(limit, currency) if metric == "payout" else _count(limit, metric)
                said = _CAPS.get((scope, period))
                out.append(gettext_(said) % {"amount": amount} if said else f"{scope}{period} cap {amount}")
    return out


def describe(plan: Mapping[str, Any], currency: str, hold_days: int, limits: Mapping[str, Any] | None = None) -> str:
    """The whole offer in one sentence."""
    parts = earnings(plan, currency)
    text = " + ".join(parts) if parts else gettext_("no commission set yet")
    if hold_days:
        text += ", " + ngettext_("paid after a %(num)d-day hold", "paid after a %(num)d-day hold", hold_days) % {
            "num": hold_days
        }
    else:
        text += ", " + gettext_("approved without a hold")
    for cap in caps(limits or {}, currency):
        text += f", {cap}"
    return text


def limits_of(usage: list[dict[str, Any]] | None) -> dict[str, Any]:
    """Caps back in the schema's shape from the rows a partner sees (offer-wide and its own, with usage)."""
    out: dict[str, Any] = {}
    for row in usage or []:
        table = out.setdefault("per_partner", {}) if row["scope"] == "partner" else out
        table.setdefault(row["metric"], {})[row["period"]] = row["limit"]
    return out
