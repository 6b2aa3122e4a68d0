"""What an operator may read and change of its programme's partners, their links and creatives (a network
operator: every merchant's); every change audited in its transaction (portal/operator_data.py)."""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

import asyncpg

from portal import notifications
from portal.auth import Principal
from portal.errors import ApiError, invalid, not_found
from portal.images import ImageError, sniff
from portal.operator_data import audit, in_scope, iso_row, offer, scope_merchant

# -- partners -------------------------------------------------------------------------------------


async def partners(conn: asyncpg.Connection, who: Principal) -> list[dict[str, Any]]:
    where, args = in_scope(who, "pp.merchant_id")
    rows = await conn.fetch(
        f"""SELECT p.id, p.name, p.email, p.currency, p.min_payout_minor, pp.merchant_id, pp.status, pp.created_at
            FROM partners p JOIN partner_programmes pp ON pp.partner_id = p.id WHERE {where}
            ORDER BY pp.merchant_id, p.id""",
        *args,
    )
    return [iso_row(dict(r)) for r in rows]


async def enrol_partner(conn: asyncpg.Connection, who: Principal, values: dict[str, Any]) -> dict[str, Any]:
    """The machine owner's `clickmint admin partner add`: the partner (found by e-mail, or made) joins the
    programme at once. No operator can do this: operators invite (portal/invitations.py) and partners accept."""
    if who.via != "cli":
        raise ApiError(403, "forbidden", "operators invite partners; only the command line enrols them directly")
    merchant_id = scope_merchant(who, values.get("merchant_id"))
    async with conn.transaction():
        partner_id = await conn.fetchval("SELECT id FROM partners WHERE email = $1", values["email"])
        if partner_id is None:
            partner_id = await conn.fetchval(
                """INSERT INTO partners (name, email, currency, min_payout_minor, address) VALUES ($1, $2, $3, $4, $5)
                   RETURNING id""",
                values["name"],
                values["email"],
                values.get("currency", "USD"),
                values.get("min_payout_minor", 0),
                values.get("address"),
            )
        await conn.execute(
            """INSERT INTO partner_programmes (partner_id, merchant_id, status) VALUES ($1, $2, $3)
               ON CONFLICT (partner_id, merchant_id) DO NOTHING""",
            partner_id,
            merchant_id,
            values.get("status", "approved"),
        )
        await audit(conn, who, merchant_id, "create", "partner", partner_id, values)
    return {"id": partner_id, "merchant_id": merchant_id}


async def set_partner_status(
    conn: asyncpg.Connection, who: Principal, partner_id: int, merchant_id: int | None, status: str
) -> dict[str, Any]:
    merchant_id = scope_merchant(who, merchant_id)
    async with conn.transaction():
        old = await conn.fetchval(
            "SELECT status FROM partner_programmes WHERE partner_id = $1 AND merchant_id = $2 FOR UPDATE",
            partner_id,
            merchant_id,
        )
        if old is None:
            raise not_found("partner")
        await conn.execute(
            "UPDATE partner_programmes SET status = $3 WHERE partner_id = $1 AND merchant_id = $2",
            partner_id,
            merchant_id,
            status,
        )
        await audit(conn, who, merchant_id, "set_status", "partner", partner_id, {"from": old, "to": status})
        if status == "approved" and old != "approved":
            name = await conn.fetchval("SELECT name FROM merchants WHERE id = $1", merchant_id)
            await notifications.notify(conn, partner_id, "approved", {"merchant": name}, "/offers", merchant_id)
    return {"id": partner_id, "merchant_id": merchant_id, "status": status}


# -- links and creatives --------------------------------------------------------------------------


async def links(conn: asyncpg.Connection, who: Principal) -> list[dict[str, Any]]:
    where, args = in_scope(who, "o.merchant_id")
    rows = await conn.fetch(
        f"""SELECT l.id, l.code, l.partner_id, l.offer_id, l.creative_id, l.status, l.created_at FROM links l
            JOIN offers o ON o.id = l.offer_id WHERE {where} ORDER BY l.id""",
        *args,
    )
    return [iso_row(dict(r)) for r in rows]


async def create_link(conn: asyncpg.Connection, who: Principal, values: dict[str, Any]) -> dict[str, Any]:
    current = await offer(conn, who, values["offer_id"])
    member = await conn.fetchval(
        "SELECT 1 FROM partner_programmes WHERE partner_id = $1 AND merchant_id = $2",
        values["partner_id"],
        current["merchant_id"],
    )
    if not member:
        raise not_found("partner")
    if values.get("creative_id") is not None and not await conn.fetchval(
        "SELECT 1 FROM creatives WHERE id = $1 AND offer_id = $2", values["creative_id"], values["offer_id"]
    ):
        raise not_found("creative")  # only a banner of this offer; another merchant's is not even there
    async with conn.transaction():
        row = await conn.fetchrow(
            "INSERT INTO links (code, partner_id, offer_id, creative_id) VALUES ($1, $2, $3, $4) RETURNING *",
            secrets.token_urlsafe(8),
            values["partner_id"],
            values["offer_id"],
            values.get("creative_id"),
        )
        await audit(conn, who, current["merchant_id"], "create", "link", row["id"], values)
    return iso_row(dict(row))


async def set_link_status(conn: asyncpg.Connection, who: Principal, link_id: int, status: str) -> dict[str, Any]:
    where, args = in_scope(who, "o.merchant_id")
    async with conn.transaction():
        row = await conn.fetchrow(
            f"""UPDATE links l SET status = ${len(args) + 1} FROM offers o
                WHERE o.id = l.offer_id AND {where} AND l.id = ${len(args) + 2} RETURNING l.*, o.merchant_id""",
            *args,
            status,
            link_id,
        )
        if row is None:
            raise not_found("link")
        await audit(conn, who, row["merchant_id"], "set_status", "link", link_id, {"status": status})
    return iso_row(dict(row))


async def creatives(conn: asyncpg.Connection, who: Principal) -> list[dict[str, Any]]:
    where, args = in_scope(who, "o.merchant_id")
    rows = await conn.fetch(
        f"""SELECT c.id, c.offer_id, c.name, c.content_type, c.width, c.height, c.sha256, c.alt_text, c.created_at,
                   octet_length(c.body) AS bytes
            FROM creatives c JOIN offers o ON o.id = c.offer_id WHERE {where} ORDER BY c.id""",
        *args,
    )
    return [iso_row(dict(r)) for r in rows]


async def create_creative(
    conn: asyncpg.Connection, who: Principal, offer_id: int, name: str, alt: str, body: bytes
) -> dict[str, Any]:
    """A banner on one of the operator's offers; its type and size are read from its bytes."""
    current = await offer(conn, who, offer_id)  # another merchant's offer is not found, whatever the bytes
    if not isinstance(body, bytes) or not body:
        raise invalid("image", "choose a file")
    try:
        content_type, width, height = sniff(body)
    except ImageError as exc:
        raise ApiError(400, "invalid_image", str(exc)) from exc
    async with conn.transaction():
        creative_id = await conn.fetchval(
            """INSERT INTO creatives (offer_id, name, content_type, width, height, body, sha256, alt_text)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id""",
            offer_id,
            name,
            content_type,
            width,
            height,
            body,
            hashlib.sha256(body).hexdigest(),
            alt,
        )
        await audit(
            conn,
            who,
            current["merchant_id"],
            "create",
            "creative",
            creative_id,
            {"offer_id": offer_id, "name": name, "content_type": content_type, "bytes": len(body)},
        )
    return {"id": creative_id, "offer_id": offer_id, "content_type": content_type, "width": width, "height": height}
