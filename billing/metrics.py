"""Prometheus text metrics of billing ingest: the backlog of each shard (undelivered, pending, the age of the
oldest entry not yet stored, stalled or not), dead letters, events, last runs.

Served by the ingest process on 127.0.0.1 (`CLICKMINT_BILLING_METRICS_PORT`, default 8002) through
kernel/scrape.py, rendered when scraped: a private prometheus_client registry whose one collector yields the
figures read for that scrape (never the multiprocess files of PROMETHEUS_MULTIPROC_DIR, which are the
tracker's). Stream figures come from Redis at scrape time (XINFO GROUPS, XPENDING, XRANGE, XLEN) through
the cluster-aware client ingest uses itself, so they are right whichever ingest process consumed the entries
and wherever a shard lives; a shard whose node cannot be read is left out and `clickmint_ingest_redis_up` is
0. The event counters are this process's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
from prometheus_client import CollectorRegistry, Metric
from prometheus_client.registry import Collector

from billing.consumer import Stats, billing_group
from billing.settings import GROUP, METRICS_HOST, BillingSettings
from kernel import scrape
from kernel.keys import dead_key, stream_key
from kernel.redis.client import Redis, ReplyError
from kernel.redis.resp import RedisUnavailable

log = logging.getLogger("clickmint.billing.metrics")
REDIS_TIMEOUT_S = 2.0  # per command of a scrape: a paused node must not hold the scrape


@dataclass(frozen=True)
class ShardState:
    length: int  # entries in the stream
    lag: int  # not yet delivered to the billing group
    read: int  # delivered to it so far
    pending: int  # delivered and not yet acknowledged (stored)
    dead: int  # in the shard's dead-letter stream
    oldest: bytes | None = None  # id of the oldest entry not yet stored (pending, else undelivered); None: none

    def oldest_age_s(self, now_ms: int) -> float:
        """How old the oldest entry not yet stored is (its id is the Redis time it was appended), 0 for none."""
        if self.oldest is None:
            return 0.0
        return max(0, now_ms - int(self.oldest.split(b"-")[0])) / 1000


async def shard_state(redis: Redis, prefix: str, shard: int) -> ShardState:
    """Where ingest stands on one stream shard, as Redis sees it."""
    key = stream_key(prefix, shard)

    async def call(*args: str | bytes | int) -> Any:
        return await redis.call(*args, timeout=REDIS_TIMEOUT_S)

    length = int(await call(b"XLEN", key))
    lag, read, pending, oldest = length, 0, 0, None
    group = await billing_group(redis, key, REDIS_TIMEOUT_S)
    after = b"-"  # the undelivered entries come after this id
    if group is not None:
        read = int(group.get("entries-read") or 0)
        # lag is unknown to Redis after some deletions; then all that is left may be unread.
        lag = int(group["lag"]) if group.get("lag") is not None else length
        pending = int(group.get("pending") or 0)
        last = group["last-delivered-id"]
        after = b"(" + (last if isinstance(last, bytes) else str(last).encode())
        if pending:
            oldest = (await call(b"XPENDING", key, GROUP))[1]
    if oldest is None and lag:
        first = await call(b"XRANGE", key, after, b"+", b"COUNT", 1)
        oldest = first[0][0] if first else None
    return ShardState(length, lag, read, pending, int(await call(b"XLEN", dead_key(prefix, shard))), oldest)


class BillingMetrics:
    """Renders the metrics of one ingest process; `start` serves them over HTTP."""

    def __init__(self, settings: BillingSettings, redis: Redis, stats: Stats) -> None:
        self.settings = settings
        self.redis = redis
        self.stats = stats
        self._heads: dict[int, tuple[bytes, float]] = {}  # shard -> its oldest entry not stored, first seen at
        self._db: asyncpg.Connection | None = None
        self._db_lock = asyncio.Lock()
        self._server: asyncio.Server | None = None
        # A private registry of a custom collector: nothing here goes through prometheus_client's value classes,
        # so a PROMETHEUS_MULTIPROC_DIR in the environment (the tracker's) is neither written nor read.
        self._collector = _Scrape()
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(self._collector)
        self._render_lock = asyncio.Lock()

    def _stalled(self, shard: int, state: ShardState, now: float) -> int:
        """1 when the shard has entries not yet stored and the oldest has not changed for stall_s."""
        if state.oldest is None:
            self._heads.pop(shard, None)
            return 0
        seen = self._heads.get(shard)
        if seen is None or seen[0] != state.oldest:
            self._heads[shard] = (state.oldest, now)
            return 0
        return int(now - seen[1] >= self.settings.stall_s)

    async def _shards(self) -> tuple[list[Metric], bool]:
        """The per-shard families, and whether every shard could be read."""
        lag = _family("clickmint_ingest_stream_lag", "Entries in the stream not yet delivered to the billing group.")
        read = _family("clickmint_ingest_entries_read", "Entries the billing group has read.", "counter")
        pending = _family("clickmint_ingest_pending_entries", "Entries delivered and not yet acknowledged.")
        dead = _family("clickmint_ingest_dead_letters", "Entries in the dead-letter stream.")
        length = _family("clickmint_ingest_stream_length", "Entries in the stream.")
        age = _family(
            "clickmint_ingest_oldest_age_seconds",
            "Age of the oldest entry not yet stored (pending or undelivered); 0 when all are stored.",
        )
        stalled = _family(
            "clickmint_ingest_shard_stalled",
            "1 when the shard has entries not yet stored and the oldest has not changed for"
            " CLICKMINT_INGEST_STALL_S seconds.",
        )
        complete = True
        for shard in range(self.settings.core.shards):
            try:
                state = await shard_state(self.redis, self.settings.core.key_prefix, shard)
            except (OSError, RedisUnavailable, ReplyError) as exc:  # that shard's node is down: the others still
                log.warning("metrics: cannot read shard %d: %s", shard, exc)
                complete = False
                continue
            labels = {"shard": str(shard)}
            now_ms = int(time.time() * 1000)
            age.add_sample(age.name, labels, round(state.oldest_age_s(now_ms), 3))
            stalled.add_sample(stalled.name, labels, self._stalled(shard, state, time.monotonic()))
            lag.add_sample(lag.name, labels, state.lag)
            read.add_sample(read.name, labels, state.read)
            pending.add_sample(pending.name, labels, state.pending)
            dead.add_sample(dead.name, labels, state.dead)
            length.add_sample(length.name, labels, state.length)
        return [lag, read, pending, dead, length, age, stalled], complete

    async def _job_runs(self) -> list[dict[str, Any]]:
        """The last run of each billing job; a lost database connection is made again at the next scrape."""
        assert self.settings.core.database_url is not None
        async with self._db_lock:
            try:
                if self._db is None or self._db.is_closed():
                    self._db = await asyncpg.connect(self.settings.core.database_url, timeout=5)
                rows = await self._db.fetch("SELECT job, extract(epoch FROM started_at) AS at, seconds FROM job_runs")
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("metrics: cannot read job runs: %s", exc)
                if self._db is not None:
                    self._db.terminate()
                    self._db = None
                return []
        return [dict(r) for r in rows]

    def _counters(self) -> list[Metric]:
        """This process's own event counters."""
        stats = self.stats
        return [
            _counter(
                "clickmint_ingest_events_total", "Events this process stored (new or already there).", stats.events
            ),
            _counter(
                "clickmint_ingest_new_events_total", "Events this process stored for the first time.", stats.new_events
            ),
            _counter("clickmint_ingest_batches_total", "Batches this process stored.", stats.batches),
            _counter("clickmint_ingest_dead_lettered_total", "Entries this process dead-lettered.", stats.dead),
        ]

    async def render(self) -> str:
        """Read the scrape-time figures (Redis, PostgreSQL), then render the registry in the Prometheus text format."""
        families = self._counters()
        shards, complete = await self._shards()
        families += shards
        up = _family("clickmint_ingest_redis_up", "1 when every stream shard could be read at this scrape.")
        up.add_sample(up.name, {}, int(complete))
        families.append(up)
        runs = {r["job"]: r for r in await self._job_runs()}
        for job in ("settle", "retention"):
            run = runs.get(job)
            if run is None:
                continue
            duration = _family(f"clickmint_{job}_last_duration_seconds", f"How long the last {job} took.")
            duration.add_sample(duration.name, {}, round(float(run["seconds"]), 6))
            at = _family(f"clickmint_{job}_last_run_timestamp_seconds", f"When the last {job} started (Unix time).")
            at.add_sample(at.name, {}, round(float(run["at"]), 3))
            families += [duration, at]
        async with self._render_lock:  # the collector holds one scrape's figures at a time
            self._collector.families = families
            try:
                return _text(self._registry.collect())
            finally:
                self._collector.families = []

    async def start(self, port: int, host: str = METRICS_HOST) -> int:
        """Listen on host:port (0: any free port); returns the port."""
        self._server = await scrape.serve(self.render, host, port, paths=(b"/metrics", b"/"), reuse_port=False)
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
        if self._db is not None:
            await self._db.close()
            self._db = None


class _Scrape(Collector):
    """Yields the figures one scrape read (prometheus_client collectors are synchronous; the reads are not)."""

    def __init__(self) -> None:
        self.families: list[Metric] = []

    def collect(self) -> Iterable[Metric]:
        return list(self.families)


def _family(name: str, documentation: str, kind: str = "gauge") -> Metric:
    return Metric(name, documentation, kind)


def _counter(name: str, documentation: str, value: int) -> Metric:
    family = Metric(name, documentation, "counter")  # the family keeps its name: the TYPE line as before
    family.add_sample(name, {}, value)
    return family


def _value(value: float) -> str:
    return str(value) if isinstance(value, int) or not float(value).is_integer() else str(int(value))


def _text(families: Iterable[Metric]) -> str:
    """The Prometheus text format (0.0.4) in ingest's own layout: integers stay integers ("... 1", not "1.0")."""
    out: list[str] = []
    for family in families:
        name = family.name
        if family.type == "counter" and family.samples and family.samples[0].name == name + "_total":
            name += "_total"
        out += [f"# HELP {name} {family.documentation}", f"# TYPE {name} {family.type}"]
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sample.labels.items())
            out.append(
                f"{sample.name}{{{labels}}} {_value(sample.value)}"
                if labels
                else f"{sample.name} {_value(sample.value)}"
            )
    return "\n".join(out) + "\n"


async def record_run(
    conn: asyncpg.Connection, job: str, started_at: dt.datetime, seconds: float, detail: dict[str, object]
) -> None:
    """Remember the last run of a billing job (read by the billing metrics)."""
    await conn.execute(
        """INSERT INTO job_runs (job, started_at, seconds, detail) VALUES ($1, $2, $3, $4)
           ON CONFLICT (job) DO UPDATE SET started_at = EXCLUDED.started_at, seconds = EXCLUDED.seconds,
                                           detail = EXCLUDED.detail""",
        job,
        started_at,
        seconds,
        orjson.dumps(detail).decode(),
    )
