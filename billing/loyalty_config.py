"""Loyalty configuration: a merchant's programme saved from the command line or the operator API, checked
by the pure core first (billing/loyalty_rules.py), so a refused change writes nothing."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson

from billing import loyalty_referral
from kernel.loyalty_rules import LoyaltyError, Programme, programme

FIELDS = ("enabled", "value_points", "value_minor", "expiry_days", "refund_policy", "rules", "tiers",
          "redeem_min_points", "redeem_max_percent", "referral")  # fmt: skip


def _json(raw: Any) -> dict[str, Any]:
    value = orjson.loads(raw) if isinstance(raw, str | bytes) else (raw or {})
    if not isinstance(value, dict):
        raise LoyaltyError("invalid_field", "rules and tiers are JSON objects")
    return value


async def save_programme(conn: asyncpg.Connection, merchant_id: int, changes: dict[str, Any]) -> Programme:
    """Create or change the programme: fields not in `changes` keep their value (or the default). The currency
    is the merchant's. Returns the programme as saved."""
    current = await conn.fetchrow("SELECT * FROM loyalty_programmes WHERE merchant_id = $1", merchant_id)
    currency = await conn.fetchval("SELECT currency FROM merchants WHERE id = $1", merchant_id)
    if currency is None:
        raise LoyaltyError("not_found", "no such merchant", 404)
    values: dict[str, Any] = dict(current) if current else {"merchant_id": merchant_id, "currency": currency}
    values.update({k: v for k, v in changes.items() if k in FIELDS})
    if values.get("expiry_days") == 0:
        values["expiry_days"] = None
    values["rules"], values["tiers"] = _json(values.get("rules")), _json(values.get("tiers"))
    values["referral"] = _json(values.get("referral"))
    loyalty_referral.settings(values)  # raises LoyaltyError naming the field
    if values["referral"] and not await conn.fetchval(
        "SELECT 1 FROM offers WHERE id = $1 AND merchant_id = $2", values["referral"]["offer_id"], merchant_id
    ):
        raise LoyaltyError("invalid_field", "referral.offer_id must be one of this merchant's offers")
    prog = programme(values)  # raises LoyaltyError naming the field
    if not 1 <= prog.value_points <= 10**9 or not 0 <= prog.value_minor <= 10**9:
        raise LoyaltyError("invalid_field", "value_points must be 1 to 10^9, value_minor 0 to 10^9")
    if prog.expiry_days is not None and not 1 <= prog.expiry_days <= 3650:
        raise LoyaltyError("invalid_field", "expiry_days must be 1 to 3650 (0 or none: never)")
    if not 1 <= prog.redeem_max_percent <= 100 or prog.redeem_min_points < 0:
        raise LoyaltyError("invalid_field", "redeem_max_percent must be 1 to 100, redeem_min_points 0 or more")
    await conn.execute(
        """INSERT INTO loyalty_programmes (merchant_id, enabled, currency, value_points, value_minor, expiry_days,
                                           refund_policy, rules, tiers, redeem_min_points, redeem_max_percent,
                                           referral)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
           ON CONFLICT (merchant_id) DO UPDATE SET enabled = $2, value_points = $4, value_minor = $5,
               expiry_days = $6, refund_policy = $7, rules = $8, tiers = $9, redeem_min_points = $10,
               redeem_max_percent = $11, referral = $12, updated_at = now()""",
        merchant_id,
        prog.enabled,
        prog.currency,
        prog.value_points,
        prog.value_minor,
        prog.expiry_days,
        prog.refund_policy,
        orjson.dumps(values["rules"]).decode(),
        orjson.dumps(values["tiers"]).decode(),
        prog.redeem_min_points,
        prog.redeem_max_percent,
        orjson.dumps(values["referral"]).decode(),
    )
    return prog


def describe(prog: Programme) -> dict[str, Any]:
    """The programme as the API shows it."""
    return {
        "merchant_id": prog.merchant_id,
        "enabled": prog.enabled,
        "currency": prog.currency,
        "value_points": prog.value_points,
        "value_minor": prog.value_minor,
        "expiry_days": prog.expiry_days,
        "refund_policy": prog.refund_policy,
        "redeem_min_points": prog.redeem_min_points,
        "redeem_max_percent": prog.redeem_max_percent,
        "tiers": [{"name": t.name, "min": t.min, "multiplier": str(t.multiplier)} for t in prog.tiers.levels],
        "tier_basis": prog.tiers.basis,
    }


async def describe_row(conn: asyncpg.Connection, prog: Programme) -> dict[str, Any]:
    """describe(), with the referral settings from the row."""
    raw = await conn.fetchval("SELECT referral FROM loyalty_programmes WHERE merchant_id = $1", prog.merchant_id)
    return describe(prog) | {"referral": orjson.loads(raw) if raw else {}}
