"""Offer terms in plain language, from the fee plan and caps (pure): what a partner reads on an offer card,
e.g. "8 % of each sale + 0.05 USD per click, paid after a 14-day hold, daily cap 200 clicks"."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from portal.formats import money

_PERIODS = {"daily": "daily", "lifetime": "lifetime"}


def _pct(value: str) -> str:
    text = str(value)
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return f"{text} %"


def earnings(plan: Mapping[str, Any], currency: str) -> list[str]:
    """One phrase per paying model, in the order a partner cares about (sales first)."""
    parts: list[str] = []
    if plan.get("markup"):
        parts.append("your retail price minus the wholesale price on each unit sold")
    if plan.get("cps_percent") is not None:
        parts.append(f"{_pct(plan['cps_percent'])} of each sale")
    for tier in plan.get("tiers") or []:
        if "min_sales" in tier:
            parts.append(f"{_pct(tier['percent'])} once you pass {tier['min_sales']} sales in a month")
        else:
            parts.append(
                f"{_pct(tier['percent'])} once your sales reach {money(tier['min_amount'], currency)} in a month"
            )
    for action, amount in sorted((plan.get("cpa") or {}).items()):
        parts.append(f"{money(amount, currency)} per {action}")
    if plan.get("cpc") is not None:
        parts.append(f"{money(plan['cpc'], currency)} per click")
    if plan.get("cpv") is not None:
        parts.append(f"{money(plan['cpv'], currency)} per view")
    if plan.get("cpm") is not None:
        parts.append(f"{money(plan['cpm'], currency)} per 1,000 views")
    return parts


def caps(limits: Mapping[str, Any], currency: str) -> list[str]:
    """One phrase per cap: "daily cap 200 clicks", "your lifetime cap 5 conversions"."""
    out: list[str] = []
    for scope, table in (("", limits), ("your ", limits.get("per_partner") or {})):
        for metric in ("clicks", "conversions", "payout"):
            for period, limit in sorted((table.get(metric) or {}).items()):
                amount = money(limit, currency) if metric == "payout" else f"{limit:,} {metric}"
                out.append(f"{scope}{_PERIODS.get(period, period)} cap {amount}")
    return out


def describe(plan: Mapping[str, Any], currency: str, hold_days: int, limits: Mapping[str, Any] | None = None) -> str:
    """The whole offer in one sentence."""
    parts = earnings(plan, currency)
    text = " + ".join(parts) if parts else "no commission set yet"
    text += f", paid after a {hold_days}-day hold" if hold_days else ", approved without a hold"
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
