"""Coupons, offers' attribution settings and held conversions, as the portal reads and writes them (SQL).

Every query names its scope: a partner sees its own coupons and held conversions; an operator those of its
merchant (a network operator: every merchant). An id outside the scope is answered as one that does not exist.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg
import orjson

from billing.public import review
from kernel import fraud
from kernel.macros import normalize_hosts, safe_deep_link
from portal.auth import Principal
from portal.errors import ApiError, not_found
from portal.operator_data import audit, scope_merchant

_COUPON_COLUMNS = """c.id, c.offer_id, o.name AS offer, c.partner_id, p.name AS partner, c.code, c.status, c.valid_from,
    c.valid_until, c.requested_by, c.decided_by, c.decided_at, c.decision_note, c.created_at"""
# Uses credited to the coupon's partner: conversions carrying the code on its offer, credited to that partner.
_USAGE = """LEFT JOIN LATERAL (
        SELECT count(*) FILTER (WHERE x.status <> 'rejected') AS uses, count(*) FILTER (WHERE x.status = 'held') AS held
        FROM conversions x WHERE x.offer_id = c.offer_id AND x.coupon = c.code AND x.partner_id = c.partner_id
    ) use ON true
    LEFT JOIN LATERAL (
        SELECT jsonb_object_agg(s.currency, s.amount) AS sales_minor
        FROM (SELECT x.currency, sum(x.amount_minor)::bigint AS amount FROM conversions x
              WHERE x.offer_id = c.offer_id AND x.coupon = c.code AND x.partner_id = c.partner_id
                AND x.status <> 'rejected' AND x.currency IS NOT NULL
              GROUP BY x.currency) s
    ) sales ON true"""


_SCOPED = {  # kind -> whether the operator's merchant (NULL: any) holds this object
    "coupon": "SELECT 1 FROM coupons c JOIN offers o ON o.id = c.offer_id WHERE c.id = $1 AND "
    "($2::bigint IS NULL OR o.merchant_id = $2)",
    "conversion": "SELECT 1 FROM conversions WHERE event_id = $1::uuid AND ($2::bigint IS NULL OR merchant_id = $2)",
}


async def in_scope(conn: asyncpg.Connection, who: Principal, kind: str, object_id: Any) -> None:
    """404, as if it did not exist, unless the operator's merchant holds the object (path ids tenancy.py cannot
    check: a coupon, a conversion named by its uuid)."""
    if not await conn.fetchval(_SCOPED[kind], object_id, who.merchant_scope()):
        raise not_found(kind)


def _row(record: asyncpg.Record) -> dict[str, Any]:
    out = dict(record)
    for key, value in out.items():
        if isinstance(value, dt.datetime):
            out[key] = value.isoformat()
    if isinstance(out.get("sales_minor"), str):
        out["sales_minor"] = orjson.loads(out["sales_minor"])
    return out


async def coupons(conn: asyncpg.Connection, who: Principal, offer_id: int | None = None) -> list[dict[str, Any]]:
    """The caller's coupons (a partner's own; an operator's merchant's), with their credited uses."""
    if who.is_partner:
        where, arg = "c.partner_id = $1", who.partner_id
    else:
        where, arg = "($1::bigint IS NULL OR o.merchant_id = $1)", who.merchant_scope()
    rows = await conn.fetch(
        f"""SELECT {_COUPON_COLUMNS}, coalesce(use.uses, 0) AS uses, coalesce(use.held, 0) AS held_uses,
                   coalesce(sales.sales_minor, '{{}}') AS sales_minor
            FROM coupons c JOIN offers o ON o.id = c.offer_id JOIN partners p ON p.id = c.partner_id
            {_USAGE}
            WHERE {where} AND ($2::bigint IS NULL OR c.offer_id = $2)
            ORDER BY c.id""",
        arg,
        offer_id,
    )
    return [_row(r) for r in rows]


async def create_coupon(
    conn: asyncpg.Connection, who: Principal, values: dict[str, Any], status: str
) -> dict[str, Any]:
    """A code of a partner approved in the offer's merchant's programme; `requested` by the partner itself,
    `active` when the operator assigns it."""
    partner_id = who.partner_id if who.is_partner else values["partner_id"]
    offer = await conn.fetchrow("SELECT id, merchant_id FROM offers WHERE id = $1", values["offer_id"])
    if offer is None:
        raise not_found("offer")
    approved = await conn.fetchval(
        "SELECT status = 'approved' FROM partner_programmes WHERE partner_id = $1 AND merchant_id = $2",
        partner_id,
        offer["merchant_id"],
    )
    if not approved:
        raise ApiError(409, "partner_not_approved", "the partner is not approved in this offer's programme")
    if values.get("valid_from") and values.get("valid_until") and values["valid_until"] <= values["valid_from"]:
        raise ApiError(400, "invalid_field", "valid_until: must be later than valid_from", pointer="/valid_until")
    try:
        async with conn.transaction():
            coupon_id = await conn.fetchval(
                """INSERT INTO coupons (offer_id, partner_id, code, status, valid_from, valid_until, requested_by)
                   VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id""",
                offer["id"],
                partner_id,
                values["code"],
                status,
                values.get("valid_from"),
                values.get("valid_until"),
                who.email if status == "requested" else None,
            )
            action = "coupon.request" if status == "requested" else "coupon.create"
            await audit(conn, who, offer["merchant_id"], action, "coupon", coupon_id, _audited(values, partner_id))
    except asyncpg.UniqueViolationError:
        raise ApiError(409, "coupon_taken", f"the code {values['code']} is already live on this offer") from None
    return await _coupon(conn, coupon_id)


async def decide_coupon(
    conn: asyncpg.Connection, who: Principal, coupon_id: int, decision: str, note: str | None
) -> dict[str, Any]:
    """approve or reject a requested code; revoke an active one."""
    row = await conn.fetchrow(
        """SELECT c.id, c.status, o.merchant_id FROM coupons c JOIN offers o ON o.id = c.offer_id
           WHERE c.id = $1 AND ($2::bigint IS NULL OR o.merchant_id = $2) FOR UPDATE OF c""",
        coupon_id,
        who.merchant_scope(),
    )
    if row is None:
        raise not_found("coupon")
    allowed = {"approve": ("requested", "active"), "reject": ("requested", "rejected"), "revoke": ("active", "revoked")}
    before, after = allowed[decision]
    if row["status"] != before:
        raise ApiError(
            409, "coupon_not_" + before, f"the coupon is {row['status']}: only a {before} one can be {decision}d"
        )
    await conn.execute(
        "UPDATE coupons SET status = $2, decided_by = $3, decided_at = now(), decision_note = $4 WHERE id = $1",
        coupon_id,
        after,
        who.email,
        note,
    )
    await audit(conn, who, row["merchant_id"], f"coupon.{decision}", "coupon", coupon_id, {"note": note})
    return await _coupon(conn, coupon_id)


async def _coupon(conn: asyncpg.Connection, coupon_id: int) -> dict[str, Any]:
    row = await conn.fetchrow(
        f"""SELECT {_COUPON_COLUMNS} FROM coupons c JOIN offers o ON o.id = c.offer_id
            JOIN partners p ON p.id = c.partner_id WHERE c.id = $1""",
        coupon_id,
    )
    return _row(row)


def _audited(values: dict[str, Any], partner_id: int | None) -> dict[str, Any]:
    return {
        **{k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in values.items()},
        "partner_id": partner_id,
    }


# -- the offer's attribution settings -----------------------------------------------------------------


async def attribution(conn: asyncpg.Connection, offer_id: int) -> dict[str, Any]:
    """The offer's model, coupon policy and fraud rules as stored and in effect (defaults filled in)."""
    row = await conn.fetchrow(
        "SELECT id, attribution_model, coupon_policy, fraud_rules FROM offers WHERE id = $1", offer_id
    )
    if row is None:
        raise not_found("offer")
    stored = orjson.loads(row["fraud_rules"]) if isinstance(row["fraud_rules"], str) else dict(row["fraud_rules"])
    return {
        "offer_id": row["id"],
        "attribution_model": row["attribution_model"],
        "coupon_policy": row["coupon_policy"],
        "fraud_rules": stored,
        "fraud_rules_in_effect": {**fraud.DEFAULTS, **stored},
    }


async def set_attribution(conn: asyncpg.Connection, who: Principal, offer_id: int, values: dict[str, Any]) -> dict:
    merchant_id = await conn.fetchval("SELECT merchant_id FROM offers WHERE id = $1", offer_id)
    if merchant_id is None:
        raise not_found("offer")
    async with conn.transaction():
        await conn.execute(
            """UPDATE offers SET attribution_model = coalesce($2, attribution_model),
                                 coupon_policy = coalesce($3, coupon_policy),
                                 fraud_rules = coalesce($4::jsonb, fraud_rules), updated_at = now()
               WHERE id = $1""",
            offer_id,
            values.get("attribution_model"),
            values.get("coupon_policy"),
            orjson.dumps(values["fraud_rules"]).decode() if "fraud_rules" in values else None,
        )
        await audit(conn, who, merchant_id, "offer.attribution", "offer", offer_id, values)
    return await attribution(conn, offer_id)


async def set_customer_ref(
    conn: asyncpg.Connection, who: Principal, partner_id: int, merchant_id: int | None, customer_ref: str | None
) -> dict[str, Any]:
    """The partner's own customer id at the merchant (for the self-referral rule); None clears it."""
    merchant = scope_merchant(who, merchant_id)
    async with conn.transaction():
        found = await conn.fetchval(
            "UPDATE partner_programmes SET customer_ref = $3 WHERE partner_id = $1 AND merchant_id = $2 RETURNING 1",
            partner_id,
            merchant,
            customer_ref,
        )
        if not found:
            raise not_found("partner")
        await audit(conn, who, merchant, "partner.customer_ref", "partner", partner_id, {"customer_ref": customer_ref})
    return {"partner_id": partner_id, "merchant_id": merchant, "customer_ref": customer_ref}


# -- held conversions ---------------------------------------------------------------------------------

_HOLD_COLUMNS = """c.event_id::text AS event_id, c.ts, c.kind, c.offer_id, o.name AS offer, c.partner_id, c.order_id,
    c.action, c.amount_minor, c.currency, c.coupon, c.status, c.held_reason, c.held_until, c.reason, c.reviewed_by,
    c.reviewed_at, c.review_note"""


async def holds(conn: asyncpg.Connection, who: Principal, include_decided: bool, limit: int) -> list[dict[str, Any]]:
    """Conversions a fraud rule held: still held, or (include_decided) also those decided since."""
    if who.is_partner:
        where, arg = "c.partner_id = $1", who.partner_id
    else:
        where, arg = "($1::bigint IS NULL OR c.merchant_id = $1)", who.merchant_scope()
    rows = await conn.fetch(
        f"""SELECT {_HOLD_COLUMNS}, p.name AS partner FROM conversions c JOIN offers o ON o.id = c.offer_id
            JOIN partners p ON p.id = c.partner_id
            WHERE {where} AND (c.status = 'held' OR ($2 AND c.held_reason IS NOT NULL))
            ORDER BY c.ts DESC LIMIT $3""",
        arg,
        include_decided,
        limit,
    )
    out = [_row(r) for r in rows]
    if who.is_partner:  # the operator's reviewer is the merchant's business, not the partner's
        for item in out:
            item.pop("reviewed_by", None)
    return out


async def decide_hold(
    conn: asyncpg.Connection, who: Principal, event_id: str, decision: str, reason: str
) -> dict[str, Any]:
    async with conn.transaction():
        try:
            done = await review.decide(conn, event_id, decision, reason, who.email, who.merchant_scope())
        except review.ReviewError as exc:
            if exc.code == "not_found":
                raise not_found("conversion") from None
            raise ApiError(409, exc.code, exc.detail) from None
        await audit(
            conn,
            who,
            done["merchant_id"],
            f"conversion.{decision}",
            "conversion",
            event_id,
            {"reason": reason, "held_reason": done["held_reason"]},
        )
    return {k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in done.items()}


# -- smart links -------------------------------------------------------------------------------------


async def smart(conn: asyncpg.Connection, link_id: int, days: int = 30) -> dict[str, Any]:
    """A link's smart-link rules and the clicks each variant received over the last `days` UTC days."""
    rules = await conn.fetchval("SELECT smart_rules FROM links WHERE id = $1", link_id)
    rows = await conn.fetch(
        """SELECT variant, sum(clicks)::bigint AS clicks, sum(unique_clicks)::bigint AS unique_clicks
           FROM rollup_variants WHERE link_id = $1 AND day > (now() AT TIME ZONE 'UTC')::date - $2::int
           GROUP BY variant ORDER BY variant""",
        link_id,
        days,
    )
    return {
        "link_id": link_id,
        "smart_rules": orjson.loads(rules) if isinstance(rules, str) else rules,
        "days": days,
        "variants": [dict(r) for r in rows],
    }


async def set_smart(
    conn: asyncpg.Connection, who: Principal, link_id: int, rules: dict[str, Any] | None
) -> dict[str, Any]:
    """Set (None: clear) a link's smart-link rules after checking what the schema cannot: each URL on the offer's
    allowed hosts, each other offer the merchant's with an active link of the partner."""
    link = await conn.fetchrow(
        """SELECT l.id, l.partner_id, o.merchant_id, o.allowed_hosts FROM links l JOIN offers o ON o.id = l.offer_id
           WHERE l.id = $1""",
        link_id,
    )
    if link is None:
        raise not_found("link")
    if rules is not None:
        hosts = normalize_hosts(link["allowed_hosts"])
        items = [("/smart_rules/fallback", rules["fallback"])] if rules.get("fallback") else []
        for n, rule in enumerate(rules["rules"]):
            items += [(f"/smart_rules/rules/{n}/variants/{m}", v) for m, v in enumerate(rule["variants"])]
        for pointer, variant in items:
            if "url" in variant and safe_deep_link(variant["url"], hosts) is None:
                raise ApiError(
                    400,
                    "invalid_smart_link",
                    f"{pointer}/url: not on the offer's allowed hosts",
                    pointer=pointer + "/url",
                )
            if "offer_id" in variant:
                found = await conn.fetchval(
                    """SELECT 1 FROM links l JOIN offers o ON o.id = l.offer_id
                       WHERE l.offer_id = $1 AND l.partner_id = $2 AND o.merchant_id = $3 AND l.status = 'active'
                         AND l.smart_rules IS NULL""",
                    variant["offer_id"],
                    link["partner_id"],
                    link["merchant_id"],
                )
                if not found:
                    raise ApiError(
                        400,
                        "invalid_smart_link",
                        f"{pointer}/offer_id: the partner has no active plain link on that offer of this merchant",
                        pointer=pointer + "/offer_id",
                    )
    async with conn.transaction():
        await conn.execute(
            "UPDATE links SET smart_rules = $2::jsonb WHERE id = $1",
            link_id,
            orjson.dumps(rules).decode() if rules is not None else None,
        )
        await audit(conn, who, link["merchant_id"], "link.smart", "link", link_id, {"smart_rules": rules})
    return await smart(conn, link_id)
