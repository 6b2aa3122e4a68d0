"""Loyalty for operators and partners, on the portal's endpoint registry (auth, roles, tenancy, OpenAPI).

Operators: the programme (read, change), member search, manual adjustments with a reason (audited, under
the operator's name), the liability report. Partners: how many of the customers they brought are members,
by tier; counts only, never a customer id.
"""

from __future__ import annotations

from typing import Any

import orjson

from billing.public import loyalty_config, loyalty_ledger
from kernel.loyalty_rules import REFUND_POLICIES, LoyaltyError
from portal import validate
from portal.api import Ctx, Endpoint
from portal.errors import ApiError
from portal.operator_data import scope_merchant

_MERCHANT = (validate.ref("merchant"), False)
_MERCHANT_QUERY = {"merchant_id": {"type": "integer", "minimum": 1, "description": "network operators: which"}}
PROGRAMME = {
    "merchant_id": _MERCHANT,
    "enabled": (validate.boolean, False),
    "value_points": (validate.integer(1, 10**9), False),
    "value_minor": (validate.integer(0, 10**9), False),
    "expiry_days": (validate.integer(0, 3650), False),
    "refund_policy": (validate.choice(*REFUND_POLICIES), False),
    "rules": (validate.json_object, False),
    "tiers": (validate.json_object, False),
    "redeem_min_points": (validate.integer(0, 10**12), False),
    "redeem_max_percent": (validate.integer(1, 100), False),
    "referral": (validate.json_object, False),
}
ADJUSTMENT = {
    "merchant_id": _MERCHANT,
    "customer": (validate.text(1, 255), True),
    "points": (validate.integer(-(10**9), 10**9), True),
    "reason": (validate.text(1, 500), True),
}


def _refused(exc: LoyaltyError) -> ApiError:
    return ApiError(exc.status, exc.code, exc.detail)


def _merchant(ctx: Ctx) -> int:
    return scope_merchant(ctx.who, ctx.query("merchant_id", validate.integer(1), None))


async def programme(ctx: Ctx) -> Any:
    merchant_id = _merchant(ctx)
    found = await loyalty_ledger.load_programmes(ctx.conn, enabled_only=False)
    if merchant_id not in found:
        return {"merchant_id": merchant_id, "enabled": False, "configured": False}
    return await loyalty_config.describe_row(ctx.conn, found[merchant_id]) | {"configured": True}


async def save(ctx: Ctx) -> Any:
    values = await ctx.body(PROGRAMME)
    merchant_id = scope_merchant(ctx.who, values.pop("merchant_id", None))
    try:
        async with ctx.conn.transaction():
            prog = await loyalty_config.save_programme(ctx.conn, merchant_id, values)
            await ctx.conn.execute(
                """INSERT INTO audit_log (actor_user_id, actor_email, merchant_id, action, object_type, object_id,
                                          detail)
                   VALUES ($1, $2, $3::bigint, 'loyalty.programme', 'loyalty_programme', $3::bigint::text, $4)""",
                ctx.who.user_id or None,
                ctx.who.email,
                merchant_id,
                orjson.dumps(values, default=str).decode(),
            )
    except LoyaltyError as exc:
        raise _refused(exc) from exc
    return await loyalty_config.describe_row(ctx.conn, prog) | {"configured": True}


async def members(ctx: Ctx) -> Any:
    merchant_id = _merchant(ctx)
    q = ctx.query("q", validate.text(0, 255), "")
    limit = ctx.query("limit", validate.integer(1, 500), 50)
    rows = await ctx.conn.fetch(
        """SELECT customer_ref AS customer, balance, debt, tier, enrolled_at,
                  (SELECT coalesce(sum(points - cancelled), 0) FROM loyalty_lots l WHERE l.merchant_id = m.merchant_id
                     AND l.customer_ref = m.customer_ref AND l.status = 'pending')::bigint AS pending
           FROM loyalty_members m
           WHERE merchant_id = $1
             AND ($2 = '' OR strpos(lower(customer_ref), lower($2)) > 0)
           ORDER BY customer_ref LIMIT $3""",
        merchant_id,
        q,
        limit,
    )
    return {"members": [dict(r) for r in rows]}


async def adjust(ctx: Ctx) -> Any:
    values = await ctx.body(ADJUSTMENT)
    merchant_id = scope_merchant(ctx.who, values.pop("merchant_id", None))
    try:
        prog = await loyalty_ledger.programme_of(ctx.conn, merchant_id)
        balance = await loyalty_ledger.adjust(
            ctx.conn,
            prog,
            values["customer"],
            values["points"],
            values["reason"],
            ctx.who.email,
            ctx.who.user_id or None,
        )
    except LoyaltyError as exc:
        raise _refused(exc) from exc
    return {"customer": values["customer"], "points": values["points"], "balance": balance}


async def liability(ctx: Ctx) -> Any:
    merchant_id = _merchant(ctx)
    try:
        prog = await loyalty_ledger.programme_of(ctx.conn, merchant_id)
    except LoyaltyError as exc:
        raise _refused(exc) from exc
    rows = await loyalty_ledger.liability(ctx.conn, prog)
    pending = await ctx.conn.fetchval(
        """SELECT coalesce(sum(points - cancelled), 0)::bigint FROM loyalty_lots
           WHERE merchant_id = $1 AND status = 'pending'""",
        merchant_id,
    )
    total = sum(r["points"] for r in rows)
    return {
        "currency": prog.currency,
        "by_month_of_expiry": rows,
        "total_points": total,
        "total_value_minor": prog.discount_minor(total),
        "pending_points": pending,
    }


async def partner_members(ctx: Ctx) -> Any:
    rows = await ctx.conn.fetch(
        """SELECT c.merchant_id, mc.name AS merchant, count(DISTINCT c.customer_ref) AS customers,
                  count(m.customer_ref) AS members, coalesce(m.tier, '') AS tier
           FROM customers c JOIN merchants mc ON mc.id = c.merchant_id
           LEFT JOIN loyalty_members m ON m.merchant_id = c.merchant_id AND m.customer_ref = c.customer_ref
           WHERE c.partner_id = $1
           GROUP BY c.merchant_id, mc.name, coalesce(m.tier, '') ORDER BY c.merchant_id, tier""",
        ctx.partner_id,
    )
    found: dict[int, dict[str, Any]] = {}
    for r in rows:
        blank = {
            "merchant_id": r["merchant_id"],
            "merchant": r["merchant"],
            "customers": 0,
            "members": 0,
            "by_tier": {},
        }
        entry = found.setdefault(r["merchant_id"], blank)
        entry["customers"] += r["customers"]
        entry["members"] += r["members"]
        if r["members"]:
            entry["by_tier"][r["tier"] or "none"] = r["members"]
    return {"merchants": list(found.values())}


def _o(method: str, path: str, handler: Any, summary: str, **kw: Any) -> Endpoint:
    return Endpoint(method, "/api/v1/admin/loyalty" + path, handler, "operator", summary, tag="loyalty", **kw)


_SEARCH = _MERCHANT_QUERY | {
    "q": {"type": "string", "maxLength": 255},
    "limit": {"type": "integer", "minimum": 1, "maximum": 500},
}
ENDPOINTS = [
    _o("GET", "/programme", programme, "The merchant's loyalty programme", query=_MERCHANT_QUERY),
    _o(
        "PUT",
        "/programme",
        save,
        "Create or change the programme (fields left out keep their value; expiry_days 0: never; rules and tiers: "
        "see docs/loyalty.md)",
        body=PROGRAMME,
    ),
    _o("GET", "/members", members, "Search members by customer id (q: a part of it)", query=_SEARCH),
    _o(
        "POST",
        "/adjustments",
        adjust,
        "Add (or, negative, take) points by hand, with a reason; audited",
        body=ADJUSTMENT,
        status=201,
    ),
    _o(
        "GET",
        "/liability",
        liability,
        "Outstanding points and their value (minor units) by month of expiry",
        query=_MERCHANT_QUERY,
    ),
    Endpoint(
        "GET",
        "/api/v1/partner/loyalty",
        partner_members,
        "partner",
        "How many of the customers you brought are loyalty members, by tier (counts only)",
        tag="partner",
    ),
]
