"""Loyalty, redemption at the shop's checkout: reserve points for an order, then confirm or release them.

A reservation spends the points at once (FIFO, an entry per lot, under the member's row lock), so two
checkouts at the same moment can never spend more than the balance; a release gives them back to the
lots they came from; a confirmation only marks the order placed. The discount is rounded down, at the
programme's point value, in minor units of its currency.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg

from billing import loyalty_ledger as ledger
from kernel.loyalty_rules import LoyaltyError, Programme

MAX_POINTS = 10**12


def _view(row: asyncpg.Record, balance: int) -> dict[str, Any]:
    return {
        "id": row["id"],
        "customer": row["customer_ref"],
        "order_id": row["order_id"],
        "points": row["points"],
        "discount_minor": row["discount_minor"],
        "currency": row["currency"],
        "status": row["status"],
        "balance": balance,
    }


async def reserve(
    conn: asyncpg.Connection,
    prog: Programme,
    customer: str,
    order_id: str,
    points: int,
    order_total_minor: int | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """Reserve `points` of a member for an order: refused below the programme's minimum, above its share of
    the order total, above the balance, or when the order already holds a reservation."""
    now = now or dt.datetime.now(dt.UTC)
    if not 0 < points <= MAX_POINTS:
        raise LoyaltyError("invalid_field", "points must be a whole number above 0")
    if points < prog.redeem_min_points:
        raise LoyaltyError("below_minimum", f"at least {prog.redeem_min_points} points are redeemed at once")
    discount = prog.discount_minor(points)
    if order_total_minor is not None:
        cap = order_total_minor * prog.redeem_max_percent // 100
        if discount > cap:
            raise LoyaltyError(
                "over_order_limit",
                f"points may pay at most {prog.redeem_max_percent}% of the order: {cap} minor units here",
            )
    async with conn.transaction():
        member = await ledger.lock_member(conn, prog.merchant_id, customer)
        held = await conn.fetchval(
            "SELECT id FROM loyalty_redemptions WHERE merchant_id = $1 AND order_id = $2 AND status <> 'released'",
            prog.merchant_id,
            order_id,
        )
        if held is not None:
            raise LoyaltyError("order_has_redemption", f"order {order_id} already holds redemption {held}", 409)
        if points > member["balance"]:
            raise LoyaltyError(
                "insufficient_points", f"the member has {member['balance']} points, {points} were asked for", 409
            )
        row = await conn.fetchrow(
            """INSERT INTO loyalty_redemptions (merchant_id, customer_ref, order_id, points, discount_minor, currency,
                                                status, created_at, updated_at)
               VALUES ($1, $2, $3, $4, $5, $6, 'reserved', $7, $7) RETURNING *""",
            prog.merchant_id,
            customer,
            order_id,
            points,
            discount,
            prog.currency,
            now,
        )
        await ledger.take_fifo(
            conn,
            member,
            points,
            "spend",
            f"spend:{row['id']}",
            now,
            redemption_id=row["id"],
            reason=f"order {order_id}",
        )
        return _view(row, member["balance"] - points)


async def _locked(conn: asyncpg.Connection, prog: Programme, redemption_id: int) -> tuple[asyncpg.Record, Any]:
    """The redemption of this merchant, with its member locked first (then the redemption)."""
    found = await conn.fetchrow(
        "SELECT customer_ref FROM loyalty_redemptions WHERE id = $1 AND merchant_id = $2",
        redemption_id,
        prog.merchant_id,
    )
    if found is None:  # another merchant's redemption looks like none at all
        raise LoyaltyError("not_found", "no such redemption", 404)
    member = await ledger.lock_member(conn, prog.merchant_id, found["customer_ref"])
    row = await conn.fetchrow("SELECT * FROM loyalty_redemptions WHERE id = $1 FOR UPDATE", redemption_id)
    return row, member


async def confirm(
    conn: asyncpg.Connection, prog: Programme, redemption_id: int, now: dt.datetime | None = None
) -> dict[str, Any]:
    """The order was placed: the reserved points stay spent. Confirming twice answers the same."""
    async with conn.transaction():
        row, member = await _locked(conn, prog, redemption_id)
        if row["status"] == "released":
            raise LoyaltyError("already_released", "this redemption was released; reserve again", 409)
        if row["status"] == "reserved":
            row = await conn.fetchrow(
                "UPDATE loyalty_redemptions SET status = 'confirmed', updated_at = $2 WHERE id = $1 RETURNING *",
                redemption_id,
                now or dt.datetime.now(dt.UTC),
            )
        return _view(row, member["balance"])


async def release(
    conn: asyncpg.Connection, prog: Programme, redemption_id: int, now: dt.datetime | None = None
) -> dict[str, Any]:
    """The order was abandoned: the points go back to the lots they came from (a lot past its expiry loses
    them at the next expiry run). Releasing twice answers the same; a confirmed redemption is not released."""
    now = now or dt.datetime.now(dt.UTC)
    async with conn.transaction():
        row, member = await _locked(conn, prog, redemption_id)
        if row["status"] == "confirmed":
            raise LoyaltyError("already_confirmed", "a confirmed redemption is not released; adjust instead", 409)
        if row["status"] == "reserved":
            spent = await conn.fetch(
                """SELECT lot_id, -points AS points FROM loyalty_entries
                   WHERE redemption_id = $1 AND kind = 'spend' AND points < 0 ORDER BY lot_id""",
                redemption_id,
            )
            for item in spent:
                if await ledger.entry(
                    conn, f"release:{redemption_id}:{item['lot_id']}", prog.merchant_id, row["customer_ref"], "spend",
                    item["points"], now, lot_id=item["lot_id"], redemption_id=redemption_id, reason="released",
                ):  # fmt: skip
                    await ledger.credit_lot(conn, member, item["lot_id"], item["points"])
                    member = await ledger.lock_member(conn, prog.merchant_id, row["customer_ref"])
            row = await conn.fetchrow(
                "UPDATE loyalty_redemptions SET status = 'released', updated_at = $2 WHERE id = $1 RETURNING *",
                redemption_id,
                now,
            )
        return _view(row, member["balance"])
