"""Group commit: the events of all requests in flight go to Redis in one pipeline, else to the spool.

A request hands its event to `Recorder.record` and awaits only its own batch. A batch has one round
trip on a single Redis: one XADD per event, or for a click or view the tracker takes for a person's one
script that also counts the hit of its address and decides whether it is a burst, for a click decides its
uniqueness and appends the cap verdict the tracker took from its cap lease (tracker/leases.py). Ahead of the
appends, in the same pipeline, go the reports of the cap units the clicks used, so a click in a stream was
always counted first; on a Redis Cluster, where the caps and the streams live in different slots, those
reports and a conversion's cap checks go first in a round trip of their own, then the appends. If Redis is
down, errs, or is slower than the budget, the batch is fsynced to the local spool instead and the request
still succeeds; a background task replays the spool into the streams once Redis answers again. A spooled
event's burst verdict then comes from this process's own count (`BurstDetector`, the same rule), flagged
`degraded`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from typing import Any

import hiredis
import orjson

from kernel import keys
from kernel.redis.client import Redis
from kernel.redis.resp import RedisUnavailable, pack
from kernel.redis.scripts import (
    UNIQUE_REPLAY_XADD_SHA as _REPLAY_SHA,
)
from kernel.redis.scripts import (
    burst_args,
    burst_xadd_command,
    capped_unique_xadd_command,
    unique_xadd_command,
    xadd_command,
)
from tracker.bots import DEFAULT_BURST_LIMIT, DEFAULT_BURST_WINDOW_S, BurstDetector
from tracker.spool import Spool, SpoolError, parse_entries

log = logging.getLogger("clickmint.tracker.recorder")
_ReplyError = hiredis.ReplyError

DEFAULT_BUDGET_S = 0.020  # slower than this and the batch goes to the spool
REPLAY_CHUNK = 500
RECONNECT_INTERVAL_S = 0.25
# With Redis down and the spool full, a visitor still gets the redirect or pixel (the event is lost and
# counted); a conversion is refused with a 5xx instead, so the merchant's postback is retried later.
ANSWERED_WHEN_LOST = frozenset(("click", "view"))

# decide(event, replies_or_None): completes an event from its checks' replies (None: Redis unavailable).
Decide = Callable[[dict[str, Any], list[Any] | None], None]


class Entry:
    __slots__ = ("burst", "checks", "decide", "event", "lost", "replies", "shard", "unique", "within")

    def __init__(
        self,
        shard: int,
        event: dict[str, Any],
        checks: tuple[bytes, ...],
        decide: Decide | None,
        unique: tuple[bytes, int] | None,
        within: bool | None,
        burst: bytes | None,
    ) -> None:
        self.shard = shard
        self.event = event
        self.checks = checks
        self.decide = decide
        self.unique = unique  # (uniqueness key, window s): appended by the UNIQUE_XADD script
        self.within = within  # a capped click's verdict, appended as "c" by CAPPED_UNIQUE_XADD; None: no cap
        self.burst = burst  # the address whose hit this is (its key in Redis after the burst prefix)
        self.replies: list[Any] | None = None
        self.lost = False  # neither Redis nor the spool could take it (full disk)


class _BatchFuture(asyncio.Future):
    """The future of one batch, shared by its requests; cancelling one request must not cancel it."""

    def cancel(self, msg: Any = None) -> bool:
        return False


class Stats:
    """Counters the tracker exposes on /metrics."""

    def __init__(self) -> None:
        self.batches = 0
        self.events_redis = 0
        self.events_spooled = 0
        self.events_replayed = 0
        self.spool_errors = 0  # batches the spool could not take
        self.events_lost = 0  # events answered although nothing durable holds them (Redis down, spool full)
        self.scripts_reloaded = 0  # times Redis answered NOSCRIPT on a live connection and got the scripts again
        self.batch_sizes: dict[int, int] = {}  # upper bound -> count (histogram buckets)


_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 1 << 62)


class Recorder:
    """Owns the Redis connection and the spool of one tracker process."""

    def __init__(
        self,
        redis_url: str,
        prefix: str,
        spool: Spool,
        budget_s: float = DEFAULT_BUDGET_S,
        scripts: tuple[bytes, ...] = (),
        burst_limit: int = DEFAULT_BURST_LIMIT,
        burst_window_s: int = DEFAULT_BURST_WINDOW_S,
        cluster: str = "auto",
    ) -> None:
        self._conn = Redis(redis_url, cluster)  # checks the URL now; `cluster`: CLICKMINT_REDIS_CLUSTER
        self._scripts = scripts  # loaded at every connect: a restarted Redis has forgotten them
        self._prefix = prefix
        self._keys: dict[int, bytes] = {}
        self._burst_keys: dict[int, bytes] = {}  # shard -> the prefix of its hits' burst lists
        self._burst_args = burst_args(burst_limit, burst_window_s)
        self.bursts = BurstDetector(burst_limit, burst_window_s)  # only for hits Redis could not count
        self.spool = spool
        self.budget_s = budget_s
        self.stats = Stats()
        self._batch: list[Entry] = []
        self._batch_future: asyncio.Future[None] | None = None
        self._flushing = False
        self._healthy = False
        self._one_trip = False  # a single Redis: cap lease reports in the pipeline of the appends
        self.leases: Any = None  # the process's CapLeases (tracker/leases.py): their reports go with each batch
        self._wake = asyncio.Event()  # set when a batch failed: the maintainer reconnects without waiting
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self.spool_ok = True

    @property
    def redis_healthy(self) -> bool:
        return self._healthy

    async def start(self) -> None:
        with contextlib.suppress(RedisUnavailable):
            await self._connect()
        self._tasks.append(asyncio.create_task(self._maintain(), name="recorder-maintain"))

    async def settle(self) -> None:
        """Wait until no batch is pending or being written."""
        while self._batch_future is not None or self._flushing:
            pending = self._batch_future
            if pending is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(pending)
            else:
                await asyncio.sleep(0.001)

    async def stop(self) -> None:
        self._stopping = True
        await self.settle()  # let the last batch land
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._conn.close()
        self.spool.close()

    async def _connect(self) -> None:
        """Connect, to one server or (configured or found out by asking) to every master of a Redis Cluster."""
        await self._conn.connect()
        self._one_trip = not self._conn.is_cluster
        self._burst_keys = {}
        try:
            await self._load_scripts(2.0)
        except RedisUnavailable:
            await self._conn.close()
            raise
        self._healthy = True

    async def _load_scripts(self, timeout: float) -> None:
        if self._scripts:
            replies = await self._conn.execute([pack(b"SCRIPT", b"LOAD", script) for script in self._scripts], timeout)
            if any(isinstance(reply, hiredis.ReplyError) for reply in replies):
                raise RedisUnavailable(f"cannot load scripts: {failed_reply(replies)}")

    async def run(self, commands: list[bytes], timeout: float | None) -> list[Any]:
        """A few script calls outside the batch (cap leases); None: the Redis budget. Raises RedisUnavailable."""
        return await self._execute(commands, self.budget_s if timeout is None else timeout)

    async def _execute(self, commands: list[bytes], timeout: float | None = None) -> list[Any]:
        """One round trip of the batch; a script Redis no longer knows is loaded again and its calls resent.

        Redis forgets scripts on SCRIPT FLUSH, and a node that never loaded them can take over a slot;
        the connection then stays up, so without this every click would be spooled as unchecked.
        """
        timeout = self.budget_s if timeout is None else timeout
        replies = await self._conn.execute(commands, timeout=timeout)
        if self._one_trip and self._conn.is_cluster:  # met MOVED: a cluster after all, keys per slot from now on
            self._one_trip = False
            self._burst_keys = {}
        if _ReplyError not in map(type, replies):  # looked for in C: the common batch has no error at all
            return replies
        missing = [i for i, reply in enumerate(replies) if _noscript(reply)]
        if missing and self._scripts:
            log.warning("redis no longer knows the tracker's scripts; loading them again")
            await self._load_scripts(timeout)
            self.stats.scripts_reloaded += 1
            again = await self._conn.execute([commands[i] for i in missing], timeout=timeout)
            for i, reply in zip(missing, again, strict=True):
                replies[i] = reply
        return replies

    def _key(self, shard: int) -> bytes:
        key = self._keys.get(shard)
        if key is None:
            key = self._keys[shard] = keys.stream_key(self._prefix, shard).encode()
        return key

    def _burst_key(self, shard: int) -> bytes:
        """The prefix of the burst lists of hits appended to a shard: one list per address for every shard
        on a single Redis; on a Cluster one per address and shard, in the slot of the shard's stream."""
        key = self._burst_keys.get(shard)
        if key is None:
            key = self._burst_keys[shard] = keys.burst_prefix(self._prefix, None if self._one_trip else shard).encode()
        return key

    async def command(self, *commands: bytes) -> list[Any]:
        """Run a few commands outside the batch (config checks, readiness); raises RedisUnavailable."""
        return await self._conn.execute(list(commands), timeout=1.0)

    async def record(
        self,
        shard: int,
        event: dict[str, Any],
        checks: tuple[bytes, ...] = (),
        decide: Decide | None = None,
        unique: tuple[bytes, int] | None = None,
        within: bool | None = None,
        burst: bytes | None = None,
    ) -> Entry:
        """Make the event durable (Redis stream or spool) in the next batch; returns it with its check replies.

        `burst`: the (hashed) address of a click or view taken for a person's: the script that appends the
        event counts the hit and decides whether it is a burst; a burst's event then has bot "burst" (and a
        click unique False). `unique`: with `burst`, (key, window) to decide click uniqueness in that same
        script call. `within`: with `unique`, a capped click's verdict from its cap lease, appended as "c".
        """
        if unique is not None and burst is None:
            raise ValueError("a click's uniqueness is decided with its burst verdict: give its address")
        entry = Entry(shard, event, checks, decide, unique, within, burst)
        future = self._batch_future
        if future is None:
            future = self._batch_future = _BatchFuture(loop=asyncio.get_running_loop())
            if not self._flushing:
                asyncio.get_running_loop().call_soon(self._start_flush)
        self._batch.append(entry)
        # A _BatchFuture refuses cancel(): a cancelled request stops waiting, the batch is written anyway.
        await future
        if entry.lost and event["type"] not in ANSWERED_WHEN_LOST:
            raise SpoolError("nowhere durable to record this conversion: Redis is down and the spool is full")
        return entry

    def _start_flush(self) -> None:
        if self._flushing or not self._batch:
            return
        batch, future = self._batch, self._batch_future
        self._batch, self._batch_future = [], None
        self._flushing = True
        asyncio.get_running_loop().create_task(self._flush(batch, future))  # type: ignore[arg-type]

    async def _flush(self, batch: list[Entry], future: asyncio.Future[None]) -> None:
        try:
            await self._write(batch)
            future.set_result(None)
        except BaseException as exc:
            future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        finally:
            self._flushing = False
            if self._batch:
                self._start_flush()

    async def _write(self, batch: list[Entry]) -> None:
        self.stats.batches += 1
        size = len(batch)
        for bound in _BATCH_BUCKETS:
            if size <= bound:
                break
        self.stats.batch_sizes[bound] = self.stats.batch_sizes.get(bound, 0) + 1
        if self._healthy:
            try:
                await self._write_redis(batch)
                return
            except RedisUnavailable as exc:
                log.warning("redis unavailable, spooling: %s", exc)
                self._healthy = False
                self._wake.set()  # reconnect now: a Redis that was only slow for a moment is back at once
        await self._write_spool(batch)

    async def _write_redis(self, batch: list[Entry]) -> None:
        leases = self.leases
        reports = leases.reports() if leases is not None else []
        try:
            await self._write_redis_reported(batch, reports)
        except BaseException:
            if reports:  # not answered
                leases.reported(reports, None)  # outcome unknown: reported again, the leases renewed
            raise

    async def _write_redis_reported(self, batch: list[Entry], reports: list[Any]) -> None:
        ahead = [entry for entry in batch if entry.checks]  # a conversion's cap check: it decides the event
        first = [call[5] for call in reports] if not self._one_trip else []
        if ahead or first:
            replies = await self._execute(first + [command for entry in ahead for command in entry.checks])
            if first:
                done = reports[:]
                reports.clear()  # answered: not to be reported again if the appends fail
                self.leases.reported(done, replies[: len(first)])
            at = len(first)
            for entry in ahead:
                n = len(entry.checks)
                entry.replies = replies[at : at + n]
                at += n
                if entry.decide is not None:
                    entry.decide(entry.event, entry.replies)
        dumps, key, burst_key, args = orjson.dumps, self._key, self._burst_key, self._burst_args
        commands = [call[5] for call in reports]  # a single Redis: the reports go first in the same pipeline
        commands += [
            xadd_command(key(e.shard), dumps(e.event))
            if e.burst is None
            else burst_xadd_command(burst_key(e.shard) + e.burst, key(e.shard), args, dumps(e.event))
            if e.unique is None
            else unique_xadd_command(
                e.unique[0], burst_key(e.shard) + e.burst, key(e.shard), e.unique[1], args, dumps(e.event)
            )
            if e.within is None
            else capped_unique_xadd_command(
                e.unique[0], burst_key(e.shard) + e.burst, key(e.shard), e.unique[1], args, e.within, dumps(e.event)
            )
            for e in batch
        ]
        replies = await self._execute(commands)
        if reports:
            done = reports[:]
            reports.clear()
            self.leases.reported(done, replies[: len(done)])
            replies = replies[len(done) :]
        failed: list[Entry] = []
        for entry, reply in zip(batch, replies, strict=True):
            if isinstance(reply, hiredis.ReplyError):
                failed.append(entry)
            elif entry.burst is not None and reply == 1:  # 1: a burst
                _burst(entry.event)
        if failed:  # e.g. OOM under noeviction: those events go to the spool, the rest are in the stream
            log.warning(
                "redis refused %d of %d events (%s), spooling them", len(failed), len(batch), failed_reply(replies)
            )
            await self._write_spool(failed)
        self.stats.events_redis += len(batch) - len(failed)

    async def _write_spool(self, batch: list[Entry]) -> None:
        for entry in batch:
            event = entry.event
            if entry.burst is not None and event.get("bot") is None:  # Redis could not count it: this process does
                if self.bursts.hit(entry.burst, event["ts"] / 1000):
                    _burst(event)
                event["degraded"] = True
            if entry.decide is not None and entry.replies is None:  # Redis could not check it
                entry.decide(entry.event, None)
        dumps = orjson.dumps
        lines = []
        for entry in batch:
            event = entry.event
            if entry.unique is not None and "unique" not in event:
                # Redis could not decide: the replay decides it by the same SET NX (a returning visitor's click
                # is then not unique, so not paid as one); until then the payload says unique, flagged degraded.
                event["unique"] = True
                event["degraded"] = True
                key, window = entry.unique
                lines.append(b"%d %s\t%s %d\n" % (entry.shard, dumps(event), key, window))
            else:
                lines.append(b"%d %s\n" % (entry.shard, dumps(event)))
        try:
            await asyncio.get_running_loop().run_in_executor(None, self.spool.append, lines)
        except SpoolError as exc:
            self.stats.spool_errors += 1
            self.stats.events_lost += len(batch)
            if self.spool_ok:  # once per episode, not once per batch: /metrics counts them all
                log.error("events are being lost: Redis cannot take them and %s", exc)
            self.spool_ok = False
            for entry in batch:
                entry.lost = True
            return
        self.spool_ok = True
        self.stats.events_spooled += len(batch)

    async def _maintain(self) -> None:
        """Reconnect when Redis went away; replay the spool once it answers."""
        while not self._stopping:
            if self._healthy and not self._conn.connected:
                # Redis closed the connection while no batch was going out (an idle worker, a killed server):
                # say so now rather than at the next click, so /readyz and /metrics tell the truth.
                log.warning("redis closed the connection; events go to the spool until it answers")
                self._healthy = False
            if not self._healthy:
                await self._conn.close()
                try:
                    await self._connect()
                    log.info("redis is back")
                except RedisUnavailable:
                    await asyncio.sleep(RECONNECT_INTERVAL_S)
                    continue
            try:
                await self.replay()
            except RedisUnavailable as exc:
                log.warning("spool replay interrupted: %s", exc)
                self._healthy = False
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), RECONNECT_INTERVAL_S)

    async def replay(self) -> int:
        """Move every claimable spool file into the streams; returns the number of events moved."""
        if self.spool.lines_written and not self._flushing:
            self.spool.rotate()
        moved = 0
        for path, fd in self.spool.claim():
            try:
                data = await asyncio.get_running_loop().run_in_executor(None, _read_all, fd)
                entries = list(parse_entries(data))
                for start in range(0, len(entries), REPLAY_CHUNK):
                    chunk = entries[start : start + REPLAY_CHUNK]
                    commands = [
                        pack(b"XADD", self._key(shard), b"*", b"d", payload)
                        if unique is None  # its verdicts are in its payload
                        else pack(b"EVALSHA", _REPLAY_SHA, 2, unique[0], self._key(shard), unique[1], payload)
                        for shard, payload, unique in chunk
                    ]
                    replies = await self._execute(commands, timeout=5.0)  # a forgotten script: loaded, resent
                    errors = [r for r in replies if isinstance(r, hiredis.ReplyError)]
                    if errors:
                        raise RedisUnavailable(f"redis refused a replayed event: {errors[0]}")
                os.unlink(path)
                moved += len(entries)
                self.stats.events_replayed += len(entries)
            finally:
                os.close(fd)
        if moved:
            log.info("replayed %d spooled events", moved)
        return moved


def _burst(event: dict[str, Any]) -> None:
    """The event as Redis's burst verdict makes it (ingest does the same from the entry's "b")."""
    event["bot"] = "burst"
    if event["type"] == "click":
        event["unique"] = False


def _read_all(fd: int) -> bytes:
    with open(fd, "rb", closefd=False) as handle:
        return handle.read()


def _noscript(reply: Any) -> bool:
    return isinstance(reply, hiredis.ReplyError) and str(reply).startswith("NOSCRIPT")


def failed_reply(replies: list[Any]) -> str:
    return next((str(r) for r in replies if isinstance(r, hiredis.ReplyError)), "")
