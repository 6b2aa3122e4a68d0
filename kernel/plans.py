"""Fee plans as stored (offer JSON, partner overrides, price versions) turned into kernel.fees plans.

Stored form of `offers.fee_plan` (every key optional; amounts in minor units of the offer currency):
    {"cpm": 150, "cpv": 1, "cpc": 20, "cpa": {"signup": 250, "lead": 100}, "cps_percent": "7.5",
     "tiers": [{"percent": "10", "min_sales": 100}, {"percent": "12", "min_amount": 1000000}], "markup": true}
A partner override (`offer_partner_plans.fee_plan`) has the same keys and replaces those it sets.
Pure: billing's loader (billing/plans.py) reads them from PostgreSQL; the tracker's payout caps use the same rules.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from kernel.fees import FeeError, FeeEvent, FeePlan, PlanOverride, PriceVersion, Tier, effective_plan, estimate


@dataclass(frozen=True)
class OfferTerms:
    """What billing needs to know about an offer."""

    id: int
    merchant_id: int
    currency: str
    hold: dt.timedelta
    plan: FeePlan
    overrides: dict[int, FeePlan]  # partner id -> effective plan
    has_tiers: bool
    repeat_actions: bool = False  # every repeat of an action without order id counts (else one per click and name)

    def plan_for(self, partner_id: int) -> FeePlan:
        return self.overrides.get(partner_id, self.plan)


def _percent(value: Any, name: str) -> Decimal:
    # A JSON number would arrive as a float: refused, so no binary fraction ever reaches a rate.
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise FeeError("invalid_plan", f'{name} must be a decimal number as a string, e.g. "7.5"')
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise FeeError("invalid_plan", f'{name} must be a decimal number as a string, e.g. "7.5"') from None


def _minor(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise FeeError("invalid_plan", f"{name} must be a whole number of minor units")
    return value


def _tiers(raw: Any) -> tuple[Tier, ...] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise FeeError("invalid_plan", "tiers must be a list")
    return tuple(
        Tier(
            _percent(t.get("percent"), "tier percent"),
            _minor(t.get("min_sales"), "min_sales"),
            _minor(t.get("min_amount"), "min_amount"),
        )
        for t in raw
    )


def _override(
    raw: dict[str, Any], wholesale: dict[str, tuple[PriceVersion, ...]], retail: dict[str, tuple[PriceVersion, ...]]
) -> PlanOverride:
    cpa = raw.get("cpa") or {}
    if not isinstance(cpa, dict):
        raise FeeError("invalid_plan", "cpa must map action names to amounts")
    return PlanOverride(
        cpm_minor=_minor(raw.get("cpm"), "cpm"),
        cpv_minor=_minor(raw.get("cpv"), "cpv"),
        cpc_minor=_minor(raw.get("cpc"), "cpc"),
        cpa_minor={str(k): _minor(v, f"cpa.{k}") or 0 for k, v in cpa.items()},
        cps_percent=_percent(raw["cps_percent"], "cps_percent") if raw.get("cps_percent") is not None else None,
        cps_tiers=_tiers(raw.get("tiers")),
        wholesale=wholesale if raw.get("markup") else {},
        retail=retail,
    )


def build_plan(
    currency: str,
    rounding: str,
    raw: dict[str, Any],
    wholesale: dict[str, tuple[PriceVersion, ...]] | None = None,
    retail: dict[str, tuple[PriceVersion, ...]] | None = None,
) -> FeePlan:
    """The offer's FeePlan from its stored JSON (and its price versions when it is a markup offer)."""
    return effective_plan(FeePlan(currency=currency, rounding=rounding), _override(raw, wholesale or {}, retail or {}))


def payout_estimate(fee_plan: Mapping[str, Any], event: Mapping[str, Any], currency: str = "USD") -> int:
    """The commission a conversion will earn, in minor units, for payout caps: billing's rules (kernel.fees)
    applied to the offer's stored plan, rounded down so a cap is never tripped by a fraction of a minor unit.

    `currency` is the offer's (the plan's amounts are in its minor units). What the tracker cannot know is
    left out: markup (price versions live in PostgreSQL) and the period's sales for tiers (the base tier is
    used). A malformed plan or event estimates 0: the conversion is still recorded, and billing refuses it.
    """
    kind = event.get("type")
    if kind not in ("action", "purchase"):
        return 0
    try:
        plan = build_plan(currency, "half_even", dict(fee_plan))
        amount = event.get("amount")
        fee_event = FeeEvent(
            kind=kind,
            currency=event.get("currency") or currency,
            action=str(event.get("action") or ""),
            amount_minor=amount if isinstance(amount, int) and not isinstance(amount, bool) else 0,
        )
    except (FeeError, ValueError, TypeError):
        return 0
    return max(estimate(plan, fee_event), 0)
