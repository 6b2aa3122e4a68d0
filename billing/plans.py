"""Offers' fee plans read from PostgreSQL: every offer's terms (kernel/plans.py), with partner overrides and prices."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

import asyncpg
import orjson

from kernel.fees import FeeError, PriceVersion
from kernel.plans import OfferTerms, build_plan


def _json(value: Any) -> dict[str, Any]:
    return orjson.loads(value) if isinstance(value, str | bytes) else dict(value or {})


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
