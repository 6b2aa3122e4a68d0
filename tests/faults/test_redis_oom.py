"""Redis out of memory (a small maxmemory, noeviction): every click is still answered, the events go to
the spool, and once Redis has room again they are replayed: every event in PostgreSQL exactly once."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import asyncpg
import pytest
import redis.asyncio as aioredis

from clickmint.embedded import EmbeddedValkey
from kernel.settings import Settings
from tests.factories import programme
from tests.faults.test_redis_outage import own_valkey  # noqa: F401  (the fixture)
from tests.helpers import drain, tracker_client

pytestmark = pytest.mark.timeout(120)


async def test_redis_out_of_memory_spools_then_replays(
    settings: Settings,
    db: asyncpg.Connection,
    own_valkey: tuple[EmbeddedValkey, Path],  # noqa: F811
) -> None:
    valkey, _ = own_valkey
    settings = replace(settings, redis_url=valkey.url, shards=2)
    prog = await programme(db)
    redis = aioredis.Redis.from_url(valkey.url)
    answered: list[str] = []
    async with tracker_client(settings) as (app, client):
        for i in range(20):  # some clicks while Redis has room
            response = await client.get(f"/c/{prog.code}", headers={"user-agent": f"Mozilla/5.0 a{i}"})
            answered.append(parse_qs(urlsplit(response.headers["location"]).query)["cid"][0])
        used = int((await redis.info("memory"))["used_memory"])
        await redis.config_set("maxmemory-policy", "noeviction")
        await redis.config_set("maxmemory", str(used + 256 * 1024))
        filler = b"x" * 4096
        with pytest.raises(aioredis.ResponseError, match="maxmemory"):
            for n in range(10_000):  # fill it up until Redis refuses writes
                await redis.set(f"filler:{n}", filler)
        spooled_before = app.recorder.stats.events_spooled
        statuses = []
        for i in range(200):
            response = await client.get(f"/c/{prog.code}", headers={"user-agent": f"Mozilla/5.0 b{i}"})
            statuses.append(response.status_code)
            answered.append(parse_qs(urlsplit(response.headers["location"]).query)["cid"][0])
        assert set(statuses) == {302}
        # Batches Redis refuses go to the spool (Redis may take one now and then as its memory use wavers).
        assert app.recorder.stats.events_spooled - spooled_before > 100
        assert app.recorder.spool.depth() > 0
        await redis.config_set("maxmemory", "0")  # room again: the spool drains by itself
        started = time.monotonic()
        while app.recorder.spool.depth() > 0:
            assert time.monotonic() - started < 20, "the spool was not replayed"
            await asyncio.sleep(0.05)
    await redis.aclose()
    await drain(settings, len(answered), db, timeout=30)
    assert await db.fetchval("SELECT count(*) FROM events") == len(answered) == 220
    assert await db.fetchval("SELECT count(DISTINCT click_id) FROM events") == 220
