"""`python -m loadtests.bench ingest`: stream -> committed PostgreSQL (attributed, rolled up) vs a raw COPY.

Fills the event streams with realistic events (70% views, 25% clicks, 4% actions, 1% purchases, a
share of bots), runs billing ingest with its derive step until every entry is acknowledged, and in
the same run COPYs the same rows into a plain table: the baseline of what PostgreSQL takes at best.

Then the floor (embedded PostgreSQL only; --no-floor skips it): the same events through the same
streams, consumer group and ingest, storing the events only (read, decode and check, COPY into
`events`, commit, XACK) without the derive step (attribution, conversions, rollups). What is left
between the floor and the raw COPY is the price of the consumer group and of the indexed,
transactional store; between ingest and the floor, the price of deriving.

Wall time swings with whatever else runs on the machine; CPU time much less. So each phase also reports
the CPU it cost per event, with the embedded servers: ingest's process, PostgreSQL's processes (exited
backends included) and Valkey's (`*_cpu_us`), and `cpu_floor_ratio`, the floor's CPU (ingest and
PostgreSQL) over ingest's: what `ingest_floor_ratio` would be if CPU were all that limited it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import random
import resource
import signal
import time
import uuid
from dataclasses import replace
from typing import Any

import asyncpg
import orjson
import redis.asyncio as aioredis

from billing import events as event_rows
from billing.consumer import Ingest
from billing.derive import Deriver
from billing.settings import BillingSettings
from kernel.env import Env
from kernel.keys import stream_key
from kernel.redis.resp import RespConnection, pack
from kernel.settings import Settings
from loadtests.report import finish
from loadtests.servers import Servers, seed_link
from tracker.snapshot import shard_of

PREFIX = "benchingest"
PARTNERS = 100
COUNTRIES = ("US", "DE", "FR", "GB", "JP", "BR", "IN", "ES", "IT", "NL")


def make_events(
    n: int, links: list[tuple[int, int]], offer: int, now_ms: int, seed: int = 1, tag: str = "", customers: int = 0
) -> list[dict[str, object]]:
    """Realistic events spread over the links, each a (link id, partner id). `tag` makes click and order ids of
    their own; with `customers`, actions and purchases name one of that many customers and come by a signed
    postback (what loyalty earns on)."""
    rng = random.Random(seed)
    out: list[dict[str, object]] = []
    for i in range(n):
        roll = rng.random()
        link, partner = links[i % len(links)]
        base = {
            "id": _uuid7(now_ms - n + i, rng),
            "ts": now_ms - n + i,
            "link": link,
            "partner": partner,
            "offer": offer,
            "country": rng.choice(COUNTRIES),
            "ip": "203.0.113.0",
            "ua": "Mozilla/5.0",
            "sub1": f"s{rng.randrange(20)}",
        }
        bot = "search_crawler" if rng.random() < 0.03 else None
        if roll < 0.70:
            out.append({**base, "type": "view", "bot": bot})
        elif roll < 0.95:
            out.append({**base, "type": "click", "bot": bot, "click_id": f"c{tag}{i}", "unique": rng.random() < 0.8})
        elif roll < 0.99:
            action = {
                **base,
                "type": "action",
                "action": "signup",
                "click_id": f"c{tag}{i - 1}",
                "order_id": f"a{tag}{i}",
            }
            out.append(action | _customer(rng, customers))
        else:
            purchase = {
                **base,
                "type": "purchase",
                "click_id": f"c{tag}{i - 1}",
                "order_id": f"o{tag}{i}",
                "amount": rng.randint(500, 50_000),
                "currency": "USD",
                "items": [{"sku": "sku-1", "qty": 1, "price": 1000}],
            }
            out.append(purchase | _customer(rng, customers))
    return out


def _customer(rng: random.Random, customers: int) -> dict[str, object]:
    if not customers:
        return {}
    return {"customer": f"cust-{rng.randrange(customers)}", "via": "postback", "auth": "signature"}


def _uuid7(unix_ms: int, rng: random.Random) -> str:
    """A UUIDv7 of the event's time, as the tracker makes them (tracker.ids.uuid7), from the seeded generator.

    Time-ordered ids keep the inserts into the events primary key local; random v4 ids, which the tracker
    never sends, scatter them over the index (three interleaved runs each on 2026-11-26: 37.9-48.6k
    events/s with v4 ids, 43.2-50.1k with v7)."""
    value = (
        (unix_ms & 0xFFFF_FFFF_FFFF) << 80 | 0x7 << 76 | rng.getrandbits(12) << 64 | 0b10 << 62 | rng.getrandbits(62)
    )
    return str(uuid.UUID(int=value))


async def _more_links(db: asyncpg.Connection, offer: int, merchant: int, count: int) -> list[tuple[int, int]]:
    rows = await db.fetch(
        """WITH p AS (INSERT INTO partners (name, email)
                      SELECT 'Bench partner ' || g, 'bench-' || g || '-' || $3 || '@partners.example'
                      FROM generate_series(1, $1) g RETURNING id),
                pp AS (INSERT INTO partner_programmes (partner_id, merchant_id, status)
                       SELECT id, $2, 'approved' FROM p)
           INSERT INTO links (code, partner_id, offer_id)
           SELECT 'bench' || p.id || '-' || $3, p.id, $4 FROM p RETURNING id, partner_id""",
        count,
        merchant,
        str(int(time.time())),
        offer,
    )
    return [(r["id"], r["partner_id"]) for r in rows]


async def fill(redis_url: str, prefix: str, shards: int, payloads: list[tuple[int, bytes]]) -> float:
    conn = RespConnection(redis_url)
    await conn.connect()
    started = time.perf_counter()
    for start in range(0, len(payloads), 5000):
        chunk = payloads[start : start + 5000]
        await conn.execute([pack(b"XADD", stream_key(prefix, shard), b"*", b"d", data) for shard, data in chunk])
    elapsed = time.perf_counter() - started
    await conn.close()
    return elapsed


def _ingest_process(billing: BillingSettings, ready: Any, go: Any, derive: bool = True) -> None:
    async def consume() -> None:
        ingest = Ingest(billing, derive=Deriver() if derive else None)
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, ingest.stop)
        ready.set()  # started and imported: the clock starts when every process is
        await asyncio.to_thread(go.wait)
        await ingest.run()

    asyncio.run(consume())


def _cpu_s(pid: int | None) -> float:
    """CPU seconds (user and system) of a process and its descendants so far, exited ones included once reaped."""
    if pid is None:
        return 0.0
    import psutil  # a test extra, like the rest of the load tests' tools

    total = 0.0
    root = psutil.Process(pid)
    for proc in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = proc.cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
    return total


class _Cpu:
    """The CPU a phase costs: ingest's (this process, or the children it started), PostgreSQL's and Valkey's."""

    def __init__(self, servers: Servers | None, processes: int) -> None:
        self.pids: list[int | None] = [None, None]
        if servers is not None:
            self.pids = [
                s.proc.pid if s is not None and s.proc is not None else None for s in (servers.postgres, servers.valkey)
            ]
        self.who = resource.RUSAGE_SELF if processes == 1 else resource.RUSAGE_CHILDREN
        self.start = self._now()

    def _now(self) -> tuple[float, float, float]:
        usage = resource.getrusage(self.who)
        return usage.ru_utime + usage.ru_stime, _cpu_s(self.pids[0]), _cpu_s(self.pids[1])

    def per_event(self, n: int, prefix: str) -> dict[str, float]:
        """µs of CPU per event since the start: ingest, PostgreSQL (0 when not embedded), Valkey (likewise)."""
        spent = [round((b - a) / n * 1e6, 2) for a, b in zip(self.start, self._now(), strict=True)]
        return {f"{prefix}_cpu_us": spent[0], f"{prefix}_pg_cpu_us": spent[1], f"{prefix}_valkey_cpu_us": spent[2]}


async def _ingest(
    redis_url: str, billing: BillingSettings, processes: int, derive: bool, cpu: dict[str, float] | None = None,
    servers: Servers | None = None, label: str = "",
) -> float:  # fmt: skip
    """Run ingest over streams filled beforehand until every entry is acknowledged; returns the seconds it took.
    With `cpu`, adds to it what the run cost per event (keys starting with `label`; see _Cpu)."""
    shards, prefix = billing.core.shards, billing.core.key_prefix
    redis = aioredis.Redis.from_url(redis_url)
    for shard in range(shards):
        await redis.xgroup_create(stream_key(prefix, shard), "billing", id="0", mkstream=True)
    meter = _Cpu(servers, processes)
    if processes == 1:
        ingest = Ingest(billing, derive=Deriver() if derive else None)
        started = time.perf_counter()
        task = asyncio.create_task(ingest.run())
    else:  # what `clickmint up` runs with CLICKMINT_INGEST_PROCESSES: process i of n on its share of the shards
        spawn = multiprocessing.get_context("spawn")
        go = spawn.Event()
        children = []
        for i in range(1, processes + 1):
            ready = spawn.Event()
            child = spawn.Process(
                target=_ingest_process,
                args=(replace(billing, part=i, parts=processes), ready, go, derive),
                daemon=True,
            )
            child.start()
            children.append((child, ready))
        for _child, ready in children:
            await asyncio.to_thread(ready.wait)
        started = time.perf_counter()
        go.set()
    while True:
        groups = [(await redis.xinfo_groups(stream_key(prefix, s)))[0] for s in range(shards)]
        if all(not g["pending"] and not g["lag"] for g in groups):
            break
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - started
    if processes == 1:
        ingest.stop()
        await task
    else:
        for child, _ready in children:
            child.terminate()  # SIGTERM: stops between batches
            child.join()
    if cpu is not None:
        total = sum([await redis.xlen(stream_key(prefix, s)) for s in range(shards)])
        cpu.update(meter.per_event(max(total, 1), label))
    await redis.delete(*(stream_key(prefix, s) for s in range(shards)))  # its memory and AOF, before the next run
    await redis.aclose()
    return elapsed


async def _loyalty_phases(
    servers: Servers, db: asyncpg.Connection, billing: BillingSettings, processes: int, links: list[tuple[int, int]],
    offer: int, merchant: int, n: int,
) -> dict[str, float | int | str]:  # fmt: skip
    """The same mix of events naming customers (10,000 of them), ingested without a loyalty programme and with
    one (points per 1.00 spent and per signup, expiry): four runs of n/2 events in the order off, on, on, off,
    so that whatever drifts during the run (tables growing, a busy machine) weighs on both alike. Each run has
    events and orders of its own."""
    shards, now_ms, timings = billing.core.shards, int(time.time() * 1000), {"off": 0.0, "on": 0.0}
    await db.execute(
        """INSERT INTO loyalty_programmes (merchant_id, enabled, currency, expiry_days, rules)
           VALUES ($1, false, 'USD', 365, '{"points_per_unit": 1, "unit_minor": 100, "actions": {"signup": 5}}')
           ON CONFLICT (merchant_id) DO UPDATE SET enabled = false""",
        merchant,
    )
    for run, phase in enumerate(("off", "on", "on", "off")):
        await db.execute("UPDATE loyalty_programmes SET enabled = $2 WHERE merchant_id = $1", merchant, phase == "on")
        evs = make_events(n // 2, links, offer, now_ms, seed=2 + run, tag=f"l{run}", customers=10_000)
        prefix = f"{PREFIX}loy{run}"
        await fill(
            servers.redis_url, prefix, shards, [(shard_of(int(e["link"]), shards), orjson.dumps(e)) for e in evs]
        )
        timings[phase] += await _ingest(
            servers.redis_url, replace(billing, core=replace(billing.core, key_prefix=prefix)), processes, derive=True
        )
    await db.execute("UPDATE loyalty_programmes SET enabled = false WHERE merchant_id = $1", merchant)
    return {
        "loyalty_off_s": round(timings["off"], 2),
        "loyalty_on_s": round(timings["on"], 2),
        "loyalty_off_events_per_s": round(n / timings["off"]),
        "loyalty_on_events_per_s": round(n / timings["on"]),
        "loyalty_ratio": round(timings["off"] / timings["on"], 3),
        "loyalty_lots": await db.fetchval("SELECT count(*) FROM loyalty_lots"),
    }


async def bench(
    servers: Servers,
    n: int,
    shards: int,
    batch: int | None = None,
    processes: int = 1,
    floor: bool = True,
    loyalty: bool = True,
) -> dict[str, float | int | str]:
    seeded = await seed_link(servers.database_url)
    db = await asyncpg.connect(servers.database_url)
    await db.execute(
        "UPDATE offers SET fee_plan = $1 WHERE id = $2",
        '{"cps_percent": "10", "cpa": {"signup": 150}}',
        seeded.offer_id,
    )
    links = await _more_links(db, seeded.offer_id, seeded.merchant_id, PARTNERS - 1)
    links.append((seeded.link_id, seeded.partner_id))
    now_ms = int(time.time() * 1000)
    evs = make_events(n, links, seeded.offer_id, now_ms)
    payloads = [(shard_of(int(e["link"]), shards), orjson.dumps(e)) for e in evs]  # as the tracker shards them
    fill_s = await fill(servers.redis_url, PREFIX, shards, payloads)
    core = Settings.from_env(Env({"CLICKMINT_SECRET_KEY": "b" * 40, "CLICKMINT_DATA_DIR": str(servers.base)}))
    core = replace(
        core, redis_url=servers.redis_url, database_url=servers.database_url, shards=shards, key_prefix=PREFIX
    )
    billing = BillingSettings.from_env(Env({}), core=core)
    billing = replace(billing, batch=batch or billing.batch)
    cpu: dict[str, float] = {}
    ingest_s = await _ingest(
        servers.redis_url, billing, processes, derive=True, cpu=cpu, servers=servers, label="ingest"
    )
    stored = await db.fetchval("SELECT count(*) FROM events")
    conversions = await db.fetchval("SELECT count(*) FROM conversions")

    rows = [event_rows.to_row({b"d": data})[0] for _, data in payloads]
    await db.execute("CREATE TABLE bench_copy (LIKE events INCLUDING DEFAULTS)")
    started = time.perf_counter()
    await db.copy_records_to_table("bench_copy", records=rows, columns=event_rows.COLUMNS)
    copy_s = time.perf_counter() - started
    await db.execute("DROP TABLE bench_copy")
    figures: dict[str, float | int | str] = {}
    if floor and servers.postgres is None:
        print("floor skipped: it empties `events` first, which it does only in an embedded PostgreSQL", flush=True)
    elif floor:  # the same events again, stored only: into an empty `events`, through streams of their own
        await db.execute("TRUNCATE events")  # the bench's own embedded database, thrown away after the run
        floor_prefix = PREFIX + "floor"
        await fill(servers.redis_url, floor_prefix, shards, payloads)
        floor_billing = replace(billing, core=replace(billing.core, key_prefix=floor_prefix))
        floor_s = await _ingest(
            servers.redis_url, floor_billing, processes, derive=False, cpu=cpu, servers=servers, label="floor"
        )
        floor_stored = await db.fetchval("SELECT count(*) FROM events")
        figures = {
            "floor_s": round(floor_s, 2),
            "floor_events_per_s": round(n / floor_s),
            "floor_copy_ratio": round((n / floor_s) / (n / copy_s), 3),
            "floor_stored": floor_stored,
            "derive_share": round(1 - floor_s / ingest_s, 3),
            "ingest_floor_ratio": round(floor_s / ingest_s, 3),  # ingest's events/s over the floor's
            **cpu,
            "cpu_floor_ratio": round(
                (cpu["floor_cpu_us"] + cpu["floor_pg_cpu_us"]) / (cpu["ingest_cpu_us"] + cpu["ingest_pg_cpu_us"]), 3
            ),
        }
    if loyalty:
        figures |= await _loyalty_phases(servers, db, billing, processes, links, seeded.offer_id, seeded.merchant_id, n)
    await db.close()
    return {
        "events": n,
        "stored": stored,
        "conversions": conversions,
        "fill_s": round(fill_s, 2),
        "ingest_s": round(ingest_s, 2),
        "events_per_s": round(n / ingest_s),
        "copy_s": round(copy_s, 2),
        "copy_rows_per_s": round(n / copy_s),
        "copy_ratio": round((n / ingest_s) / (n / copy_s), 3),
        "shards": shards,
        "processes": processes,
        "batch": billing.batch,
        **figures,
    }


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.bench ingest")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--batch", type=int, default=None, help="entries per XREADGROUP (default: ingest's own)")
    parser.add_argument("--processes", type=int, default=1, help="ingest processes sharing the shards")
    parser.add_argument(
        "--no-floor", dest="floor", action="store_false", help="skip the floor run (the events stored, nothing derived)"
    )
    parser.add_argument(
        "--no-loyalty",
        dest="loyalty",
        action="store_false",
        help="skip the loyalty phases (the same mix naming customers, without and then with a loyalty programme)",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.processes <= args.shards:
        parser.error("--processes must be between 1 and --shards")
    servers = Servers.open()
    try:
        figures = asyncio.run(
            bench(servers, args.events, args.shards, args.batch, args.processes, args.floor, args.loyalty)
        )
    finally:
        servers.close()
    rows = [
        (
            "ingest (COPY + attribution + rollups + commit + ack)",
            f"{figures['events_per_s']:,} events/s",
            f"{figures['ingest_s']} s",
        ),
        ("baseline: raw COPY of the same rows", f"{figures['copy_rows_per_s']:,} rows/s", f"{figures['copy_s']} s"),
        ("ratio ingest / raw COPY", f"{figures['copy_ratio']}", ""),
    ]
    if "floor_s" in figures:
        rows += [
            (
                "floor: the same ingest storing only (no derive)",
                f"{figures['floor_events_per_s']:,} events/s",
                f"{figures['floor_s']} s",
            ),
            ("ratio floor / raw COPY", f"{figures['floor_copy_ratio']}", ""),
            ("ratio ingest / floor (target >= 0.75)", f"{figures['ingest_floor_ratio']}", ""),
            ("share of ingest's time spent deriving", f"{figures['derive_share']:.0%}", ""),
            (
                "CPU per event, ingest: its process / PostgreSQL / Valkey",
                f"{figures['ingest_cpu_us']} / {figures['ingest_pg_cpu_us']} / {figures['ingest_valkey_cpu_us']} µs",
                "",
            ),
            (
                "CPU per event, floor: its process / PostgreSQL / Valkey",
                f"{figures['floor_cpu_us']} / {figures['floor_pg_cpu_us']} / {figures['floor_valkey_cpu_us']} µs",
                "",
            ),
            ("ratio floor / ingest in CPU (its process + PostgreSQL)", f"{figures['cpu_floor_ratio']}", ""),
        ]
    if "loyalty_ratio" in figures:
        rows += [
            (
                "loyalty phase, baseline: events naming customers, no programme",
                f"{figures['loyalty_off_events_per_s']:,} events/s",
                f"{figures['loyalty_off_s']} s",
            ),
            (
                "loyalty phase: the same mix with a loyalty programme on",
                f"{figures['loyalty_on_events_per_s']:,} events/s",
                f"{figures['loyalty_on_s']} s",
            ),
            ("ratio ingest with loyalty / without (target >= 0.9)", f"{figures['loyalty_ratio']}", ""),
        ]
    return finish(
        f"ingest of {args.events:,} events over {args.shards} shards, {args.processes} process(es)"
        f" ({servers.postgres_where})",
        rows,
        figures,
    )
