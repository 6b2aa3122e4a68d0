"""What a partner reads and sets of its markup prices: its retail prices above the merchant's wholesale ones,
their history and the price feed (portal/partner_data.py has the rest of what a partner sees)."""

from __future__ import annotations

from typing import Any

import asyncpg

from kernel.money import format_amount
from portal.errors import ApiError, not_found

_PRODUCTS = """
    SELECT p.merchant_id, m.name AS merchant, p.sku, p.name,
           w.amount_minor AS wholesale_minor, w.currency, w.valid_from AS wholesale_from,
           r.amount_minor AS retail_minor, r.valid_from AS retail_from
    FROM products p
    JOIN merchants m ON m.id = p.merchant_id
    JOIN partner_programmes pp ON pp.merchant_id = p.merchant_id AND pp.partner_id = $1 AND pp.status = 'approved'
    JOIN LATERAL (SELECT amount_minor, currency, valid_from FROM prices
                  WHERE merchant_id = p.merchant_id AND sku = p.sku AND kind = 'wholesale' AND valid_from <= now()
                  ORDER BY valid_from DESC, id DESC LIMIT 1) w ON true
    LEFT JOIN LATERAL (SELECT amount_minor, valid_from FROM prices
                       WHERE merchant_id = p.merchant_id AND sku = p.sku AND kind = 'retail' AND partner_id = $1
                         AND valid_from <= now()
                       ORDER BY valid_from DESC, id DESC LIMIT 1) r ON true
"""


def _product(row: asyncpg.Record) -> dict[str, Any]:
    item = dict(row)
    item["wholesale"] = format_amount(row["wholesale_minor"], row["currency"])
    item["retail"] = format_amount(row["retail_minor"], row["currency"]) if row["retail_minor"] is not None else None
    for name in ("wholesale_from", "retail_from"):
        item[name] = row[name].isoformat() if row[name] else None
    return item


async def prices(conn: asyncpg.Connection, partner_id: int) -> list[dict[str, Any]]:
    rows = await conn.fetch(_PRODUCTS + " ORDER BY m.name, p.sku", partner_id)
    return [_product(r) for r in rows]


async def product_currency(conn: asyncpg.Connection, partner_id: int, merchant_id: int, sku: str) -> str:
    """The currency of a product the partner may price (in a programme that approved it); else not found."""
    row = await conn.fetchrow(_PRODUCTS + " WHERE p.merchant_id = $2 AND p.sku = $3", partner_id, merchant_id, sku)
    if row is None:
        raise not_found("product")
    return str(row["currency"])


async def set_price(
    conn: asyncpg.Connection, partner_id: int, merchant_id: int, sku: str, retail_minor: int
) -> dict[str, Any]:
    """A new retail price version, from now on; never below the wholesale price in force."""
    async with conn.transaction():
        row = await conn.fetchrow(
            _PRODUCTS + " WHERE p.merchant_id = $2 AND p.sku = $3 FOR UPDATE OF p", partner_id, merchant_id, sku
        )
        if row is None:
            raise not_found("product")
        if retail_minor < row["wholesale_minor"]:
            wholesale = format_amount(row["wholesale_minor"], row["currency"])
            raise ApiError(
                400,
                "below_wholesale",
                f"the retail price must be at least the wholesale price {wholesale} {row['currency']}",
            )
        await conn.execute(
            """INSERT INTO prices (merchant_id, sku, kind, partner_id, amount_minor, currency)
               VALUES ($1, $2, 'retail', $3, $4, $5)""",
            merchant_id,
            sku,
            partner_id,
            retail_minor,
            row["currency"],
        )
    row = await conn.fetchrow(_PRODUCTS + " WHERE p.merchant_id = $2 AND p.sku = $3", partner_id, merchant_id, sku)
    return _product(row)


async def price_history(conn: asyncpg.Connection, partner_id: int, merchant_id: int, sku: str) -> list[dict]:
    rows = await conn.fetch(
        """SELECT amount_minor, currency, valid_from FROM prices
           WHERE merchant_id = $1 AND sku = $2 AND kind = 'retail' AND partner_id = $3 ORDER BY valid_from, id""",
        merchant_id,
        sku,
        partner_id,
    )
    return [
        {
            "retail": format_amount(r["amount_minor"], r["currency"]),
            "currency": r["currency"],
            "valid_from": r["valid_from"].isoformat(),
        }
        for r in rows
    ]


async def price_feed(conn: asyncpg.Connection, merchant_id: int, partner_id: int) -> dict[str, Any]:
    """What the merchant's branded store shows for this partner: its current retail prices."""
    rows = await conn.fetch(_PRODUCTS + " WHERE p.merchant_id = $2 ORDER BY p.sku", partner_id, merchant_id)
    return {
        "merchant_id": merchant_id,
        "partner_id": partner_id,
        "items": [
            {
                "sku": r["sku"],
                "name": r["name"],
                "price": format_amount(r["retail_minor"], r["currency"]),
                "currency": r["currency"],
                "valid_from": r["retail_from"].isoformat(),
            }
            for r in rows
            if r["retail_minor"] is not None
        ],
    }
