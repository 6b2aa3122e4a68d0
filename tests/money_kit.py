"""Events of any day put through the real ingest (stream, consumer group, COPY, derive), and what the portal
shows of money read back, for the money tests."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any

import asyncpg
import orjson
import redis.asyncio as aioredis

from billing.consumer import Ingest
from billing.derive import Deriver
from billing.settings import BillingSettings
from kernel.env import Env
from kernel.keys import stream_key
from kernel.settings import Settings
from tests.factories import Programme


def ms(at: dt.datetime) -> int:
    return int(at.timestamp() * 1000)


@dataclass
class Feeder:
    """Writes events as the tracker would (one stream entry each) and waits until ingest has stored them."""

    settings: Settings
    conn: asyncpg.Connection
    redis: aioredis.Redis
    sent: int = 0
    seq: int = 0
    shard_of: dict[int, int] = field(default_factory=dict)

    def event(self, prog: Programme, kind: str, at: dt.datetime, **fields: Any) -> dict[str, Any]:
        self.seq += 1
        event = {
            "id": str(uuid.UUID(int=(ms(at) << 64) | self.seq, version=4)),
            "ts": ms(at),
            "type": kind,
            "link": prog.link_id,
            "partner": prog.partner_id,
            "offer": prog.offer_id,
            "country": fields.pop("country", "DE"),
            "ip": "203.0.113.0",
        }
        if kind == "click":
            event["click_id"] = fields.pop("click_id", f"c{self.seq:037d}")
            event["unique"] = fields.pop("unique", True)
        elif kind in ("action", "purchase", "refund"):
            event["via"] = "postback"  # as a signed server-to-server postback sends it
        event.update(fields)
        return event

    async def send(self, *events: dict[str, Any], again: bool = False) -> None:
        """Append the events (`again`: a second time, as a replayed spool would) and wait until stored."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for event in events:
                shard = (event.get("link") or 0) % self.settings.shards
                pipe.xadd(stream_key(self.settings.key_prefix, shard), {"d": orjson.dumps(event)})
            await pipe.execute()
        if not again:
            self.sent += len(events)
        async with asyncio.timeout(30):
            while await self._pending():
                await asyncio.sleep(0.02)

    async def _pending(self) -> bool:
        if await self.conn.fetchval("SELECT count(*) FROM events") < self.sent:
            return True
        for shard in range(self.settings.shards):
            groups = await self.redis.xinfo_groups(stream_key(self.settings.key_prefix, shard))
            if groups and (groups[0]["pending"] or groups[0]["lag"]):
                return True
        return False


@contextlib.asynccontextmanager
async def feeder(settings: Settings, conn: asyncpg.Connection, workers: int = 1) -> AsyncIterator[Feeder]:
    """Ingest running in this process (one or more consumers) for the block; a Feeder to send events to it."""
    redis = aioredis.Redis.from_url(settings.redis_url or "")
    base = BillingSettings.from_env(Env({"CLICKMINT_INGEST_LINGER_MS": "0"}), core=settings)
    ingests = [Ingest(replace(base, consumer=f"test-{i}"), derive=Deriver()) for i in range(workers)]
    tasks = [asyncio.create_task(ingest.run()) for ingest in ingests]
    try:
        yield Feeder(settings, conn, redis)
    finally:
        for ingest in ingests:
            ingest.stop()
        await asyncio.gather(*tasks)
        await redis.aclose()
