"""Prometheus text metrics of billing ingest: stream lag, pending and dead letters per shard, events, last runs.

Served by the ingest process on 127.0.0.1 (`CLICKMINT_BILLING_METRICS_PORT`, default 8002) by a
minimal HTTP/1.1 responder: one GET per connection, rendered when scraped. Stream figures come
from Redis at scrape time (XINFO GROUPS, XPENDING, XLEN), so they are right whichever ingest
process consumed the entries; the event counters are this process's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from billing.consumer import Stats
from billing.settings import GROUP, METRICS_HOST, BillingSettings
from kernel.keys import dead_key, stream_key

log = logging.getLogger("clickmint.billing.metrics")
CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
READ_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class ShardState:
    length: int  # entries in the stream
    lag: int  # not yet delivered to the billing group
    read: int  # delivered to it so far
    pending: int  # delivered and not yet acknowledged (stored)
    dead: int  # in the shard's dead-letter stream


async def shard_state(redis: aioredis.Redis | Any, prefix: str, shard: int) -> ShardState:
    """Where ingest stands on one stream shard, as Redis sees it."""
    key = stream_key(prefix, shard)
    length = await redis.xlen(key)
    lag, read, pending = length, 0, 0
    if length or await redis.exists(key):
        groups = await redis.xinfo_groups(key)
        group = next((g for g in groups if g["name"] in (GROUP, GROUP.encode())), None)
        if group is not None:
            read = int(group.get("entries-read") or 0)
            # lag is unknown to Redis after some deletions; then all that is left may be unread.
            lag = int(group["lag"]) if group.get("lag") is not None else length
            pending = int(group.get("pending") or 0)
    return ShardState(length, lag, read, pending, await redis.xlen(dead_key(prefix, shard)))


class BillingMetrics:
    """Renders the metrics of one ingest process; `start` serves them over HTTP."""

    def __init__(self, settings: BillingSettings, redis: aioredis.Redis, stats: Stats) -> None:
        self.settings = settings
        self.redis = redis
        self.stats = stats
        self._db: asyncpg.Connection | None = None
        self._db_lock = asyncio.Lock()
        self._server: asyncio.Server | None = None

    async def _shards(self) -> list[str]:
        out = [
            "# HELP clickmint_ingest_stream_lag Entries in the stream not yet delivered to the billing group.",
            "# TYPE clickmint_ingest_stream_lag gauge",
        ]
        lag_lines, read_lines, pending_lines, dead_lines, length_lines = [], [], [], [], []
        for shard in range(self.settings.core.shards):
            state = await shard_state(self.redis, self.settings.core.key_prefix, shard)
            label = f'{{shard="{shard}"}}'
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
        return out

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
        try:
            out += await self._shards()
            redis_up = 1
        except (OSError, RedisError) as exc:
            log.warning("metrics: cannot read the streams: %s", exc)
            redis_up = 0
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
