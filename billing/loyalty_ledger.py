"""Loyalty, the ledger half (SQL): lots and entries, activation, expiry, reversal, adjustment, tiers.

Every change of a balance is one loyalty_entries row, unique on its key, written with the change to the
lot and the member in one transaction, under the member's row lock (taken first, in (merchant, customer)
order when several). The invariants the tests check:
    member.balance = sum(its entries) = sum(its active lots' remaining) - member.debt.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import asyncpg
import orjson

from kernel.loyalty_rules import LoyaltyError, Programme, fifo, programme, reverse, tier_for

_LOT_ORDER = "expires_at NULLS LAST, available_at, id"  # spending order: the oldest expiry first
IDEMPOTENCY_DAYS = 30  # a checkout's Idempotency-Key is remembered this long


async def load_programmes(conn: asyncpg.Connection, enabled_only: bool = True) -> dict[int, Programme]:
    rows = await conn.fetch(
        "SELECT * FROM loyalty_programmes" + (" WHERE enabled" if enabled_only else "") + " ORDER BY merchant_id"
    )
    return {r["merchant_id"]: programme(dict(r)) for r in rows}


async def programme_of(conn: asyncpg.Connection, merchant_id: int) -> Programme:
    row = await conn.fetchrow("SELECT * FROM loyalty_programmes WHERE merchant_id = $1 AND enabled", merchant_id)
    if row is None:
        raise LoyaltyError("loyalty_off", "this merchant has no loyalty programme enabled", 404)
    return programme(dict(row))


async def lock_member(conn: asyncpg.Connection, merchant_id: int, customer: str) -> asyncpg.Record:
    row = await conn.fetchrow(
        # NO KEY UPDATE: balance changes wait for each other, while ingest's inserts of lots and entries (whose
        # foreign key takes KEY SHARE on the member) go on.
        "SELECT * FROM loyalty_members WHERE merchant_id = $1 AND customer_ref = $2 FOR NO KEY UPDATE",
        merchant_id,
        customer,
    )
    if row is None:
        raise LoyaltyError("unknown_member", "no such member of this programme", 404)
    return row


async def enroll(conn: asyncpg.Connection, merchant_id: int, customer: str, at: dt.datetime) -> None:
    await conn.execute(
        """INSERT INTO loyalty_members (merchant_id, customer_ref, enrolled_at) VALUES ($1, $2, $3)
           ON CONFLICT DO NOTHING""",
        merchant_id,
        customer,
        at,
    )


async def entry(
    conn: asyncpg.Connection,
    key: str,
    merchant_id: int,
    customer: str,
    kind: str,
    points: int,
    at: dt.datetime,
    lot_id: int | None = None,
    redemption_id: int | None = None,
    reason: str | None = None,
) -> bool:
    """Write one entry and move the member's balance by `points`; False (nothing moved) when the key exists."""
    written = await conn.fetchval(
        """INSERT INTO loyalty_entries (key, merchant_id, customer_ref, kind, points, lot_id, redemption_id, reason,
                                        occurred_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (key) DO NOTHING RETURNING id""",
        key,
        merchant_id,
        customer,
        kind,
        points,
        lot_id,
        redemption_id,
        reason,
        at,
    )
    if written is None:
        return False
    await conn.execute(
        "UPDATE loyalty_members SET balance = balance + $3 WHERE merchant_id = $1 AND customer_ref = $2",
        merchant_id,
        customer,
        points,
    )
    return True


async def credit_lot(conn: asyncpg.Connection, member: asyncpg.Record, lot_id: int, points: int) -> None:
    """Points enter a lot's remainder; a member in debt pays it off from them first (the entry was written)."""
    paid = min(member["debt"], points)
    await conn.execute("UPDATE loyalty_lots SET remaining = remaining + $2 WHERE id = $1", lot_id, points - paid)
    if paid:
        await conn.execute(
            "UPDATE loyalty_members SET debt = debt - $3 WHERE merchant_id = $1 AND customer_ref = $2",
            member["merchant_id"],
            member["customer_ref"],
            paid,
        )


async def activate_lot(conn: asyncpg.Connection, lot: asyncpg.Record, at: dt.datetime) -> int:
    """A pending lot becomes active (its points less those cancelled by refunds), or cancelled when nothing is
    left. Returns the points earned."""
    member = await lock_member(conn, lot["merchant_id"], lot["customer_ref"])
    current = await conn.fetchrow(
        "SELECT status, points, cancelled FROM loyalty_lots WHERE id = $1 FOR UPDATE", lot["id"]
    )
    if current["status"] != "pending":
        return 0
    net = current["points"] - current["cancelled"]
    await conn.execute(
        "UPDATE loyalty_lots SET status = $2 WHERE id = $1", lot["id"], "active" if net > 0 else "cancelled"
    )
    if net > 0 and await entry(
        conn, f"earn:{lot['id']}", lot["merchant_id"], lot["customer_ref"], "earn", net, at, lot_id=lot["id"]
    ):
        await credit_lot(conn, member, lot["id"], net)
    return max(net, 0)


async def activate_due(conn: asyncpg.Connection, now: dt.datetime) -> int:
    """Purchases past their conversion's hold: their pending lots become active. Returns lots changed."""
    lots = await conn.fetch(
        """SELECT id, merchant_id, customer_ref FROM loyalty_lots WHERE status = 'pending' AND available_at <= $1
           ORDER BY merchant_id, customer_ref, id""",
        now,
    )
    for lot in lots:
        async with conn.transaction():
            await activate_lot(conn, lot, now)
    return len(lots)


async def expire_due(conn: asyncpg.Connection, now: dt.datetime) -> int:
    """Active lots past their expiry lose what is left of them, one entry each. Returns points expired."""
    lots = await conn.fetch(
        """SELECT id, merchant_id, customer_ref FROM loyalty_lots
           WHERE status = 'active' AND remaining > 0 AND expires_at <= $1 ORDER BY merchant_id, customer_ref, id""",
        now,
    )
    total = 0
    for lot in lots:
        async with conn.transaction():
            await lock_member(conn, lot["merchant_id"], lot["customer_ref"])
            left = await conn.fetchval("SELECT remaining FROM loyalty_lots WHERE id = $1 FOR UPDATE", lot["id"])
            if left <= 0:
                continue
            # The lot may have expired before, then had spent points restored to it: a key per expiry.
            done = await conn.fetchval(
                "SELECT count(*) FROM loyalty_entries WHERE lot_id = $1 AND kind = 'expire'", lot["id"]
            )
            key = f"expire:{lot['id']}" + (f":{done}" if done else "")
            if await entry(conn, key, lot["merchant_id"], lot["customer_ref"], "expire", -left, now, lot_id=lot["id"]):
                await conn.execute(
                    "UPDATE loyalty_lots SET remaining = 0, expired = expired + $2 WHERE id = $1", lot["id"], left
                )
                total += left
    return total


async def reverse_lot(
    conn: asyncpg.Connection, prog: Programme, lot_id: int, points: int, key: str, at: dt.datetime
) -> int:
    """Refund of a purchase: its lot loses `points` (pending: cancelled; active: reversed by the policy).
    The member must be locked by the caller. Returns the points taken from the balance."""
    lot = await conn.fetchrow("SELECT * FROM loyalty_lots WHERE id = $1 FOR UPDATE", lot_id)
    if lot["status"] == "pending":
        await conn.execute(
            "UPDATE loyalty_lots SET cancelled = least(points, cancelled + $2) WHERE id = $1", lot_id, points
        )
        return 0
    if lot["status"] != "active" or points <= 0:
        return 0
    spent = lot["points"] - lot["cancelled"] - lot["remaining"] - lot["expired"] - lot["reversed"]
    taken = reverse(points, lot["remaining"], max(spent, 0), prog.refund_policy)
    if taken.points <= 0:
        return 0
    if not await entry(
        conn, key, lot["merchant_id"], lot["customer_ref"], "reverse", -taken.points, at, lot_id=lot_id,
        reason=f"refund, policy {prog.refund_policy}",
    ):  # fmt: skip
        return 0
    await conn.execute(
        "UPDATE loyalty_lots SET remaining = remaining - $2, reversed = reversed + $3 WHERE id = $1",
        lot_id,
        taken.from_remaining,
        taken.points,
    )
    if taken.debt:
        await conn.execute(
            "UPDATE loyalty_members SET debt = debt + $3 WHERE merchant_id = $1 AND customer_ref = $2",
            lot["merchant_id"],
            lot["customer_ref"],
            taken.debt,
        )
    return taken.points


async def take_fifo(
    conn: asyncpg.Connection,
    member: asyncpg.Record,
    points: int,
    kind: str,
    key: str,
    at: dt.datetime,
    redemption_id: int | None = None,
    reason: str | None = None,
) -> list[tuple[int, int]]:
    """Spend `points` of a locked member from the oldest-expiring lots first, an entry per lot."""
    if points > member["balance"]:
        raise LoyaltyError(
            "insufficient_points", f"the member has {member['balance']} points, {points} were asked for", 409
        )
    lots = await conn.fetch(
        f"""SELECT id, remaining FROM loyalty_lots WHERE merchant_id = $1 AND customer_ref = $2 AND status = 'active'
              AND remaining > 0 ORDER BY {_LOT_ORDER} FOR UPDATE""",
        member["merchant_id"],
        member["customer_ref"],
    )
    taken = fifo([(r["id"], r["remaining"]) for r in lots], points)
    for lot_id, take in taken:
        await entry(
            conn, f"{key}:{lot_id}", member["merchant_id"], member["customer_ref"], kind, -take, at,
            lot_id=lot_id, redemption_id=redemption_id, reason=reason,
        )  # fmt: skip
        await conn.execute("UPDATE loyalty_lots SET remaining = remaining - $2 WHERE id = $1", lot_id, take)
    return taken


async def adjust(
    conn: asyncpg.Connection,
    prog: Programme,
    customer: str,
    points: int,
    reason: str,
    actor_email: str,
    actor_user_id: int | None = None,
    at: dt.datetime | None = None,
) -> int:
    """A manual adjustment with its reason, audited: positive points are a new lot (expiring as earnings do; a
    customer not yet a member is enrolled), negative ones are taken from the oldest lots. Returns the balance."""
    if not reason.strip() or len(reason) > 500:
        raise LoyaltyError("invalid_field", "an adjustment needs a reason (1 to 500 characters)")
    if points == 0 or abs(points) > 10**9:
        raise LoyaltyError("invalid_field", "points must be a non-zero whole number (at most 1,000,000,000)")
    at = at or dt.datetime.now(dt.UTC)
    key = f"adjust:{uuid.uuid4()}"
    async with conn.transaction():
        if points > 0:  # points given to a customer who is not a member yet enrol it
            await enroll(conn, prog.merchant_id, customer, at)
        member = await lock_member(conn, prog.merchant_id, customer)
        if points > 0:
            expires = at + dt.timedelta(days=prog.expiry_days) if prog.expiry_days else None
            lot_id = await conn.fetchval(
                """INSERT INTO loyalty_lots (merchant_id, customer_ref, source, rule, points, status, earned_at,
                                             available_at, expires_at)
                   VALUES ($1, $2, $3, 'adjust', $4, 'active', $5, $5, $6) RETURNING id""",
                prog.merchant_id,
                customer,
                key,
                points,
                at,
                expires,
            )
            await entry(conn, key, prog.merchant_id, customer, "adjust", points, at, lot_id=lot_id, reason=reason)
            await credit_lot(conn, member, lot_id, points)
        else:
            await take_fifo(conn, member, -points, "adjust", key, at, reason=reason)
        await conn.execute(
            """INSERT INTO audit_log (actor_user_id, actor_email, merchant_id, action, object_type, object_id, detail)
               VALUES ($1, $2, $3, 'loyalty.adjust', 'loyalty_member', $4, $5::jsonb)""",
            actor_user_id,
            actor_email,
            prog.merchant_id,
            customer,
            orjson.dumps({"points": points, "reason": reason, "key": key}).decode(),
        )
        return int(
            await conn.fetchval(
                "SELECT balance FROM loyalty_members WHERE merchant_id = $1 AND customer_ref = $2",
                prog.merchant_id,
                customer,
            )
        )


async def recalculate_tiers(conn: asyncpg.Connection, now: dt.datetime) -> int:
    """Each member's tier from its window total (points earned, or purchase amounts), with the grace on a
    downgrade. Returns how many members changed tier."""
    changed = 0
    for prog in (await load_programmes(conn)).values():
        if not prog.tiers.levels:
            continue
        since = now - dt.timedelta(days=prog.tiers.window_days)
        rows = await conn.fetch(
            f"""SELECT m.customer_ref, m.tier, m.tier_since, coalesce(t.total, 0)::bigint AS total
                FROM loyalty_members m LEFT JOIN ({window_totals_sql(prog.tiers.basis)}) t
                  ON t.customer_ref = m.customer_ref
                WHERE m.merchant_id = $1""",
            prog.merchant_id,
            since,
        )
        for row in rows:
            tier = tier_for(prog.tiers, row["total"], row["tier"], row["tier_since"], now)
            if tier != row["tier"]:
                changed += 1
                await conn.execute(
                    """UPDATE loyalty_members SET tier = $3, tier_since = $4
                       WHERE merchant_id = $1 AND customer_ref = $2""",
                    prog.merchant_id,
                    row["customer_ref"],
                    tier,
                    now,
                )
    return changed


def window_totals_sql(basis: str) -> str:
    """Per customer of merchant $1 since $2: points earned, or the amounts their earning purchases counted."""
    if basis == "spend":
        return """SELECT customer_ref, sum(amount_minor - amount_minor * cancelled / greatest(points, 1)) AS total
                  FROM loyalty_lots WHERE merchant_id = $1 AND earned_at >= $2 AND amount_minor IS NOT NULL
                    AND status <> 'cancelled' GROUP BY customer_ref"""
    return """SELECT customer_ref, sum(points) AS total FROM loyalty_entries
              WHERE merchant_id = $1 AND occurred_at >= $2 AND kind = 'earn' GROUP BY customer_ref"""


async def member_summary(conn: asyncpg.Connection, prog: Programme, customer: str, history: int = 50) -> dict[str, Any]:
    """What a member (and the shop's widget) sees: balance, its value, pending points, tier and progress,
    the next expiry, the latest entries."""
    from kernel.loyalty_rules import progress

    member = await conn.fetchrow(
        "SELECT * FROM loyalty_members WHERE merchant_id = $1 AND customer_ref = $2", prog.merchant_id, customer
    )
    if member is None:
        raise LoyaltyError("unknown_member", "no such member of this programme", 404)
    pending = await conn.fetchval(
        """SELECT coalesce(sum(points - cancelled), 0)::bigint FROM loyalty_lots
           WHERE merchant_id = $1 AND customer_ref = $2 AND status = 'pending'""",
        prog.merchant_id,
        customer,
    )
    expiring = await conn.fetchrow(
        """SELECT expires_at, sum(remaining)::bigint AS points FROM loyalty_lots
           WHERE merchant_id = $1 AND customer_ref = $2 AND status = 'active' AND remaining > 0
             AND expires_at IS NOT NULL GROUP BY expires_at ORDER BY expires_at LIMIT 1""",
        prog.merchant_id,
        customer,
    )
    entries = await conn.fetch(
        """SELECT kind, points, reason, occurred_at FROM loyalty_entries
           WHERE merchant_id = $1 AND customer_ref = $2 ORDER BY id DESC LIMIT $3""",
        prog.merchant_id,
        customer,
        history,
    )
    total = await conn.fetchval(
        f"SELECT total FROM ({window_totals_sql(prog.tiers.basis)}) t WHERE customer_ref = $3",
        prog.merchant_id,
        dt.datetime.now(dt.UTC) - dt.timedelta(days=prog.tiers.window_days),
        customer,
    )
    balance = member["balance"]
    return {
        "customer": customer,
        "balance": balance,
        "value_minor": prog.discount_minor(max(balance, 0)),
        "currency": prog.currency,
        "pending": pending,
        "tier": member["tier"],
        "tier_progress": progress(prog.tiers, int(total or 0)) if prog.tiers.levels else None,
        "next_expiry": {"at": expiring["expires_at"], "points": expiring["points"]} if expiring else None,
        "history": [dict(e) for e in entries],
    }


async def daily(conn: asyncpg.Connection, now: dt.datetime) -> dict[str, int]:
    """The daily run (`clickmint loyalty expire`, and ingest's daily task): purchases past their hold become
    points, lots past their expiry lose what is left, tiers are recalculated."""
    activated = await activate_due(conn, now)
    expired = await expire_due(conn, now)
    async with conn.transaction():
        tiers = await recalculate_tiers(conn, now)
    forgotten = await conn.execute(
        "DELETE FROM loyalty_idempotency WHERE created_at < $1", now - dt.timedelta(days=IDEMPOTENCY_DAYS)
    )
    return {
        "lots_activated": activated,
        "points_expired": expired,
        "tier_changes": tiers,
        "idempotency_keys_forgotten": int(forgotten.split()[-1]),
    }


async def liability(conn: asyncpg.Connection, prog: Programme) -> list[dict[str, Any]]:
    """Outstanding points and their value by month of expiry (None: never expire), and points still pending."""
    rows = await conn.fetch(
        """SELECT to_char(date_trunc('month', expires_at AT TIME ZONE 'UTC'), 'YYYY-MM') AS month,
                  sum(remaining)::bigint AS points
           FROM loyalty_lots WHERE merchant_id = $1 AND status = 'active' AND remaining > 0
           GROUP BY 1 ORDER BY 1 NULLS LAST""",
        prog.merchant_id,
    )
    return [
        {"expires": r["month"], "points": r["points"], "value_minor": prog.discount_minor(r["points"])} for r in rows
    ]


async def purge_member(conn: asyncpg.Connection, merchant_id: int, customer: str, stone: str) -> dict[str, int]:
    """Privacy purge: the member becomes the tombstone, and its lots, redemptions and entries with it (the
    entries' guard lets only customer_ref change), so every balance and total stays as it was; stored checkout
    answers naming it name the tombstone."""
    if not await conn.fetchval("SELECT to_regclass('loyalty_members') IS NOT NULL"):
        return {}
    await conn.execute(  # its balance must not move meanwhile
        "SELECT 1 FROM loyalty_members WHERE merchant_id = $1 AND customer_ref = $2 FOR UPDATE", merchant_id, customer
    )
    for table in ("loyalty_lots", "loyalty_entries"):
        await conn.execute(
            f"UPDATE {table} SET customer_ref = $3 WHERE merchant_id = $1 AND customer_ref = $2",
            merchant_id,
            customer,
            stone,
        )
    members = await conn.execute(  # the redemptions follow by ON UPDATE CASCADE
        "UPDATE loyalty_members SET customer_ref = $3 WHERE merchant_id = $1 AND customer_ref = $2",
        merchant_id,
        customer,
        stone,
    )
    answers = await conn.execute(
        """UPDATE loyalty_idempotency SET response = jsonb_set(response, '{customer}', to_jsonb($3::text))
           WHERE merchant_id = $1 AND response->>'customer' = $2""",
        merchant_id,
        customer,
        stone,
    )
    return {"loyalty_members": int(members.split()[-1]), "loyalty_checkout_answers": int(answers.split()[-1])}
