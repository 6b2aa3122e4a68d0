"""The marketplace of open programmes a partner can apply to: merchants with public offers, their terms in
plain language, and where the partner stands with each (not joined, applied, approved, rejected, suspended)."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson

from portal import terms


async def marketplace(conn: asyncpg.Connection, partner_id: int) -> list[dict[str, Any]]:
    """Every merchant listed in the marketplace (merchants.listed, off unless its operator turns it on) with at
    least one active public offer; those offers' terms (the offer's own plan: an override is only known once in)."""
    rows = await conn.fetch(
        """SELECT m.id, m.slug, m.name, m.branding, pp.status,
                  o.id AS offer_id, o.name AS offer, o.currency, o.fee_plan, o.caps, o.hold_days
           FROM merchants m
           JOIN offers o ON o.merchant_id = m.id AND o.status = 'active' AND o.visibility = 'public'
                        AND (o.ends_at IS NULL OR o.ends_at > now())
           LEFT JOIN partner_programmes pp ON pp.merchant_id = m.id AND pp.partner_id = $1
           WHERE m.listed
           ORDER BY m.name, m.id, o.id""",
        partner_id,
    )
    found: dict[int, dict[str, Any]] = {}
    for r in rows:
        brand = orjson.loads(r["branding"]) if r["branding"] else {}
        item = found.setdefault(
            r["id"],
            {
                "slug": r["slug"],
                "name": r["name"],
                "tagline": brand.get("tagline", ""),
                "status": r["status"],
                "offers": [],
            },
        )
        plan = orjson.loads(r["fee_plan"]) if isinstance(r["fee_plan"], str | bytes) else r["fee_plan"]
        caps = orjson.loads(r["caps"]) if isinstance(r["caps"], str | bytes) else r["caps"]
        item["offers"].append({"name": r["offer"], "terms": terms.describe(plan, r["currency"], r["hold_days"], caps)})
    return list(found.values())
