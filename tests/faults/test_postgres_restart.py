"""PostgreSQL restarted during ingest: ingest waits, resumes, and nothing is lost or stored twice."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path

import asyncpg
import orjson
import pytest
import redis.asyncio as aioredis

from billing.consumer import Ingest
from billing.derive import Deriver
from billing.settings import BillingSettings
from clickmint.embedded import EmbeddedPostgres
from clickmint.migrate import migrate
from kernel.env import Env
from kernel.keys import stream_key
from kernel.settings import Settings
from tests.factories import programme

pytestmark = pytest.mark.timeout(120)
EVENTS = 20_000


async def test_ingest_survives_a_postgres_restart(settings: Settings, db: asyncpg.Connection) -> None:
    base = Path(tempfile.mkdtemp(prefix="clickmint-pgrestart-"))
    os.chmod(base, 0o755)
    postgres = EmbeddedPostgres(base, port=0)
    try:
        dsn = await asyncio.to_thread(postgres.start)
        await migrate(dsn)
        own = await asyncpg.connect(dsn)
        prog = await programme(own)
        await own.close()
        settings = replace(settings, database_url=dsn)
        redis = aioredis.Redis.from_url(settings.redis_url)
        now_ms = int(time.time() * 1000)
        async with redis.pipeline(transaction=False) as pipe:
            for i in range(EVENTS):
                event = {
                    "id": str(uuid.uuid4()),
                    "ts": now_ms - i,
                    "type": "click",
                    "link": prog.link_id,
                    "partner": prog.partner_id,
                    "offer": prog.offer_id,
                    "click_id": f"c{i}",
                    "unique": True,
                }
                pipe.xadd(stream_key(settings.key_prefix, i % settings.shards), {"d": orjson.dumps(event)})
            await pipe.execute()
        ingest = Ingest(replace(BillingSettings.from_env(Env({}), core=settings), batch=500), derive=Deriver())
        task = asyncio.create_task(ingest.run())
        while ingest.stats.events < 2000:
            await asyncio.sleep(0.01)
        await asyncio.to_thread(postgres.stop)  # mid-stream
        stored_before = ingest.stats.events
        await asyncio.sleep(1.0)
        again = EmbeddedPostgres(base, port=postgres.port)
        await asyncio.to_thread(again.start)
        postgres.proc = again.proc
        async with asyncio.timeout(60):
            while True:
                groups = [
                    (await redis.xinfo_groups(stream_key(settings.key_prefix, s)))[0] for s in range(settings.shards)
                ]
                if all(not g["pending"] and not g["lag"] for g in groups):
                    break
                await asyncio.sleep(0.1)
        ingest.stop()
        await task
        await redis.aclose()
        assert stored_before < EVENTS  # the restart really happened in the middle
        check = await asyncpg.connect(dsn)
        try:
            assert await check.fetchval("SELECT count(*) FROM events") == EVENTS
            assert await check.fetchval("SELECT count(DISTINCT id) FROM events") == EVENTS
            assert await check.fetchval("SELECT sum(clicks) FROM rollups") == EVENTS
        finally:
            await check.close()
    finally:
        postgres.stop()
        shutil.rmtree(base, ignore_errors=True)
