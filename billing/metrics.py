"""Prometheus text metrics of billing ingest: the backlog of each shard (undelivered, pending, the age of the
oldest entry not yet stored, stalled or not), dead letters, events, last runs.

Served by the ingest process on 127.0.0.1 (`CLICKMINT_BILLING_METRICS_PORT`, default 8002) by a
minimal HTTP/1.1 responder: one GET per connection, rendered when scraped. Stream figures come
from Redis at scrape time (XINFO GROUPS, XPENDING, XRANGE, XLEN) through the cluster-aware client
ingest uses itself, so they are right whichever ingest process consumed the entries and wherever a
shard lives; a shard whose node cannot be read is left out and `clickmint_ingest_redis_up` is 0. The
event counters are this process's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from billing.consumer import Stats, billing_group
from billing.settings import GROUP, METRICS_HOST, BillingSettings
from kernel.keys import dead_key, stream_key
from kernel.redis.client import Redis, ReplyError
from kernel.redis.resp import RedisUnavailable

log = logging.getLogger("clickmint.billing.metrics")
CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
READ_TIMEOUT_S = 5.0
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

    async def _shards(self) -> tuple[list[str], bool]:
        """The per-shard lines, and whether every shard could be read."""
        out = [
            "# HELP clickmint_ingest_stream_lag Entries in the stream not yet delivered to the billing group.",
            "# TYPE clickmint_ingest_stream_lag gauge",
        ]
        lag_lines, read_lines, pending_lines, dead_lines, length_lines = [], [], [], [], []
        age_lines, stalled_lines = [], []
        complete = True
        for shard in range(self.settings.core.shards):
            try:
                state = await shard_state(self.redis, self.settings.core.key_prefix, shard)
            except (OSError, RedisUnavailable, ReplyError) as exc:  # that shard's node is down: the others still
                log.warning("metrics: cannot read shard %d: %s", shard, exc)
                complete = False
                continue
            label = f'{{shard="{shard}"}}'
            now_ms = int(time.time() * 1000)
            age_lines.append(f"clickmint_ingest_oldest_age_seconds{label} {state.oldest_age_s(now_ms):.3f}")
            stalled_lines.append(
                f"clickmint_ingest_shard_stalled{label} {self._stalled(shard, state, time.monotonic())}"
            )
            lag_lines.append(f"clickmint_ingest_stream_lag{label} {state.lag}")
            read_lines.append(f"clickmint_ingest_entries_read{label} {state.read}")
            pending_lines.append(f"clickmint_ingest_pending_entries{label} {state.pending}")
            dead_lines.append(f"clickmint_ingest_dead_letters{label} {state.dead}")
            length_lines.append(f"clickmint_ingest_stream_length{label} {state.length}")
        out += lag_lines
        out += [
            "# HELP clickmint_ingest_entries_read Entries the billing group has read.",
            "# TYPE clickmint_ingest_entries_read counter",
        ]
        out += read_lines
        out += [
            "# HELP clickmint_ingest_pending_entries Entries delivered and not yet acknowledged.",
            "# TYPE clickmint_ingest_pending_entries gauge",
        ]
        out += pending_lines
        out += [
            "# HELP clickmint_ingest_dead_letters Entries in the dead-letter stream.",
            "# TYPE clickmint_ingest_dead_letters gauge",
        ]
        out += dead_lines
        out += ["# TYPE clickmint_ingest_stream_length gauge"]
        out += length_lines
        out += [
            "# HELP clickmint_ingest_oldest_age_seconds Age of the oldest entry not yet stored (pending or"
            " undelivered); 0 when all are stored.",
            "# TYPE clickmint_ingest_oldest_age_seconds gauge",
        ]
        out += age_lines
        out += [
            "# HELP clickmint_ingest_shard_stalled 1 when the shard has entries not yet stored and the oldest has"
            " not changed for CLICKMINT_INGEST_STALL_S seconds.",
            "# TYPE clickmint_ingest_shard_stalled gauge",
        ]
        out += stalled_lines
        return out, complete

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

    async def render(self) -> str:
        stats = self.stats
        out = [
            "# HELP clickmint_ingest_events_total Events this process stored (new or already there).",
            "# TYPE clickmint_ingest_events_total counter",
            f"clickmint_ingest_events_total {stats.events}",
            "# HELP clickmint_ingest_new_events_total Events this process stored for the first time.",
            "# TYPE clickmint_ingest_new_events_total counter",
            f"clickmint_ingest_new_events_total {stats.new_events}",
            "# TYPE clickmint_ingest_batches_total counter",
            f"clickmint_ingest_batches_total {stats.batches}",
            "# TYPE clickmint_ingest_dead_lettered_total counter",
            f"clickmint_ingest_dead_lettered_total {stats.dead}",
        ]
        lines, complete = await self._shards()
        out += lines
        redis_up = int(complete)
        out += ["# TYPE clickmint_ingest_redis_up gauge", f"clickmint_ingest_redis_up {redis_up}"]
        runs = {r["job"]: r for r in await self._job_runs()}
        for job in ("settle", "retention"):
            run = runs.get(job)
            if run is None:
                continue
            out += [
                f"# HELP clickmint_{job}_last_duration_seconds How long the last {job} took.",
                f"# TYPE clickmint_{job}_last_duration_seconds gauge",
                f"clickmint_{job}_last_duration_seconds {float(run['seconds']):.6f}",
                f"# TYPE clickmint_{job}_last_run_timestamp_seconds gauge",
                f"clickmint_{job}_last_run_timestamp_seconds {float(run['at']):.3f}",
            ]
        return "\n".join(out) + "\n"

    async def start(self, port: int, host: str = METRICS_HOST) -> int:
        """Listen on host:port (0: any free port); returns the port."""
        self._server = await asyncio.start_server(self._handle, host, port)
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

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(READ_TIMEOUT_S):
                request = await reader.readuntil(b"\r\n\r\n")
            method, _, rest = request.partition(b" ")
            path = rest.split(b" ", 1)[0].split(b"?", 1)[0]
            if method not in (b"GET", b"HEAD"):
                status, body, kind = b"405 Method Not Allowed", b"method not allowed\n", b"text/plain"
            elif path not in (b"/metrics", b"/"):
                status, body, kind = b"404 Not Found", b"not found\n", b"text/plain"
            else:
                status, body, kind = b"200 OK", (await self.render()).encode(), CONTENT_TYPE
            head = b"HTTP/1.1 %s\r\ncontent-type: %s\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % (
                status,
                kind,
                len(body),
            )
            writer.write(head if method == b"HEAD" else head + body)
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        except Exception:  # a scrape must never take ingest down
            log.exception("metrics: failed to answer a scrape")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


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
