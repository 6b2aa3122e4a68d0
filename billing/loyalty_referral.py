"""Refer a friend: a member's referral link, and what the friend's first purchase through it earns.

The link is a partner of its own kind (one per member, named by its code, e-mail under referral.invalid)
with a link on the programme's referral offer, so the tracker counts its clicks and attributes the friend's
purchase like any partner's (the referral offer's fee plan should pay nothing). In ingest, a billable
purchase attributed to a referral partner, by a customer other than the referrer and from another visitor
than the referrer's own clicks, earns a lot for the friend and one for the referrer: once per friend ever
(unique on the friend), pending until the purchase's hold ends, cancelled or reversed by its refunds.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from typing import Any

import asyncpg

from billing import loyalty_ledger as ledger
from kernel.loyalty_rules import LoyaltyError, Programme

log = logging.getLogger("clickmint.billing.loyalty")


def settings(prog_row: Any) -> dict[str, int]:
    """The programme's referral settings, checked: offer_id, referrer_points, friend_points ({} when off)."""
    import orjson

    raw = prog_row.get("referral") if hasattr(prog_row, "get") else None
    raw = orjson.loads(raw) if isinstance(raw, str | bytes) else (raw or {})
    if not raw:
        return {}
    found = {}
    for name in ("offer_id", "referrer_points", "friend_points"):
        value = raw.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10**9:
            raise LoyaltyError("invalid_field", f"referral.{name} must be a whole number")
        found[name] = value
    return found


async def load(conn: asyncpg.Connection) -> dict[int, tuple[int, str, dict[str, int]]]:
    """Referral partner id -> (merchant, referrer customer, the programme's referral settings)."""
    rows = await conn.fetch(
        """SELECT r.partner_id, r.merchant_id, r.customer_ref, p.referral FROM loyalty_referrals r
           JOIN loyalty_programmes p ON p.merchant_id = r.merchant_id AND p.enabled"""
    )
    found = {}
    for r in rows:
        conf = settings(dict(r))
        if conf:
            found[r["partner_id"]] = (r["merchant_id"], r["customer_ref"], conf)
    return found


async def link(conn: asyncpg.Connection, prog: Programme, customer: str) -> dict[str, Any]:
    """The member's referral code (made once): a partner and a link of its own on the referral offer."""
    row = await conn.fetchrow("SELECT referral FROM loyalty_programmes WHERE merchant_id = $1", prog.merchant_id)
    conf = settings(dict(row)) if row else {}
    if not conf:
        raise LoyaltyError("referral_off", "this programme has no refer-a-friend offer", 404)
    async with conn.transaction():
        await ledger.lock_member(conn, prog.merchant_id, customer)  # one referral partner per member
        found = await conn.fetchrow(
            "SELECT code, partner_id FROM loyalty_referrals WHERE merchant_id = $1 AND customer_ref = $2",
            prog.merchant_id,
            customer,
        )
        if found is not None:
            return {"customer": customer, "code": found["code"]}
        offer = await conn.fetchval(
            "SELECT id FROM offers WHERE id = $1 AND merchant_id = $2", conf["offer_id"], prog.merchant_id
        )
        if offer is None:
            raise LoyaltyError("referral_off", "the programme's referral offer is not one of this merchant's", 404)
        code = "r-" + secrets.token_urlsafe(9)
        partner = await conn.fetchval(
            "INSERT INTO partners (name, email) VALUES ($1, $2) RETURNING id",
            f"Member referral {code}",
            f"{code.lower()}@referral.invalid",
        )
        await conn.execute(
            "INSERT INTO partner_programmes (partner_id, merchant_id, status) VALUES ($1, $2, 'approved')",
            partner,
            prog.merchant_id,
        )
        link_id = await conn.fetchval(
            "INSERT INTO links (code, partner_id, offer_id) VALUES ($1, $2, $3) RETURNING id", code, partner, offer
        )
        await conn.execute(
            """INSERT INTO loyalty_referrals (merchant_id, customer_ref, partner_id, link_id, code)
               VALUES ($1, $2, $3, $4, $5)""",
            prog.merchant_id,
            customer,
            partner,
            link_id,
            code,
        )
        return {"customer": customer, "code": code}


async def lots(
    conn: asyncpg.Connection,
    referrals: dict[int, tuple[int, str, dict[str, int]]],
    prog: Programme,
    event: dict[str, Any],
    friend: str,
    hold_until: dt.datetime,
    at: dt.datetime,
) -> list[tuple[Any, ...]]:
    """The two lots a friend's purchase through a referral link earns (as loyalty_ingest's lot rows), or none:
    not a referral purchase, the referrer itself, the referrer's own browser, or not the friend's first."""
    found = referrals.get(int(event.get("partner") or 0))
    if found is None or event["type"] != "purchase" or found[0] != prog.merchant_id:
        return []
    merchant, referrer, conf = found
    if friend == referrer:
        log.info("referral refused: customer %s used its own link", referrer)
        return []
    if event.get("click_id") and await conn.fetchval(
        """SELECT EXISTS (
               SELECT 1 FROM events f JOIN events o ON o.ip_prefix = f.ip_prefix
                    AND o.payload::jsonb->>'ua' IS NOT DISTINCT FROM f.payload::jsonb->>'ua'
               JOIN conversions c ON c.click_id = o.click_id AND c.merchant_id = $2 AND c.customer_ref = $3
               WHERE f.type = 'click' AND f.click_id = $1 AND o.type = 'click' AND f.ip_prefix <> '')""",
        str(event["click_id"]),
        merchant,
        referrer,
    ):
        log.info("referral refused: the friend's click came from the referrer's own visitor")
        return []
    earlier = await conn.fetchval(
        """SELECT EXISTS (SELECT 1 FROM conversions WHERE merchant_id = $1 AND customer_ref = $2 AND kind = 'purchase'
                              AND status IN ('pending', 'approved') AND ts < $3)""",
        merchant,
        friend,
        at,
    )
    if earlier:
        return []
    expires = hold_until + dt.timedelta(days=prog.expiry_days) if prog.expiry_days else None
    amount = int(event.get("amount") or 0)
    once = f"referred:{friend}"
    rows = []
    for customer, rule, points in (
        (friend, "referral:friend", conf["friend_points"]),
        (referrer, "referral:referrer", conf["referrer_points"]),
    ):
        if points > 0:
            rows.append(
                (merchant, customer, event["id"], rule, once, amount, points, "pending", at, hold_until, expires)
            )
    return rows
