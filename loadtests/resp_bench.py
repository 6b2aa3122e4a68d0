"""The hand-written RESP client against redis-py, on the two hot paths that use it (issue 17).

    python -m loadtests.bench resp [--rounds 1500] [--batch 64] [--entries 50000]

Same Valkey, same process, one after the other, each measured twice (the better run kept):
- **tracker shape**: pipelines of `--batch` XADDs of a ~300-byte event (what the Recorder sends per
  group commit), through the raw RespConnection, through kernel/redis/client.py's Redis (the one
  client of tracker and ingest, here deciding "single server" in auto mode), and through a redis-py
  pipeline (transaction=False);
- **ingest shape**: reading `--entries` entries in pages of 5,000 (XRANGE, the reply XREADGROUP gives),
  raw against redis-py.

Figures are the client's CPU time per command or entry (time.process_time: what the tracker's or
ingest's core spends), with the wall time beside; ratios are redis-py / raw and the one client / raw.
Redis: CLICKMINT_REDIS_URL when set (keys `benchresp:*`, removed afterwards), else an embedded Valkey.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import redis.asyncio as aioredis

from clickmint.embedded import EmbeddedValkey
from kernel.redis.client import Redis
from kernel.redis.resp import RespConnection, pack
from kernel.redis.scripts import xadd_command
from loadtests.report import finish

PREFIX = "benchresp"
PAYLOAD = (
    b'{"type":"click","id":"0190f3a2-7c1e-7b3a-9f00-5e2d1c0b9a88","ts":1733500000123,"link_id":4711,'
    b'"offer_id":17,"partner_id":230,"country":"DE","ua":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36",'
    b'"ip":"203.0.113.0","sub1":"spring-sale","sub2":"banner-a","referer":"https://news.example.org/a/1"}'
)


async def _timed(work: Callable[[], Awaitable[int]]) -> tuple[float, float, int]:
    """(CPU s, wall s, items) of one run."""
    cpu, wall = time.process_time(), time.perf_counter()
    items = await work()
    return time.process_time() - cpu, time.perf_counter() - wall, items


async def _best(work: Callable[[], Awaitable[int]], repeat: int = 2) -> tuple[float, float]:
    """The better of `repeat` runs: µs of CPU and of wall time per item."""
    runs = [await _timed(work) for _ in range(repeat)]
    cpu, wall, items = min(runs)
    return cpu / items * 1e6, wall / items * 1e6


async def measure(url: str, rounds: int, batch: int, entries: int) -> dict[str, float]:
    stream = f"{PREFIX}:events:{{0}}".encode()
    raw = RespConnection(url)
    await raw.connect()
    one = Redis(url)
    await one.connect()
    py = aioredis.Redis.from_url(url)
    commands = [xadd_command(stream, PAYLOAD)] * batch

    async def raw_xadd() -> int:
        for _ in range(rounds):
            await raw.execute(commands, timeout=5.0)
        return rounds * batch

    async def one_xadd() -> int:
        for _ in range(rounds):
            await one.execute(commands, timeout=5.0)
        return rounds * batch

    async def py_xadd() -> int:
        for _ in range(rounds):
            async with py.pipeline(transaction=False) as pipe:
                for _ in range(batch):
                    pipe.xadd(stream, {"d": PAYLOAD})
                await pipe.execute()
        return rounds * batch

    figures: dict[str, float] = {}
    for name, work in (("raw", raw_xadd), ("one_client", one_xadd), ("redis_py", py_xadd)):
        await raw.execute([pack(b"DEL", stream)])
        figures[f"xadd_{name}_cpu_us"], figures[f"xadd_{name}_wall_us"] = await _best(work)

    await raw.execute([pack(b"DEL", stream)])
    for start in range(0, entries, 1000):
        await raw.execute([xadd_command(stream, PAYLOAD)] * min(1000, entries - start))

    async def raw_read() -> int:
        after, seen = b"-", 0
        while True:
            (page,) = await raw.execute([pack(b"XRANGE", stream, after, b"+", b"COUNT", 5000)], timeout=5.0)
            if not page:
                return seen
            seen += len(page)
            after = b"(" + page[-1][0]

    async def py_read() -> int:
        after, seen = "-", 0
        while True:
            page = await py.xrange(stream, after, "+", count=5000)
            if not page:
                return seen
            seen += len(page)
            last = page[-1][0]
            after = "(" + (last.decode() if isinstance(last, bytes) else last)

    for name, work in (("raw", raw_read), ("redis_py", py_read)):
        figures[f"read_{name}_cpu_us"], figures[f"read_{name}_wall_us"] = await _best(work)
    await raw.execute([pack(b"DEL", stream)])
    await raw.close()
    await one.close()
    await py.aclose()
    figures["xadd_redis_py_ratio"] = figures["xadd_redis_py_cpu_us"] / figures["xadd_raw_cpu_us"]
    figures["xadd_one_client_ratio"] = figures["xadd_one_client_cpu_us"] / figures["xadd_raw_cpu_us"]
    figures["read_redis_py_ratio"] = figures["read_redis_py_cpu_us"] / figures["read_raw_cpu_us"]
    return figures


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.bench resp", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=1500, help="pipelines per XADD run (default 1500)")
    parser.add_argument("--batch", type=int, default=64, help="XADDs per pipeline (default 64)")
    parser.add_argument("--entries", type=int, default=50_000, help="entries read per read run (default 50000)")
    args = parser.parse_args(argv)
    url = os.environ.get("CLICKMINT_REDIS_URL", "")
    base = Path(tempfile.mkdtemp(prefix="clickmint-resp-bench-"))
    valkey = None
    try:
        if not url:
            os.chmod(base, 0o755)
            valkey = EmbeddedValkey(base, port=0)
            url = valkey.start()
        f = asyncio.run(measure(url, args.rounds, args.batch, args.entries))
    finally:
        if valkey is not None:
            valkey.stop()
        shutil.rmtree(base, ignore_errors=True)
    rows = [
        ("XADD, raw RESP", f"{f['xadd_raw_cpu_us']:.2f} µs CPU", f"{f['xadd_raw_wall_us']:.2f} µs wall per command"),
        (
            "XADD, the one client",
            f"{f['xadd_one_client_cpu_us']:.2f} µs CPU",
            f"x{f['xadd_one_client_ratio']:.2f} of raw",
        ),
        ("XADD, redis-py", f"{f['xadd_redis_py_cpu_us']:.2f} µs CPU", f"x{f['xadd_redis_py_ratio']:.2f} of raw"),
        ("read, raw RESP", f"{f['read_raw_cpu_us']:.2f} µs CPU", f"{f['read_raw_wall_us']:.2f} µs wall per entry"),
        ("read, redis-py", f"{f['read_redis_py_cpu_us']:.2f} µs CPU", f"x{f['read_redis_py_ratio']:.2f} of raw"),
    ]
    title = f"resp: batches of {args.batch} XADDs x {args.rounds}, {args.entries} entries read in pages of 5000"
    return finish(title, rows, {key: round(value, 3) for key, value in f.items()})
