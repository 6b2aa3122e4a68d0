"""Ingest: read each event stream through the consumer group, commit to PostgreSQL, and only then XACK.

One task per shard. A batch is read with XREADGROUP, written in one transaction (events by COPY,
then whatever derives from the events this transaction made new), committed, and acknowledged.
Commit and ack are shielded from cancellation and the ack is retried, so a crash anywhere leaves
the entries pending: they are read again (our own pending first at start, other consumers' by
XAUTOCLAIM once idle) and the event id makes the second write a no-op. An entry that cannot be
decoded, or fails `max_deliveries` times, goes to the dead-letter stream without stalling the rest.

Every Redis command goes through the kernel's client (kernel/redis/client.py), the tracker's too: one
server or a Redis Cluster, configured or asked of the nodes of CLICKMINT_REDIS_URL, the slot map read
again after a node failed and every few seconds, so a shard follows its promoted replica at once.
An expected state of a cluster (a node down or paused, CLUSTERDOWN, TRYAGAIN) is a one-line warning
with its reason, rate-limited (kernel/redis/states.py); a blocking read waits at most its BLOCK time
plus READ_MARGIN_S, so a paused master cannot hold a shard.

Where the time goes (issue 4, ~5,000-entry batches): reads, claims and acks are raw RESP on one
connection per shard (hiredis, kernel/redis/resp.py), not redis-py, which spent ~8 µs an entry;
entries delivered for the first time are COPYed straight into `events` (the primary key refuses a
repeat, and only then does the batch go through the staging table and ON CONFLICT); derived rows go
by COPY too (see billing/derive.py); young garbage collections are rarer while ingest runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg

from billing import events
from billing.settings import GROUP, BillingSettings
from kernel.keys import dead_key, stream_key
from kernel.redis.client import Redis, ReplyError
from kernel.redis.resp import RedisUnavailable
from kernel.redis.states import Throttled, expected_state

log = logging.getLogger("clickmint.billing.ingest")
# An entry as Redis sends it: its id and its fields as a flat [name, value, ...] list (None: deleted by a trim).
Entry = Sequence[Any]
Parsed = tuple[tuple[Any, ...], dict[str, Any]]  # (row of events, the event as a dict)
# derive(conn, new_events): everything computed from newly stored events, inside the batch's transaction.
Derive = Callable[[asyncpg.Connection, list[dict[str, Any]]], Awaitable[None]]
_RETRYABLE = (RedisUnavailable, OSError)
READ_MARGIN_S = 1.0  # a blocking read that has not answered BLOCK ms + this much later: the node is gone
COMMAND_TIMEOUT_S = 2.0  # any other command: a node silent this long is taken for gone (retried)
_YIELD_EVERY = 500  # entries parsed between two yields to the event loop
# A batch allocates thousands of event dicts and rows that all die together once it is committed: with
# CPython's default (a young collection every 700 allocations) the collector rescans them over and over,
# a few µs an event. While ingest runs, the young generation is collected this much less often.
_GC_YOUNG = 100_000
STOP_GRACE_S = 5.0  # after stop(), a shard stuck in a round trip is cancelled (the supervisor waits 15 s)
_gc_saved: list[tuple[int, int, int]] = []  # one per Ingest running in this process: the thresholds before it


class Stats:
    def __init__(self) -> None:
        self.events = 0
        self.new_events = 0
        self.batches = 0
        self.dead = 0


class Ingest:
    """The consumer of one process: a task per shard sharing a connection pool."""

    def __init__(self, settings: BillingSettings, derive: Derive | None = None) -> None:
        core = settings.core
        assert core.redis_url and core.database_url
        self.settings = settings
        # The metrics' reads; fails now on a URL the raw client cannot take.
        self.redis = Redis(core.redis_url, core.redis_cluster)
        # Per shard: everything it sends (a blocking read holds a connection, and a client that saw its node
        # fail reads the slot map again before its next command: the shard follows its own master).
        self._streams: dict[str, Redis] = {}
        self._warn = Throttled(log)
        self.pool: asyncpg.Pool | None = None
        self.derive = derive
        self.stats = Stats()
        self._known_days: set[Any] = set()
        self._stop = asyncio.Event()
        self._commits = 0

    async def _connect_db(self) -> asyncpg.Pool | None:
        """A pool once PostgreSQL answers; None when told to stop while waiting for it."""
        while not self._stop.is_set():
            try:
                return await asyncpg.create_pool(
                    self.settings.core.database_url,
                    min_size=1,
                    max_size=self.settings.core.shards + 1,
                    init=events.prepare,
                )
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("waiting for PostgreSQL: %s", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), 1.0)
        return None

    async def connect_redis(self) -> None:
        """Connect the shared client now if Redis answers (else its first command connects it)."""
        if not self.redis.connected:
            with contextlib.suppress(RedisUnavailable):
                await self.redis.connect()

    async def run(self, shards: Sequence[int] | None = None) -> None:
        """Consume until `stop` is called; the shards default to this process's part of them."""
        await self.connect_redis()
        self.pool = await self._connect_db()
        if self.pool is None:  # stopped before PostgreSQL ever answered
            await self.redis.close()
            return
        shards = self.settings.my_shards() if shards is None else list(shards)
        log.info("consuming shard(s) %s as %s", ",".join(map(str, shards)) or "none", self.settings.consumer)
        _gc_saved.append(gc.get_threshold())
        gc.set_threshold(max(_GC_YOUNG, _gc_saved[0][0]), *_gc_saved[0][1:])
        try:
            async with asyncio.TaskGroup() as group:
                consumers = [group.create_task(self._consume(shard), name=f"ingest-{shard}") for shard in shards]
                if consumers:
                    group.create_task(self._cut_short(consumers), name="ingest-grace")
                    if callable(getattr(self.derive, "fold", None)):
                        group.create_task(self._fold(), name="ingest-fold")
        finally:
            if len(_gc_saved) == 1:  # the last Ingest of this process: back to how it was
                gc.set_threshold(*_gc_saved[0])
            _gc_saved.pop()
            try:
                await asyncio.wait_for(self.pool.close(), STOP_GRACE_S)
            except TimeoutError:  # a PostgreSQL that does not answer: drop the connections
                self.pool.terminate()
            for conn in self._streams.values():
                await conn.close()
            await self.redis.close()

    def stop(self) -> None:
        """Stop between batches; a shard still stuck after STOP_GRACE_S (a Redis or PostgreSQL that does not
        answer) is cancelled: what it read and did not acknowledge stays pending and is read again."""
        self._stop.set()

    async def _cut_short(self, consumers: list[asyncio.Task[None]]) -> None:
        await self._stop.wait()
        _, stuck = await asyncio.wait(consumers, timeout=STOP_GRACE_S)
        for task in stuck:
            log.warning("%s did not stop within %.0fs; cancelling it", task.get_name(), STOP_GRACE_S)
            task.cancel()

    async def _fold(self) -> None:
        """Every `fold_every_s` of the derive step, its `fold` in a transaction of its own (billing/derive.py: the
        rollup deltas into the totals). A failed fold changes nothing (one transaction) and is tried again later."""
        every = float(getattr(self.derive, "fold_every_s", 5.0))
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), every)
            if self._stop.is_set():
                return
            assert self.pool is not None
            try:
                async with self.pool.acquire() as conn, conn.transaction():
                    await self.derive.fold(conn)  # type: ignore[union-attr]
            except Exception as exc:  # never let the fold stop the shards: what it did not commit, it did not do
                self._warn.warn("fold", "folding the rollups failed, trying again later: %s", exc)

    async def _ensure_group(self, key: str) -> None:
        try:
            await self._client(key).call(b"XGROUP", b"CREATE", key, GROUP, b"0", b"MKSTREAM", timeout=COMMAND_TIMEOUT_S)
        except ReplyError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def _client(self, key: str) -> Redis:
        """The shard's client (key: its stream)."""
        conn = self._streams.get(key)
        if conn is None:
            core = self.settings.core
            assert core.redis_url is not None
            conn = self._streams[key] = Redis(core.redis_url, core.redis_cluster)
        return conn

    async def _command(self, key: str, *args: str | bytes | int, timeout: float = COMMAND_TIMEOUT_S) -> Any:
        """One command on the shard's raw connection, (re)connected when needed; an error reply is raised."""
        return await self._client(key).call(*args, timeout=timeout)

    async def _consume(self, shard: int) -> None:
        key = stream_key(self.settings.core.key_prefix, shard)
        consumer = f"{self.settings.consumer}:{shard}"
        backlog = True  # first drain what this consumer left pending before a crash
        last_claim = last_trim = 0.0
        while not self._stop.is_set():
            try:
                if backlog:
                    await self._ensure_group(key)
                now = time.monotonic()
                if now - last_claim > self.settings.claim_idle_ms / 2000:
                    last_claim = now
                    await self._claim(shard, key, consumer)
                if now - last_trim > 10:
                    last_trim = now
                    await trim(self._client(key), key, self.settings.retention_s)
                block = () if backlog else (b"BLOCK", self.settings.block_ms)
                reply = await self._command(
                    key, b"XREADGROUP", b"GROUP", GROUP, consumer, b"COUNT", self.settings.batch, *block,
                    b"STREAMS", key, b"0" if backlog else b">",
                    timeout=COMMAND_TIMEOUT_S if backlog else self.settings.block_ms / 1000 + READ_MARGIN_S,
                )  # fmt: skip
                entries: list[Entry] = reply[0][1] if reply else []
                if backlog and not entries:
                    backlog = False
                    continue
                if not backlog and entries and len(entries) < self.settings.batch // 10 and self.settings.linger_ms:
                    entries += await self._linger(key, consumer, len(entries))
                if entries:
                    await self._process(shard, key, entries, redelivered=backlog)
            except _RETRYABLE as exc:
                self._warn.warn(f"{shard}:unavailable", "shard %d: redis unavailable, retrying: %s", shard, exc)
                backlog = True
                await asyncio.sleep(0.5)
            except (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, asyncpg.CannotConnectNowError) as exc:
                log.warning("shard %d: postgres unavailable, retrying: %s", shard, exc)
                backlog = True  # the batch stays pending and is read again
                await asyncio.sleep(0.5)
            except asyncpg.TransactionRollbackError as exc:  # a deadlock or serialization failure: just again
                log.info("shard %d: transaction rolled back (%s), retrying the batch", shard, exc)
                backlog = True
                await asyncio.sleep(0.01)
            except Exception as exc:  # never let one shard's surprise stop the others: the batch stays pending
                reason = expected_state(exc)
                if reason is None:
                    log.exception("shard %d: unexpected error, retrying the batch", shard)
                else:  # a failover or a restart under way: one line, now and then
                    self._warn.warn(f"{shard}:{reason.split()[0]}", "shard %d: redis %s, retrying", shard, reason)
                backlog = True
                await asyncio.sleep(1.0 if reason is None else 0.5)

    async def _linger(self, key: str, consumer: str, have: int) -> list[Entry]:
        """A few entries came: wait a moment for more, so a trickle is not a transaction per event. The
        entries read so far stay pending (unacknowledged) meanwhile, like any batch in flight."""
        await asyncio.sleep(self.settings.linger_ms / 1000)
        reply = await self._command(
            key, b"XREADGROUP", b"GROUP", GROUP, consumer, b"COUNT", self.settings.batch - have,
            b"STREAMS", key, b">",
        )  # fmt: skip
        return reply[0][1] if reply else []

    async def _claim(self, shard: int, key: str, consumer: str) -> None:
        """Take over entries a dead consumer left pending; they are processed with our own backlog."""
        cursor: bytes = b"0-0"
        while True:
            reply = await self._command(
                key, b"XAUTOCLAIM", key, GROUP, consumer, self.settings.claim_idle_ms, cursor, b"COUNT", 500
            )
            cursor, claimed = reply[0], reply[1]
            if claimed:
                await self._process(shard, key, claimed, redelivered=True)
            if cursor == b"0-0":
                return

    async def _process(self, shard: int, key: str, entries: list[Entry], redelivered: bool = False) -> None:
        rows: list[Parsed] = []
        seen: set[str] = set()
        ids: list[bytes] = []
        dead: list[tuple[bytes, Sequence[bytes], str]] = []
        parse = events.parse
        for count, (entry_id, fields) in enumerate(entries, 1):
            if count % _YIELD_EVERY == 0:  # let the other shards' round trips go on while this batch is parsed
                await asyncio.sleep(0)
            if not fields:  # deleted by a trim while pending: nothing left to store
                ids.append(entry_id)
                continue
            data, flag, within, burst = _payload(fields)
            try:
                parsed = parse(data, flag, within, burst)
                ids.append(entry_id)
                event_id = parsed[0][0]
                if event_id in seen:  # the same event twice in one batch: store and derive it once
                    continue
                seen.add(event_id)
                rows.append(parsed)
            except events.BadEvent as exc:
                dead.append((entry_id, fields, str(exc)))
        try:
            await self._commit(rows, fresh=not redelivered)
        except (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError, ValueError) as exc:
            # One bad row fails the batch: retry one by one so the others land and the culprit is isolated.
            log.warning("shard %d: batch of %d failed (%s); retrying entry by entry", shard, len(rows), exc)
            await self._process_singly(shard, key, entries)
            return
        if dead:
            await self._dead_letter(shard, dead)
        self._commits += 1
        if self._commits == self.settings.crash_after_commit:
            os._exit(137)  # fault injection: the batch is committed and not acknowledged
        await self._ack(key, ids + [entry_id for entry_id, _, _ in dead])
        self.stats.batches += 1
        self.stats.events += len(rows)

    async def _process_singly(self, shard: int, key: str, entries: list[Entry]) -> None:
        for entry_id, fields in entries:
            data, flag, within, burst = _payload(fields) if fields else (b"", None, None, None)
            for attempt in range(3):
                try:
                    await self._commit([events.parse(data, flag, within, burst)] if fields else [], fresh=False)
                    break
                except asyncpg.UniqueViolationError as exc:
                    # Another shard's worker took the same order id a moment ago: the next attempt sees it.
                    if attempt == 2:
                        await self._dead_letter(shard, [(entry_id, fields, str(exc))])
                except (
                    events.BadEvent,
                    asyncpg.DataError,
                    asyncpg.IntegrityConstraintViolationError,
                    ValueError,
                ) as exc:
                    await self._dead_letter(shard, [(entry_id, fields, str(exc))])
                    break
            await self._ack(key, [entry_id])

    async def _commit(self, rows: list[Parsed], fresh: bool) -> None:
        if not rows:
            return
        assert self.pool is not None
        async with self.pool.acquire() as conn:
            await events.ensure_partitions(conn, {row[1].date() for row, _ in rows}, self._known_days)
            # The transaction must finish once begun: a cancelled commit would leave us unsure what landed,
            # and the connection must not go back to the pool while it still runs.
            transaction = asyncio.ensure_future(self._transaction(conn, rows, fresh))
            try:
                await asyncio.shield(transaction)
            except asyncio.CancelledError:
                await transaction
                raise

    async def _transaction(self, conn: asyncpg.Connection, rows: list[Parsed], fresh: bool) -> None:
        # Entries delivered for the first time are almost always new events: COPY them straight into
        # `events` (the primary key refuses a repeat, and then the batch goes again the careful way).
        try:
            await self._store_and_derive(conn, rows, fresh)
        except events.AlreadyStored:
            await self._store_and_derive(conn, rows, False)

    async def _store_and_derive(self, conn: asyncpg.Connection, rows: list[Parsed], fresh: bool) -> None:
        async with conn.transaction():
            new = await events.store(conn, [row for row, _ in rows], fresh)
            count = len(rows) if new is None else len(new)
            if self.derive is not None and count:
                new_events = [e for _, e in rows] if new is None else [e for _, e in rows if e["id"] in new]
                await self.derive(conn, new_events)
        self.stats.new_events += count

    async def _ack(self, key: str, ids: list[bytes]) -> None:
        """XACK after commit, retried until Redis takes it or ingest is told to stop; a lost ack only means a
        harmless re-read (the entries stay pending, and storing them again is a no-op)."""
        if not ids:
            return
        attempt = 0
        while True:
            try:
                await asyncio.shield(self._command(key, b"XACK", key, GROUP, *ids))
                return
            except _RETRYABLE as exc:
                attempt += 1
                if self._stop.is_set():
                    log.warning(
                        "stopping with %d entries of %s not acknowledged (read again later): %s", len(ids), key, exc
                    )
                    return
                self._warn.warn(f"ack:{key}", "ack failed (attempt %d), retrying: %s", attempt, exc)
                with contextlib.suppress(TimeoutError):  # a stop ends the wait at once
                    await asyncio.wait_for(self._stop.wait(), min(0.1 * attempt, 2.0))

    async def _dead_letter(self, shard: int, dead: list[tuple[bytes, Sequence[bytes], str]]) -> None:
        """Park entries that cannot be stored, with every field Redis gave them ("d", "u", "c", "b") and the reason."""
        key = dead_key(self.settings.core.key_prefix, shard)
        for entry_id, fields, reason in dead:
            kept: dict[bytes | str, bytes | str] = dict(zip(fields[::2], fields[1::2], strict=False))
            named = {"entry": entry_id, **kept, "reason": reason[:500].encode()}
            await self._client(stream_key(self.settings.core.key_prefix, shard)).call(
                b"XADD", key, b"*", *(part for pair in named.items() for part in pair), timeout=COMMAND_TIMEOUT_S
            )
        self.stats.dead += len(dead)
        log.error("shard %d: %d entries to the dead-letter stream, first: %s", shard, len(dead), dead[0][2])


def _payload(fields: Sequence[bytes]) -> tuple[bytes, bytes | None, bytes | None, bytes | None]:
    """The payload ("d"), the uniqueness flag ("u"), the cap verdict ("c") and the burst verdict ("b") of an
    entry's flat field list (None when absent)."""
    if len(fields) == 2 and fields[0] == b"d":
        return fields[1], None, None, None
    if len(fields) == 4 and fields[2] == b"b" and fields[0] == b"d":  # a view a person's address made
        return fields[1], None, None, fields[3]
    named = dict(zip(fields[::2], fields[1::2], strict=False))
    return named.get(b"d", b""), named.get(b"u"), named.get(b"c"), named.get(b"b")


def fields_of(flat: Sequence[Any]) -> dict[str, Any]:
    """A flat [name, value, ...] reply (XINFO) as a dict with str names."""
    return {(k.decode() if isinstance(k, bytes) else str(k)): v for k, v in zip(flat[::2], flat[1::2], strict=False)}


async def billing_group(redis: Redis, key: str, timeout: float = COMMAND_TIMEOUT_S) -> dict[str, Any] | None:
    """The billing group of a stream as XINFO GROUPS tells it (name, pending, last-delivered-id, entries-read,
    lag), or None when the stream or the group does not exist."""
    try:
        groups = await redis.call(b"XINFO", b"GROUPS", key, timeout=timeout)
    except ReplyError as exc:
        if "no such key" in str(exc).lower():
            return None
        raise
    return next((g for g in map(fields_of, groups) if g.get("name") in (GROUP, GROUP.encode())), None)


async def trim(redis: Redis, key: str, retention_s: int) -> None:
    """Drop acknowledged entries older than the retention; never one still pending or undelivered."""
    group = await billing_group(redis, key)
    if group is None:
        return
    bound = group["last-delivered-id"]
    bound = bound.decode() if isinstance(bound, bytes) else bound
    count, oldest, *_ = await redis.call(b"XPENDING", key, GROUP, timeout=COMMAND_TIMEOUT_S)
    if count:
        bound = oldest.decode() if isinstance(oldest, bytes) else oldest
    cutoff_ms = int(time.time() * 1000) - retention_s * 1000
    bound_ms = int(bound.split("-")[0])
    minid = bound if bound_ms <= cutoff_ms else f"{cutoff_ms}-0"
    with contextlib.suppress(ReplyError):
        await redis.call(b"XTRIM", key, b"MINID", minid, timeout=COMMAND_TIMEOUT_S)
