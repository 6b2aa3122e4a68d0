"""Click caps by lease: each tracker process takes blocks of a cap's budget from Redis and admits clicks from them
in memory.

A click cap's counter in Redis ({PREFIX}:cap:...) holds the clicks *admitted*, as the trackers reported them; the
units a process holds but has not used yet are its lease, a field of {PREFIX}:lease:... (same hash tag, same
Cluster slot) worth "units:expires_ms". One script (LEASE) does everything atomically for every cap a click
counts against: it returns expired leases' units to the cap, adds the used units a process reports to the
counter, takes them off its lease, and grants a new block only when *every* cap has room for it, so the sum of
admitted and leased units never passes any limit, however many trackers take from it.

The block follows the rate this process admits the link's clicks at (a quarter of a second's worth, at most
CLICKMINT_CAP_BLOCK_MAX) and is never more than a quarter of what is left, so it shrinks to one as the cap
nears. A process reports the units it used with each batch of appends, in the same pipeline and ahead of them
(on a Cluster in the round trip before them), so a click in a stream was always counted first. It uses a lease
only for half its life (CLICKMINT_CAP_LEASE_MS) after Redis last renewed it; each report renews it, an idle
block is given back, and so is every block when the process stops. A process killed with units in hand loses
them only until its lease expires: the next LEASE call by any tracker returns them to the cap.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
from collections.abc import Sequence
from typing import Any

from kernel import keys
from kernel.caps import Limit
from kernel.redis.resp import RedisUnavailable, pack
from tracker.caps import DAY_TTL_S

log = logging.getLogger("clickmint.tracker.leases")

DEFAULT_LEASE_MS = 10_000  # how long Redis keeps a lease nobody renews (a killed tracker's units come back then)
DEFAULT_BLOCK_MAX = 100  # the most units one block holds: under-delivery while leases live <= processes x this
FILL_S = 0.25  # a block is this many seconds of the rate the process admits the link's clicks at
OVER = b""  # admit's answer for a click over cap
SHARE = 4  # a block is never more than 1/SHARE of what is left of the tightest cap: one unit near the cap

# KEYS: per cap its counter (admitted clicks) and its lease hash; ARGV: the lease id, its life (ms), the units
# wanted (0: none; -1: the lease ends, the process stops), the units given back, then per cap its limit, its
# counter's TTL (s, 0: none) and the units used since the last report (negative: a click found to be a burst
# gives its unit back). A lease that gives units up (drop > 0) and is left with none is forgotten, as is one
# that ends; otherwise it stays, with 0 units, until it expires.
# Returns {granted, alive}: alive 0 when Redis held nothing for this lease any more (expired, or new).
LEASE = b"""
local lease, life, want, drop = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local ending = want < 0  -- the process stops: the lease ends whatever it holds
if ending then want = 0 end
local time = redis.call('TIME')
local now = time[1] * 1000 + math.floor(time[2] / 1000)
local n, room, alive, kept, had = #KEYS / 2, nil, true, {}, {}
for i = 1, n do
  local counter, leases, at = KEYS[2 * i - 1], KEYS[2 * i], 5 + 3 * (i - 1)
  local limit, ttl, used = tonumber(ARGV[at]), tonumber(ARGV[at + 1]), tonumber(ARGV[at + 2])
  local others, held = 0, nil
  local fields = redis.call('HGETALL', leases)
  for j = 1, #fields, 2 do
    local units, expires = string.match(fields[j + 1], '^(%d+):(%d+)$')
    if tonumber(expires) <= now then
      redis.call('HDEL', leases, fields[j])  -- expired: its unused units are the cap's again
    elseif fields[j] == lease then
      held = tonumber(units)
    else
      others = others + tonumber(units)
    end
  end
  local admitted
  if used ~= 0 then
    admitted = redis.call('INCRBY', KEYS[2 * i - 1], used)
    if admitted == used and ttl > 0 then redis.call('EXPIRE', counter, ttl) end
  else
    admitted = tonumber(redis.call('GET', counter) or '0')
  end
  if held == nil then alive = false end
  had[i] = held ~= nil
  kept[i] = held and math.max(held - used - drop, 0) or 0  -- a unit given back to an ended lease: the cap's
  local left = limit - admitted - others - kept[i]
  if room == nil or left < room then room = left end
end
local grant = 0
if want > 0 and room > 0 then grant = math.min(want, math.max(1, math.floor(room / 4))) end
for i = 1, n do
  local leases, units = KEYS[2 * i], kept[i] + grant
  if units > 0 or (drop == 0 and not ending and (had[i] or want > 0)) then  -- kept at 0 units while it lives: a burst's
    -- unit may come back to it
    redis.call('HSET', leases, lease, units .. ':' .. (now + life))
    if redis.call('PTTL', leases) < life then redis.call('PEXPIRE', leases, life) end
  else
    redis.call('HDEL', leases, lease)
  end
end
return {grant, alive and 1 or 0}
"""
LEASE_SHA = hashlib.sha1(LEASE).hexdigest().encode()


class Block:
    """This process's units of one set of caps (a link's offer and partner caps for one UTC day)."""

    __slots__ = (
        "admits",
        "drop",
        "expires",
        "head",
        "last_use",
        "lease",
        "limits",
        "packed",
        "pending",
        "rate_since",
        "retired",
        "taking",
        "units",
        "want",
    )

    def __init__(self, lease: bytes, counters: list[tuple[str, str]], limits: list[tuple[int, int]]) -> None:
        self.lease = lease  # the id its units are held under in Redis; a new one after a call whose outcome is unknown
        self.limits = limits  # per cap (limit, counter TTL)
        self.head = [key for pair in counters for key in pair]  # KEYS: counter, lease hash, counter, ...
        self.units = 0  # what this process may still admit from it
        self.pending: dict[bytes, int] = {}  # lease id -> units used (less bursts given back) not yet reported
        self.drop = 0  # units of the current lease this process gave up, not yet told to Redis
        self.expires = 0.0  # monotonic: the units are usable until then (half the lease's life after a renewal)
        self.taking: asyncio.Future[int | None] | None = None
        self.admits = 0  # admissions since rate_since: the rate the next block follows
        self.rate_since = time.monotonic()
        self.want = 1
        self.last_use = 0.0
        self.packed: tuple[bytes, list[bytes]] | None = None  # the command's fixed parts, packed once
        self.retired = False  # forgotten by CapLeases (idle, empty): whoever holds it takes a new one

    def command(self, lease: bytes, life_ms: int, want: int, used: int, drop: int) -> bytes:
        """The LEASE call, packed by hand around the parts that never change (what pack() makes, at less cost)."""
        packed = self.packed
        if packed is None:
            args = len(self.head) + 4 + 3 * len(self.limits)
            head = (
                b"*%d\r\n" % (3 + args) + pack(b"EVALSHA", LEASE_SHA, len(self.head), *self.head).split(b"\r\n", 1)[1]
            )
            caps = [pack(limit, ttl).split(b"\r\n", 1)[1] for limit, ttl in self.limits]
            packed = self.packed = (head, caps)
        head, caps = packed
        u = b"%d" % used
        used_arg = b"$%d\r\n%s\r\n" % (len(u), u)
        return b"".join((head, _arg(lease), _arg(b"%d" % life_ms), _arg(b"%d" % want), _arg(b"%d" % drop),
                         *(cap + used_arg for cap in caps)))  # fmt: skip


def _arg(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


# One LEASE call of a block: (block, lease id, used, drop, monotonic time sent, the command).
Call = tuple[Block, bytes, int, int, float, bytes]


class CapLeases:
    """The blocks of one tracker process; talks to Redis through the recorder's connection."""

    def __init__(
        self, recorder: Any, prefix: str, life_ms: int = DEFAULT_LEASE_MS, block_max: int = DEFAULT_BLOCK_MAX
    ) -> None:
        self.recorder = recorder
        self.prefix = prefix
        self.life_ms = life_ms
        self.block_max = block_max
        self._process = b"%s.%d" % (os.urandom(6).hex().encode(), os.getpid())
        self._blocks: dict[tuple[Any, ...], Block] = {}
        self._serial = 0
        self._task: asyncio.Task[None] | None = None
        self.granted = 0  # units Redis granted this process
        self.calls = 0  # LEASE calls outside the batches (takes, idle blocks given back)
        self.failures = 0  # calls (or batches of reports) whose outcome was unknown: a new lease for their blocks

    def _lease_id(self) -> bytes:
        self._serial += 1
        return b"%s.%d" % (self._process, self._serial)

    def block(self, offer_id: int, partner_id: int, limits: Sequence[Limit], now: float) -> Block | None:
        """The block a click of this offer and partner takes from, at `now` (its UTC day); None: no click cap."""
        day = time.strftime("%Y%m%d", time.gmtime(now))
        counters: list[tuple[str, str]] = []
        values: list[tuple[int, int]] = []
        for limit in limits:
            if limit.metric != "clicks":
                continue
            partner = partner_id if limit.per_partner else None
            when = day if limit.period == "daily" else None
            counters.append(
                (
                    keys.cap_key(self.prefix, offer_id, partner, "clicks", when),
                    keys.lease_key(self.prefix, offer_id, partner, "clicks", when),
                )
            )
            values.append((limit.value, DAY_TTL_S if when else 0))
        if not counters:
            return None
        name = (tuple(counters), tuple(values))
        block = self._blocks.get(name)
        if block is None:
            block = self._blocks[name] = Block(self._lease_id(), counters, values)
        return block

    async def admit(self, block: Block) -> bytes | None:
        """Take one unit of the block: the lease id it came from (give it to give_back), OVER (b"") over cap, None
        when Redis could not say (the click is let through, flagged degraded)."""
        while True:
            now = time.monotonic()
            if block.units > 0:
                if now < block.expires:
                    block.units -= 1
                    block.pending[block.lease] = block.pending.get(block.lease, 0) + 1
                    block.admits += 1
                    block.last_use = now
                    if block.units * SHARE < block.want and block.taking is None:  # running low: the next one now
                        block.taking = asyncio.ensure_future(self._take(block))
                    return block.lease
                block.drop += block.units  # past its use-by time here: Redis gets them back
                block.units = 0
            if block.taking is None:
                block.taking = asyncio.ensure_future(self._take(block))
            granted = await asyncio.shield(block.taking)
            if granted is None:
                return None
            if granted == 0 and block.units == 0:
                return OVER

    def give_back(self, block: Block, lease: bytes) -> None:
        """A click admitted from `lease` found to be a burst: its unit goes back (bursts never use up a cap)."""
        block.pending[lease] = block.pending.get(lease, 0) - 1
        block.admits -= 1
        if lease == block.lease and time.monotonic() < block.expires:
            block.units += 1
        elif lease == block.lease:
            block.drop += 1
        # else the lease was replaced: its units come back when it expires; the report lowers the count now

    def _calls(self, block: Block, want: int, now: float, end: bool = False) -> list[Call]:
        """The LEASE calls that report a block's used units per lease id, the last one for its current lease;
        `end`: the last one ends that lease (the process stops)."""
        calls: list[Call] = []
        pending, block.pending = block.pending, {}
        for lease, used in pending.items():
            if lease != block.lease and used:
                calls.append((block, lease, used, 0, now, block.command(lease, self.life_ms, 0, used, 0)))
        used, drop = pending.get(block.lease, 0), block.drop
        block.drop = 0
        if end:
            calls.append(
                (block, block.lease, used, drop, now, block.command(block.lease, self.life_ms, -1, used, drop))
            )
            return calls
        if drop:  # units given up end their lease (Redis forgets it): later units come under a new one
            command = block.command(block.lease, self.life_ms, 0, used, drop)
            calls.append((block, block.lease, used, drop, now, command))
            block.lease, block.units, block.expires, used = self._lease_id(), 0, 0.0, 0
        if want or used:
            command = block.command(block.lease, self.life_ms, want, used, 0)
            calls.append((block, block.lease, used, 0, now, command))
        return calls

    def _failed(self, calls: list[Call]) -> None:
        """Calls whose outcome is unknown: used units are reported again (at worst counted twice: under-delivery,
        never over), and the block starts a new lease, the old one's units coming back when it expires."""
        self.failures += 1
        for block, lease, used, _drop, _sent, _command in calls:
            if used > 0:
                block.pending[lease] = block.pending.get(lease, 0) + used
            if lease == block.lease:
                block.lease, block.units, block.drop, block.expires = self._lease_id(), 0, 0, 0.0

    def _done(self, calls: list[Call], replies: list[Any]) -> int:
        """Apply the replies of calls; returns the units granted to the current lease."""
        granted = 0
        for (block, lease, _used, _drop, sent, _command), reply in zip(calls, replies, strict=True):
            if lease != block.lease:
                continue
            alive = int(reply[1])
            if not alive:
                block.units = 0  # Redis held nothing for it: whatever is left here is not reserved
            block.expires = max(block.expires if alive else 0.0, sent + self.life_ms / 2000)
            block.units += int(reply[0])
            granted += int(reply[0])
        self.granted += granted
        return granted

    async def _run(self, calls: list[Call], timeout: float | None) -> int | None:
        if not calls:
            return 0
        try:
            replies = await self.recorder.run([call[5] for call in calls], timeout)
        except RedisUnavailable:
            self._failed(calls)
            return None
        if not all(isinstance(reply, list) for reply in replies):
            log.warning("redis refused a cap lease call: %s", next(r for r in replies if not isinstance(r, list)))
            self._failed(calls)
            return None
        return self._done(calls, replies)

    async def _take(self, block: Block) -> int | None:
        try:
            if not self.recorder.redis_healthy:
                return None
            now = time.monotonic()
            elapsed = max(now - block.rate_since, 0.001)
            block.want = max(1, min(self.block_max, int(block.admits / elapsed * FILL_S) + 1))
            block.admits, block.rate_since = 0, now
            self.calls += 1
            calls = self._calls(block, block.want, now)
            lease = block.lease  # the last call takes for it
            granted = await self._run(calls, None)
            return granted if lease == block.lease else None  # replaced meanwhile (another call failed): cannot say
        finally:
            block.taking = None

    def reports(self) -> list[Call]:
        """The units used (and given up) since the last report, per block, as the LEASE calls of the next batch."""
        now = time.monotonic()
        calls: list[Call] = []
        for block in self._blocks.values():
            if block.pending or block.drop:
                calls += self._calls(block, 0, now)
        return calls

    def reported(self, calls: list[Call], replies: list[Any] | None) -> None:
        """The replies to a batch's reports; None (or an error reply): the outcome is unknown."""
        if replies is None or not all(isinstance(reply, list) for reply in replies):
            self._failed(calls)
        else:
            self._done(calls, replies)

    def start(self) -> None:
        self._task = asyncio.create_task(self._tend(), name="cap-leases")

    async def _tend(self) -> None:
        """Eight times a lease's life: report what waits, give back idle blocks, forget empty ones."""
        period = self.life_ms / 8000
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for name, block in list(self._blocks.items()):
                if block.taking is not None:
                    continue
                idle = now - block.last_use > period
                if block.units and (idle or now >= block.expires):
                    block.drop += block.units
                    block.units = 0
                if not block.units and idle:  # forgotten here: its lease ends in Redis too
                    del self._blocks[name]
                    block.retired = True
                    self.calls += 1
                    await self._run(self._calls(block, 0, now, end=True), 1.0)
                elif block.pending or block.drop:
                    self.calls += 1
                    await self._run(self._calls(block, 0, now), 1.0)

    async def stop(self) -> None:
        """Give every unused unit back (the recorder's last batch has landed): a clean stop under-delivers nothing."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for block in list(self._blocks.values()):
            if block.taking is not None:
                with contextlib.suppress(Exception):
                    await block.taking
            block.drop += block.units
            block.units = 0
            self.calls += 1
            if await self._run(self._calls(block, 0, time.monotonic(), end=True), 1.0) is None:
                log.warning("could not give back a cap lease: its units return to the cap when it expires")
