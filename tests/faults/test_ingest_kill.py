"""kill -9 of ingest at random points of its work, and between COMMIT and XACK, over 100,000 events: 0 lost,
0 paid twice (the loop: tests/kill_loop.py)."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from decimal import ROUND_HALF_EVEN, Decimal

import asyncpg
import orjson
import pytest
import redis.asyncio as aioredis

from billing.settle import settle
from kernel.keys import stream_key
from kernel.settings import Settings
from tests.factories import programme
from tests.kill_loop import kill_until_drained

pytestmark = pytest.mark.timeout(300)
EVENTS = 100_000
SALE_EVERY = 10  # one purchase per ten events
SEED = 20261124


def _events(link: int, partner: int, offer: int, now_ms: int) -> list[dict[str, object]]:
    rng = random.Random(SEED)
    out: list[dict[str, object]] = []
    for i in range(EVENTS):
        ts = now_ms - (EVENTS - i)
        event_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        if i % SALE_EVERY == SALE_EVERY - 1:
            out.append(
                {
                    "id": event_id,
                    "ts": ts,
                    "type": "purchase",
                    "link": link,
                    "partner": partner,
                    "offer": offer,
                    "click_id": "k" * 38,
                    "order_id": f"order-{i}",
                    "amount": rng.randint(100, 99_999),
                    "currency": "USD",
                    "country": "DE",
                    "ip": "203.0.113.0",
                }
            )
        else:
            out.append(
                {
                    "id": event_id,
                    "ts": ts,
                    "type": "click",
                    "link": link,
                    "partner": partner,
                    "offer": offer,
                    "click_id": f"c{i}",
                    "unique": True,
                    "bot": None,
                    "country": "DE",
                    "ip": "203.0.113.0",
                    "sub1": "s",
                }
            )
    return out


async def test_kill_9_loop_loses_nothing_and_pays_nothing_twice(settings: Settings, db: asyncpg.Connection) -> None:
    prog = await programme(db, fee_plan={"cps_percent": "10"})
    await db.execute("UPDATE offers SET hold_days = 0")
    now = dt.datetime.now(dt.UTC)
    events = _events(prog.link_id, prog.partner_id, prog.offer_id, int(now.timestamp() * 1000))
    redis = aioredis.Redis.from_url(settings.redis_url)
    for shard in range(settings.shards):
        await redis.xgroup_create(stream_key(settings.key_prefix, shard), "billing", id="0", mkstream=True)
    for start in range(0, EVENTS, 5000):
        async with redis.pipeline(transaction=False) as pipe:
            for event in events[start : start + 5000]:
                pipe.xadd(
                    stream_key(settings.key_prefix, random.randrange(settings.shards)), {"d": orjson.dumps(event)}
                )
            await pipe.execute()

    await redis.aclose()
    kills, crashes_after_commit = await kill_until_drained(settings, random.Random(SEED))
    assert kills + crashes_after_commit >= 5

    assert await db.fetchval("SELECT count(*) FROM events") == EVENTS
    assert await db.fetchval("SELECT count(DISTINCT id) FROM events") == EVENTS
    rollup = await db.fetchrow("SELECT sum(clicks) AS clicks, sum(sales) AS sales FROM rollups")
    assert rollup["clicks"] == EVENTS - EVENTS // SALE_EVERY and rollup["sales"] == EVENTS // SALE_EVERY

    report = await settle(db, f"{now:%Y-%m}", now=now + dt.timedelta(seconds=5), close=False)
    assert report.ledger.approved == EVENTS // SALE_EVERY
    expected = sum(
        int((Decimal(e["amount"]) / 10).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))  # type: ignore[arg-type]
        for e in events
        if e["type"] == "purchase"
    )
    assert await db.fetchval("SELECT sum(amount_minor) FROM ledger_lines") == expected
    assert await db.fetchval("SELECT count(*) FROM ledger_lines") == EVENTS // SALE_EVERY
