"""Exactly once: a duplicate storm with two workers, the trim policy with a lagging consumer, and
conservation of money over seeded random histories with refunds, late events and period closes."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import uuid
from dataclasses import replace
from fractions import Fraction
from typing import Any

import asyncpg
import orjson
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from billing.consumer import Ingest, trim
from billing.derive import Deriver
from billing.settings import BillingSettings
from billing.settle import settle
from kernel.env import Env
from kernel.keys import stream_key
from kernel.redis.client import Redis
from kernel.settings import Settings
from tests.conftest import Servers
from tests.factories import programme


def _purchase(prog: Any, ts: int, order: str, amount: int, rng: random.Random) -> dict[str, Any]:
    return {
        "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "ts": ts,
        "type": "purchase",
        "link": prog.link_id,
        "partner": prog.partner_id,
        "offer": prog.offer_id,
        "click_id": "k" * 38,
        "order_id": order,
        "amount": amount,
        "currency": "USD",
        "via": "postback",  # a signed postback: the only kind of source whose refunds count
        "auth": "signature",
    }


async def test_duplicate_storm_with_two_workers(settings: Settings, db: asyncpg.Connection) -> None:
    prog = await programme(db, fee_plan={"cps_percent": "10"})
    await db.execute("UPDATE offers SET hold_days = 0")
    rng = random.Random(7)
    now_ms = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    sales = [_purchase(prog, now_ms - 10_000 + i, f"o{i}", rng.randint(1, 50_000), rng) for i in range(3000)]
    redis = aioredis.Redis.from_url(settings.redis_url)
    async with redis.pipeline(transaction=False) as pipe:
        for copy in range(3):  # every entry three times, on different shards: a replayed spool, a second tracker
            for i, event in enumerate(sales):
                pipe.xadd(stream_key(settings.key_prefix, (i + copy) % settings.shards), {"d": orjson.dumps(event)})
        await pipe.execute()
    workers = [
        Ingest(replace(BillingSettings.from_env(Env({}), core=settings), consumer=name, batch=200), derive=Deriver())
        for name in ("worker-a", "worker-b")
    ]
    tasks = [asyncio.create_task(w.run()) for w in workers]
    try:
        async with asyncio.timeout(60):
            while True:
                groups = [await redis.xinfo_groups(stream_key(settings.key_prefix, s)) for s in range(settings.shards)]
                if all(g and not g[0]["pending"] and not g[0]["lag"] for g in groups):
                    break
                await asyncio.sleep(0.1)
    finally:
        for worker in workers:
            worker.stop()
        await asyncio.gather(*tasks)
        await redis.aclose()
    assert all(w.stats.events > 0 for w in workers)  # both took part
    assert await db.fetchval("SELECT count(*) FROM events") == 3000
    assert await db.fetchval("SELECT count(*) FROM conversions") == 3000
    await settle(db, f"{dt.datetime.now(dt.UTC):%Y-%m}", now=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1))
    assert await db.fetchval("SELECT count(*) FROM ledger_lines") == 3000
    assert await db.fetchval("SELECT count(DISTINCT source) FROM ledger_lines") == 3000


async def test_trim_never_drops_a_pending_or_undelivered_entry(settings: Settings, db: asyncpg.Connection) -> None:
    redis = aioredis.Redis.from_url(settings.redis_url)
    key = stream_key(settings.key_prefix, 0)
    await redis.xgroup_create(key, "billing", id="0", mkstream=True)
    ids = [await redis.xadd(key, {"d": b"{}"}) for _ in range(10)]
    delivered = await redis.xreadgroup("billing", "lagger", {key: ">"}, count=6)
    assert len(delivered[0][1]) == 6
    await redis.xack(key, "billing", *ids[:2])  # 2 acked, 4 pending, 4 never delivered
    client = Redis(settings.redis_url)  # the client ingest trims with
    await trim(client, key, retention_s=0)
    remaining = [entry_id for entry_id, _ in await redis.xrange(key)]
    assert remaining == ids[2:]  # only the acknowledged entries went
    await redis.xack(key, "billing", *ids[2:6])
    await trim(client, key, retention_s=0)
    assert [entry_id for entry_id, _ in await redis.xrange(key)] == ids[5:]  # the last delivered and the undelivered
    await redis.aclose()
    await client.close()


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("sale"), st.integers(1, 100_000)),
        st.tuples(st.just("refund"), st.integers(0, 30), st.integers(1, 100_000)),
        st.tuples(st.just("close")),
    ),
    min_size=1,
    max_size=25,
)


@hsettings(
    max_examples=12, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=OPS)
async def test_conservation_over_random_histories(servers: Servers, ops: list[tuple[Any, ...]]) -> None:
    conn = await asyncpg.connect(servers.database_url)
    try:
        await conn.execute(
            "TRUNCATE events, conversions, commissions, refunds, rollup_totals, rollup_deltas, rollup_actions, "
            "rollup_bots, customers, "
            "ledger_lines, ledger_splits, ledger_line_events, statements, offers, links, partners, partner_programmes, "
            "merchants, prices, "
            "offer_partner_plans RESTART IDENTITY CASCADE"
        )
        prog = await programme(conn, fee_plan={"cps_percent": "7.5"})
        await conn.execute("UPDATE offers SET hold_days = 0")
        await conn.execute("UPDATE partners SET min_payout_minor = 5000")
        deriver, rng = Deriver(), random.Random(len(ops))
        month = dt.date(2025, 1, 1)
        sales: list[tuple[str, int]] = []
        refunded: dict[str, int] = {}
        for i, op in enumerate(ops):
            at = dt.datetime.combine(month, dt.time(), dt.UTC) + dt.timedelta(hours=i + 1)
            ts = int(at.timestamp() * 1000)
            if op[0] == "sale":
                event = _purchase(prog, ts, f"order-{i}", op[1], rng)
                sales.append((event["order_id"], op[1]))
            elif op[0] == "refund" and sales:
                order, amount = sales[op[1] % len(sales)]
                event = {**_purchase(prog, ts, order, min(op[2], amount), rng), "type": "refund"}
            else:
                await settle(conn, f"{month:%Y-%m}", now=at, close=False)
                month = (month.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
                await settle(
                    conn, f"{(month - dt.timedelta(days=1)):%Y-%m}", now=dt.datetime.combine(month, dt.time(), dt.UTC)
                )
                continue
            async with conn.transaction():
                await deriver(conn, [event])
            if event["type"] == "refund":
                refunded[event["order_id"]] = min(
                    refunded.get(event["order_id"], 0) + event["amount"], dict(sales)[event["order_id"]]
                )
        end = dt.datetime.combine(month, dt.time(), dt.UTC) + dt.timedelta(days=40)
        await settle(conn, f"{month:%Y-%m}", now=end)
        # Independent computation with Fraction: 7.5% of each sale rounded half-even once; refunds take back the
        # refunded share of it, rounded once on the cumulative refunded amount (so the reversals telescope).
        expected = 0
        for order, amount in sales:
            commission = round(Fraction(75, 1000) * amount)
            expected += commission - round(Fraction(commission * refunded.get(order, 0), amount))
        ledger = await conn.fetch("SELECT source, kind, amount_minor, statement_id FROM ledger_lines")
        statements = await conn.fetch("SELECT * FROM statements ORDER BY period_start")
        total_lines = sum(r["amount_minor"] for r in ledger)
        assert total_lines == expected
        assert all(r["statement_id"] is not None for r in ledger)
        by_statement: dict[int, int] = {}
        for r in ledger:
            by_statement[r["statement_id"]] = by_statement.get(r["statement_id"], 0) + r["amount_minor"]
        carried = 0
        for statement in statements:
            if statement["status"] == "open":
                continue
            assert statement["carried_in_minor"] == carried
            assert statement["total_minor"] == carried + by_statement.get(statement["id"], 0)
            carried = statement["carried_out_minor"]
        assert sum(by_statement.values()) == total_lines
    finally:
        await conn.close()
