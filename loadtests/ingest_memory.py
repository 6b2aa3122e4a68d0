"""`python -m loadtests.ingest_memory`: does ingest's memory grow under a steady trickle, and is it a leak?

Runs billing ingest in this process against embedded (or configured) servers while a producer appends
realistic events at `--rate` per second, spread like the tracker spreads them, and prints the process's
RSS every 30 s. At the end it calls glibc's malloc_trim: what RSS drops by is memory that was freed and
kept by the allocator, not memory anything still holds. With `--trim-every S`, ingest's own periodic
trim (billing.runner.release_freed_memory) runs as it does under `clickmint ingest`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import time
from dataclasses import replace

import asyncpg
import orjson
import psutil

from billing.consumer import Ingest
from billing.derive import Deriver
from billing.runner import release_freed_memory
from billing.settings import BillingSettings
from kernel.env import Env
from kernel.keys import stream_key
from kernel.redis.resp import RespConnection, pack
from kernel.settings import Settings
from loadtests.ingest_bench import PREFIX, _more_links, make_events
from loadtests.servers import Servers, seed_link
from tracker.ids import uuid7
from tracker.snapshot import shard_of

SHARDS = 4


async def measure(servers: Servers, rate: int, seconds: float, trim_every: float) -> dict[str, float]:
    seeded = await seed_link(servers.database_url)
    db = await asyncpg.connect(servers.database_url)
    plan = '{"cps_percent": "10", "cpa": {"signup": 150}}'
    await db.execute("UPDATE offers SET fee_plan = $1 WHERE id = $2", plan, seeded.offer_id)
    links = await _more_links(db, seeded.offer_id, seeded.merchant_id, 99)
    links.append((seeded.link_id, seeded.partner_id))
    await db.close()
    core = Settings.from_env(Env({"CLICKMINT_SECRET_KEY": "m" * 40, "CLICKMINT_DATA_DIR": str(servers.base)}))
    core = replace(
        core, redis_url=servers.redis_url, database_url=servers.database_url, shards=SHARDS, key_prefix=PREFIX
    )
    ingest = Ingest(replace(BillingSettings.from_env(Env({}), core=core), metrics_port=0), derive=Deriver())
    task = asyncio.create_task(ingest.run())
    stop = asyncio.Event()
    trimmer = asyncio.create_task(release_freed_memory(stop, trim_every)) if trim_every else None
    conn = RespConnection(servers.redis_url)
    await conn.connect()
    proc = psutil.Process()
    pool = make_events(20_000, links, seeded.offer_id, int(time.time() * 1000))
    per_tick = max(1, rate // 100)
    started = time.monotonic()
    sent, report_at, rss_warm = 0, 30.0, 0.0
    while (elapsed := time.monotonic() - started) < seconds:
        batch = []
        for _ in range(per_tick):
            event = dict(pool[sent % len(pool)])
            now_ms = int(time.time() * 1000)
            event["id"], event["ts"] = uuid7(now_ms), now_ms
            if "order_id" in event:
                event["order_id"] = f"{event['order_id']}-{sent}"
            shard = shard_of(int(event["link"]), SHARDS)  # type: ignore[call-overload]
            batch.append(pack(b"XADD", stream_key(PREFIX, shard), b"*", b"d", orjson.dumps(event)))
            sent += 1
        await conn.execute(batch)
        await asyncio.sleep(0.01)
        if elapsed >= report_at:
            rss = proc.memory_info().rss / 2**20
            rss_warm = rss_warm or rss
            print(f"{elapsed:6.0f} s  sent {sent:>8,}  stored {ingest.stats.events:>8,}  batches "
                  f"{ingest.stats.batches:>7,}  RSS {rss:6.1f} MB", flush=True)  # fmt: skip
            report_at += 30
    rss_end = proc.memory_info().rss / 2**20
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    rss_trimmed = proc.memory_info().rss / 2**20
    stop.set()
    ingest.stop()
    await asyncio.gather(task, *([trimmer] if trimmer else []))
    await conn.close()
    return {
        "rate": rate,
        "seconds": seconds,
        "events": ingest.stats.events,
        "batches": ingest.stats.batches,
        "rss_at_30s_mb": round(rss_warm, 1),
        "rss_end_mb": round(rss_end, 1),
        "rss_after_malloc_trim_mb": round(rss_trimmed, 1),
        "trim_every_s": trim_every,
    }


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.ingest_memory", description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=300, help="events per second")
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--trim-every", type=float, default=0.0, help="ingest's periodic trim (0: off)")
    args = parser.parse_args()
    servers = Servers.open()
    try:
        figures = asyncio.run(measure(servers, args.rate, args.seconds, args.trim_every))
    finally:
        servers.close()
    print(orjson.dumps(figures).decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
