"""Rows for tests: a merchant, offers, approved partners and their links, inserted directly."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson


@dataclass(frozen=True)
class Programme:
    merchant_id: int
    offer_id: int
    partner_id: int
    link_id: int
    code: str


async def programme(
    conn: asyncpg.Connection,
    *,
    destination: str = "https://shop.example.com/landing?cid={click_id}&s1={sub1}",
    allowed_hosts: tuple[str, ...] = ("shop.example.com",),
    window_s: int = 86400,
    currency: str = "USD",
    fee_plan: dict[str, Any] | None = None,
    caps: dict[str, Any] | None = None,
    fallback_url: str | None = None,
    partner_status: str = "approved",
    merchant_id: int | None = None,
    email: str | None = None,
) -> Programme:
    """One offer with one partner and one link; pass merchant_id to add to an existing merchant."""
    if merchant_id is None:
        merchant_id = await conn.fetchval(
            "INSERT INTO merchants (slug, name, currency) VALUES ($1, 'Test Shop', $2) RETURNING id",
            "shop-" + secrets.token_hex(4),
            currency,
        )
    offer_id = await conn.fetchval(
        """INSERT INTO offers (merchant_id, name, destination_url, allowed_hosts, attribution_window_s, currency,
                               fee_plan, caps, fallback_url)
           VALUES ($1, 'Offer', $2, $3, $4, $5, $6, $7, $8) RETURNING id""",
        merchant_id,
        destination,
        list(allowed_hosts),
        window_s,
        currency,
        orjson.dumps(fee_plan or {}).decode(),
        orjson.dumps(caps or {}).decode(),
        fallback_url,
    )
    partner_id = await conn.fetchval(
        "INSERT INTO partners (name, email) VALUES ('Partner', $1) RETURNING id",
        email or f"p{secrets.token_hex(4)}@partners.example",
    )
    await conn.execute(
        "INSERT INTO partner_programmes (partner_id, merchant_id, status) VALUES ($1, $2, $3)",
        partner_id,
        merchant_id,
        partner_status,
    )
    code = secrets.token_urlsafe(8)
    link_id = await conn.fetchval(
        "INSERT INTO links (code, partner_id, offer_id) VALUES ($1, $2, $3) RETURNING id", code, partner_id, offer_id
    )
    return Programme(merchant_id, offer_id, partner_id, link_id, code)
