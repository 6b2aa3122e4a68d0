"""Loyalty earning through ingest's derive step: once per event and rule, pending until the hold ends,
cancelled or reversed by refunds under the merchant's policy, expired FIFO."""

from __future__ import annotations

import datetime as dt

import asyncpg
import pytest

from billing import loyalty_ledger as ledger
from billing.derive import Deriver
from tests.loyalty_kit import START, action, balance, check_invariants, ingest, refund, sale, shop

LATER = START + dt.timedelta(days=31)  # past the 30-day hold


async def _lots(db: asyncpg.Connection) -> list[dict]:
    return [
        dict(r)
        for r in await db.fetch("SELECT rule, points, cancelled, remaining, status FROM loyalty_lots ORDER BY id")
    ]


async def test_a_purchase_earns_once_pending_until_the_hold_ends(db: asyncpg.Connection):
    prog = await shop(db)
    deriver = Deriver()
    event = sale(prog, "cust-1", "o1", 12_345)  # 123.45 USD: 123 points at 1 point per 1.00
    await ingest(db, deriver, event)
    await ingest(db, deriver, event)  # a replay of the same event
    await ingest(db, deriver, sale(prog, "cust-1", "o1", 12_345))  # the same order again, another event id
    assert await _lots(db) == [{"rule": "base", "points": 123, "cancelled": 0, "remaining": 0, "status": "pending"}]
    assert await balance(db, prog, "cust-1") == 0
    assert await ledger.activate_due(db, START + dt.timedelta(days=29)) == 0
    assert await ledger.activate_due(db, LATER) == 1
    assert await ledger.activate_due(db, LATER) == 0
    assert await balance(db, prog, "cust-1") == 123
    await check_invariants(db)


async def test_what_earns_nothing(db: asyncpg.Connection):
    prog = await shop(db)
    off = await shop(db, enabled=False)
    deriver = Deriver()
    await ingest(
        db,
        deriver,
        sale(prog, "pixel", "o1", 10_000, via="pixel", auth="none"),  # a pixel proves nothing: anyone can fire it
        sale(prog, "eur", "o2", 10_000, currency="EUR"),  # not the programme's currency
        sale(prog, "", "o3", 10_000),  # no customer
        sale(off, "cust", "o4", 10_000),  # programme off
        action(prog, "cust", "unknown-action"),  # no rule for it
    )
    assert await db.fetchval("SELECT count(*) FROM loyalty_lots") == 0
    assert await db.fetchval("SELECT count(*) FROM loyalty_members") == 0


async def test_an_action_earns_at_once_and_unattributed_sales_earn(db: asyncpg.Connection):
    prog = await shop(db)
    deriver = Deriver()
    await ingest(db, deriver, action(prog, "c", "signup"), sale(prog, "c", "o9", 500, link=None, partner=None))
    assert await balance(db, prog, "c") == 50
    status = await db.fetchval("SELECT reason FROM conversions WHERE order_id = 'o9'")
    assert status == "unattributed"
    assert [lot["status"] for lot in await _lots(db)] == ["active", "pending"]
    await check_invariants(db)


@pytest.mark.parametrize("split", [False, True])
async def test_a_refund_within_the_hold_cancels_its_share(db: asyncpg.Connection, split: bool):
    prog = await shop(db)
    deriver = Deriver()
    await ingest(db, deriver, sale(prog, "c", "o1", 10_000))  # 100 points pending
    if split:  # 33.33 then 33.33: the cumulative share, rounded down once each time: 33 then 66
        await ingest(db, deriver, refund(prog, "o1", 3_333, START + dt.timedelta(days=1)))
        await ingest(db, deriver, refund(prog, "o1", 3_333, START + dt.timedelta(days=2)))
        expected = 66
    else:
        await ingest(db, deriver, refund(prog, "o1", 10_000, START + dt.timedelta(days=1)))
        expected = 100
    assert (await _lots(db))[0]["cancelled"] == expected
    await ledger.activate_due(db, LATER)
    assert await balance(db, prog, "c") == 100 - expected
    assert (await _lots(db))[0]["status"] == ("active" if split else "cancelled")
    assert await db.fetchval("SELECT count(*) FROM loyalty_entries WHERE kind = 'earn'") == (1 if split else 0)
    await check_invariants(db)


@pytest.mark.parametrize(("policy", "after"), [("clamp", 0), ("negative", -80)])
async def test_a_refund_after_spending_follows_the_policy(db: asyncpg.Connection, policy: str, after: int):
    prog = await shop(db, policy=policy)
    deriver = Deriver()
    await ingest(db, deriver, sale(prog, "c", "o1", 10_000))
    await ledger.activate_due(db, LATER)
    member = await ledger.lock_member(db, prog.merchant_id, "c")
    async with db.transaction():
        await ledger.take_fifo(db, member, 80, "spend", "spend:test", LATER)
    assert await balance(db, prog, "c") == 20
    # The whole sale refunded after approval: 100 points back; 20 unspent, 80 spent.
    await ingest(db, deriver, refund(prog, "o1", 10_000, LATER + dt.timedelta(days=1)))
    assert await balance(db, prog, "c") == after
    assert await db.fetchval("SELECT debt FROM loyalty_members") == -after
    await check_invariants(db)
    # A member in debt pays it off from the next points earned.
    await ingest(db, deriver, action(prog, "c", "signup", LATER + dt.timedelta(days=2)))
    assert await balance(db, prog, "c") == after + 50
    await check_invariants(db)


async def test_expiry_takes_the_oldest_lots_first(db: asyncpg.Connection):
    prog = await shop(db, expiry_days=10)
    deriver = Deriver()
    await ingest(db, deriver, action(prog, "c", "signup", START))  # expires START + 10 days
    await ingest(db, deriver, action(prog, "c", "signup", START + dt.timedelta(days=5)))  # + 15 days
    member = await ledger.lock_member(db, prog.merchant_id, "c")
    async with db.transaction():
        taken = await ledger.take_fifo(db, member, 70, "spend", "spend:x", START + dt.timedelta(days=6))
    assert [points for _, points in taken] == [50, 20]  # the oldest lot first
    assert await ledger.expire_due(db, START + dt.timedelta(days=11)) == 0  # the first lot is spent
    assert await ledger.expire_due(db, START + dt.timedelta(days=16)) == 30
    assert await ledger.expire_due(db, START + dt.timedelta(days=17)) == 0
    assert await balance(db, prog, "c") == 0
    await check_invariants(db)


async def test_skus_offers_campaigns_and_tiers(db: asyncpg.Connection):
    rules = {
        "unit_minor": 100,
        "points_per_unit": 1,
        "skus": {"TEA": {"unit_minor": 100, "points_per_unit": 5}},
        "campaigns": [
            {"name": "June", "multiplier": "2", "starts_at": "2026-06-01T00:00:00Z", "ends_at": "2026-07-01T00:00:00Z"}
        ],
    }
    tiers = {"basis": "points", "window_days": 365, "levels": [{"name": "Gold", "min": 100, "multiplier": "1.5"}]}
    prog = await shop(db, rules=rules, tiers=tiers)
    deriver = Deriver()
    items = [{"sku": "TEA", "qty": 2, "price": 1_000}, {"sku": "CUP", "qty": 1, "price": 3_000}]
    await ingest(db, deriver, sale(prog, "c", "o1", 5_000, items=items))
    # TEA: 20.00 * 5 * 2 (June) = 200; the rest, 30.00 * 1 * 2 = 60.
    assert [(lot["rule"], lot["points"]) for lot in await _lots(db)] == [("sku:TEA", 200), ("base", 60)]
    await ledger.activate_due(db, LATER)
    assert await ledger.recalculate_tiers(db, LATER) == 1
    assert await db.fetchval("SELECT tier FROM loyalty_members") == "Gold"
    await ingest(db, deriver, sale(prog, "c", "o2", 1_000, at=LATER))  # July: no campaign; Gold 1.5x: 15
    assert (await _lots(db))[-1]["points"] == 15
    await check_invariants(db)


async def test_entries_are_append_only(db: asyncpg.Connection):
    prog = await shop(db)
    await ingest(db, Deriver(), action(prog, "c", "signup"))
    with pytest.raises(asyncpg.IntegrityConstraintViolationError):
        await db.execute("UPDATE loyalty_entries SET points = 1000")
    with pytest.raises(asyncpg.IntegrityConstraintViolationError):
        await db.execute("DELETE FROM loyalty_entries")


async def test_ingest_runs_activation_and_expiry_by_itself(db: asyncpg.Connection, servers):
    import asyncio

    from billing import loyalty_daily

    prog = await shop(db, hold_days=0)
    await ingest(db, Deriver(), sale(prog, "c", "o1", 1_000, at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)))
    stop = asyncio.Event()
    task = asyncio.create_task(loyalty_daily.run_periodically(servers.database_url, stop, first_delay_s=0.01))
    for _ in range(500):
        if await balance(db, prog, "c") == 10:
            break
        await asyncio.sleep(0.02)
    stop.set()
    await task
    assert await balance(db, prog, "c") == 10


async def test_the_daily_run_forgets_idempotency_keys_after_30_days(db: asyncpg.Connection):
    prog = await shop(db)
    now = dt.datetime.now(dt.UTC)
    for key, age in (("old", 31), ("young", 29)):
        await db.execute(
            """INSERT INTO loyalty_idempotency (merchant_id, key, request_sha256, status, response, created_at)
               VALUES ($1, $2, 'x', 201, '{}', $3)""",
            prog.merchant_id,
            key,
            now - dt.timedelta(days=age),
        )
    done = await ledger.daily(db, now)
    assert done["idempotency_keys_forgotten"] == 1
    assert [r["key"] for r in await db.fetch("SELECT key FROM loyalty_idempotency")] == ["young"]
