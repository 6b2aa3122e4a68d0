"""kill -9 of ingest at random points, and between COMMIT and XACK, over 100,000 events: 0 lost, 0 paid twice."""

from __future__ import annotations

import datetime as dt
import os
import random
import signal
import subprocess
import sys
import time
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


def _ingest(settings: Settings, crash_after: int = 0) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLICKMINT_")}
    env.update(
        CLICKMINT_REDIS_URL=settings.redis_url or "",
        CLICKMINT_DATABASE_URL=settings.database_url or "",
        CLICKMINT_KEY_PREFIX=settings.key_prefix,
        CLICKMINT_SHARDS=str(settings.shards),
        CLICKMINT_SECRET_KEY=settings.secret_key,
        CLICKMINT_DATA_DIR=str(settings.data_dir),
        CLICKMINT_INGEST_BATCH="500",
        CLICKMINT_CONSUMER_NAME="killable",
        CLICKMINT_CLAIM_IDLE_MS="1000",
        CLICKMINT_FAULT_CRASH_AFTER_COMMIT=str(crash_after),
    )
    return subprocess.Popen(
        [sys.executable, "-m", "clickmint", "ingest"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


async def _drained(redis: aioredis.Redis, settings: Settings) -> bool:
    for shard in range(settings.shards):
        key = stream_key(settings.key_prefix, shard)
        group = next(iter(await redis.xinfo_groups(key)), None)
        if group is None or group["pending"] or group["lag"]:
            return False
    return True


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

    rng = random.Random(SEED)
    kills = crashes_after_commit = 0
    deadline = time.monotonic() + 240
    while not await _drained(redis, settings):
        assert time.monotonic() < deadline, "ingest did not finish"
        crash_after = rng.choice([0, 0, 1, 2, 3])  # some runs die exactly between COMMIT and XACK
        proc = _ingest(settings, crash_after)
        try:
            proc.wait(timeout=rng.uniform(0.3, 1.2))
            crashes_after_commit += proc.returncode == 137
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
    await redis.aclose()
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
