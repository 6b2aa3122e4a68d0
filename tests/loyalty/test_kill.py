"""kill -9 of ingest during earning (and between COMMIT and XACK): every earning once, every balance exact."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections import Counter

import asyncpg
import orjson
import pytest
import redis.asyncio as aioredis

from billing import loyalty_ledger as ledger
from kernel.keys import stream_key
from kernel.settings import Settings
from tests.kill_loop import kill_until_drained
from tests.loyalty_kit import check_invariants, shop

pytestmark = pytest.mark.timeout(300)
EVENTS = 20_000
SEED = 20261207
CUSTOMERS = [f"cust-{i}" for i in range(50)]


def _events(prog, now_ms: int) -> list[dict[str, object]]:
    rng = random.Random(SEED)
    out: list[dict[str, object]] = []
    for i in range(EVENTS):
        event: dict[str, object] = {
            "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "ts": now_ms - (EVENTS - i),
            "link": prog.link_id,
            "partner": prog.partner_id,
            "offer": prog.offer_id,
            "country": "DE",
        }
        if i % 5 == 0:  # a sale by a customer, by signed postback
            event |= {
                "type": "purchase",
                "click_id": "k" * 38,
                "order_id": f"o{i}",
                "amount": rng.randint(100, 50_000),
                "currency": "USD",
                "customer": rng.choice(CUSTOMERS),
                "via": "postback",
                "auth": "signature",
            }
        elif i % 5 == 1:  # a signup, which earns at once
            event |= {
                "type": "action",
                "action": "signup",
                "customer": rng.choice(CUSTOMERS),
                "via": "postback",
                "auth": "signature",
            }
        else:
            event |= {"type": "click", "click_id": f"c{i}", "unique": True, "bot": None}
        out.append(event)
    return out


async def test_kill_9_during_earning_earns_each_once(settings: Settings, db: asyncpg.Connection) -> None:
    prog = await shop(db, hold_days=0)
    now = dt.datetime.now(dt.UTC)
    events = _events(prog, int(now.timestamp() * 1000))
    redis = aioredis.Redis.from_url(settings.redis_url)
    for shard in range(settings.shards):
        await redis.xgroup_create(stream_key(settings.key_prefix, shard), "billing", id="0", mkstream=True)
    async with redis.pipeline(transaction=False) as pipe:
        for event in events:
            pipe.xadd(stream_key(settings.key_prefix, random.randrange(settings.shards)), {"d": orjson.dumps(event)})
        await pipe.execute()
    await redis.aclose()
    kills, crashes_after_commit = await kill_until_drained(settings, random.Random(SEED))
    assert kills + crashes_after_commit >= 3
    assert await db.fetchval("SELECT count(*) FROM events") == EVENTS

    await ledger.activate_due(db, now + dt.timedelta(minutes=1))
    sales = [e for e in events if e["type"] == "purchase"]
    actions = [e for e in events if e["type"] == "action"]
    assert await db.fetchval("SELECT count(*) FROM loyalty_lots") == len(sales) + len(actions)
    assert await db.fetchval("SELECT count(DISTINCT source) FROM loyalty_lots") == len(sales) + len(actions)
    assert await db.fetchval("SELECT count(*) FROM loyalty_entries WHERE kind = 'earn'") == len(sales) + len(actions)
    expected: Counter[str] = Counter()
    for e in sales:
        expected[str(e["customer"])] += int(e["amount"]) // 100  # type: ignore[call-overload]
    for e in actions:
        expected[str(e["customer"])] += 50
    balances = await check_invariants(db)
    assert {c: b for (_, c), b in balances.items()} == dict(expected)
