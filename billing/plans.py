"""Fee plans as stored (offer JSON, partner overrides, price versions) turned into kernel.fees plans.

Stored form of `offers.fee_plan` (every key optional; amounts in minor units of the offer currency):
    {"cpm": 150, "cpv": 1, "cpc": 20, "cpa": {"signup": 250, "lead": 100}, "cps_percent": "7.5",
     "tiers": [{"percent": "10", "min_sales": 100}, {"percent": "12", "min_amount": 1000000}], "markup": true}
A partner override (`offer_partner_plans.fee_plan`) has the same keys and replaces those it sets.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import asyncpg
import orjson

from kernel.fees import FeeError, FeePlan, PlanOverride, PriceVersion, Tier, effective_plan


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


def _json(value: Any) -> dict[str, Any]:
    return orjson.loads(value) if isinstance(value, str | bytes) else dict(value or {})  # type: ignore[no-any-return]


async def load_terms(conn: asyncpg.Connection, offer_ids: list[int] | None = None) -> dict[int, OfferTerms]:
    """Every offer's terms (or those of `offer_ids`), with partner overrides and price versions; a malformed
    plan is skipped and logged."""
    offers = await conn.fetch(
        """SELECT o.id, o.merchant_id, o.currency, o.hold_days, o.fee_plan, o.repeat_actions, m.rounding
           FROM offers o JOIN merchants m ON m.id = o.merchant_id
           WHERE $1::bigint[] IS NULL OR o.id = ANY($1::bigint[])""",
        offer_ids,
    )
    overrides = await conn.fetch(
        """SELECT offer_id, partner_id, fee_plan FROM offer_partner_plans
           WHERE $1::bigint[] IS NULL OR offer_id = ANY($1::bigint[])""",
        offer_ids,
    )
    prices = await conn.fetch(
        """SELECT merchant_id, sku, kind, partner_id, amount_minor, valid_from FROM prices
           WHERE $1::bigint[] IS NULL OR merchant_id = ANY($1::bigint[]) ORDER BY valid_from, id""",
        None if offer_ids is None else sorted({r["merchant_id"] for r in offers}),
    )
    wholesale: dict[int, dict[str, list[PriceVersion]]] = defaultdict(lambda: defaultdict(list))
    retail: dict[tuple[int, int], dict[str, list[PriceVersion]]] = defaultdict(lambda: defaultdict(list))
    for row in prices:
        version = PriceVersion(row["valid_from"], row["amount_minor"])
        if row["kind"] == "wholesale":
            wholesale[row["merchant_id"]][row["sku"]].append(version)
        else:
            retail[row["merchant_id"], row["partner_id"]][row["sku"]].append(version)
    by_offer: dict[int, list[asyncpg.Record]] = defaultdict(list)
    for row in overrides:
        by_offer[row["offer_id"]].append(row)
    terms: dict[int, OfferTerms] = {}
    for row in offers:
        raw = _json(row["fee_plan"])
        frozen_wholesale = {sku: tuple(v) for sku, v in wholesale[row["merchant_id"]].items()}
        try:
            plan = build_plan(row["currency"], row["rounding"], raw, frozen_wholesale)
            partner_plans = {}
            partner_ids = {o["partner_id"] for o in by_offer[row["id"]]} | {
                p for (m, p) in retail if m == row["merchant_id"]
            }
            for partner_id in partner_ids:
                override_raw = next(
                    (_json(o["fee_plan"]) for o in by_offer[row["id"]] if o["partner_id"] == partner_id), {}
                )
                partner_retail = {sku: tuple(v) for sku, v in retail.get((row["merchant_id"], partner_id), {}).items()}
                merged = {**raw, **override_raw}
                partner_plans[partner_id] = build_plan(
                    row["currency"], row["rounding"], merged, frozen_wholesale, partner_retail
                )
        except FeeError:
            continue  # a malformed plan pays nothing rather than something wrong; the portal validates on save
        terms[row["id"]] = OfferTerms(
            id=row["id"],
            merchant_id=row["merchant_id"],
            currency=row["currency"],
            hold=dt.timedelta(days=row["hold_days"]),
            plan=plan,
            overrides=partner_plans,
            has_tiers=bool(plan.cps_tiers) or any(p.cps_tiers for p in partner_plans.values()),
            repeat_actions=row["repeat_actions"],
        )
    return terms
