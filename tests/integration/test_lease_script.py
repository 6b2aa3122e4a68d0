"""The LEASE script on a real Redis: blocks shrink to one as a cap nears, a block is taken from every cap or none,
used units become admitted clicks, bursts give theirs back, expired leases return their units."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio

from kernel.caps import Limit
from kernel.settings import Settings
from tracker.leases import LEASE, Block, CapLeases

DAY = 86400.0 * 20000  # a fixed UTC day: 2024-10-04


async def _lease(client: redis.asyncio.Redis, block: Block, lease: bytes, want: int, used: int = 0, drop: int = 0):
    args: list[int] = []
    for limit, ttl in block.limits:
        args += [limit, ttl, used]
    return await client.eval(LEASE.decode(), len(block.head), *block.head, lease, 60_000, want, drop, *args)


@pytest.fixture
async def client(settings: Settings):
    c = redis.asyncio.Redis.from_url(settings.redis_url or "")
    yield c
    await c.aclose()


def _block(settings: Settings, limits: tuple[Limit, ...], partner: int = 3) -> Block:
    leases = CapLeases(None, settings.key_prefix)
    block = leases.block(7, partner, limits, DAY)
    assert block is not None
    return block


async def _admitted(client: redis.asyncio.Redis, block: Block) -> list[int]:
    return [int(await client.get(key) or 0) for key in block.head[::2]]


async def test_blocks_shrink_to_one_as_the_cap_nears(settings: Settings, client: redis.asyncio.Redis) -> None:
    block = _block(settings, (Limit("clicks", "daily", False, 100),))
    grants = []
    for _ in range(40):
        granted, _alive = await _lease(client, block, b"a", 100, used=sum(grants[-1:]))  # use all, ask again
        grants.append(granted)
        if granted == 0:
            break
    assert grants[0] == 25  # a quarter of what is left
    assert grants[-3:] == [1, 1, 0]  # one unit at a time at the end, then nothing
    assert sum(grants) == 100 and await _admitted(client, block) == [100]  # each call reported the block before


async def test_a_block_comes_from_every_cap_or_none(settings: Settings, client: redis.asyncio.Redis) -> None:
    limits = (Limit("clicks", "lifetime", False, 1000), Limit("clicks", "lifetime", True, 2))
    block = _block(settings, limits)
    assert await _lease(client, block, b"a", 10) == [1, 0]  # a quarter of 2, at least one
    assert await _lease(client, block, b"b", 10) == [1, 0]  # another process: the partner's last unit
    assert await _lease(client, block, b"c", 10) == [0, 0]  # the partner's cap is held in full: nothing
    held = [
        {name: int(value.split(b":")[0]) for name, value in (await client.hgetall(key)).items()}
        for key in block.head[1::2]
    ]
    assert held == [{b"a": 1, b"b": 1, b"c": 0}] * 2  # the offer's cap lent only what both had


async def test_bursts_give_back_and_expired_leases_return(settings: Settings, client: redis.asyncio.Redis) -> None:
    block = _block(settings, (Limit("clicks", "daily", True, 8),))
    assert await _lease(client, block, b"a", 8) == [2, 0]
    assert await _lease(client, block, b"a", 0, used=2) == [0, 1]  # both used: admitted
    assert await _lease(client, block, b"a", 0, used=-1) == [0, 1]  # one was a burst: its unit back to a
    assert await _admitted(client, block) == [1]
    assert (await client.hget(block.head[1], b"a")).split(b":")[0] == b"1"
    assert await _lease(client, block, b"a", 0, drop=1) == [0, 1]  # given up: the lease is forgotten
    assert await client.hkeys(block.head[1]) == []
    assert await _lease(client, block, b"a", 0, used=-1) == [0, 0]  # a burst of an ended lease: back to the cap
    assert await _admitted(client, block) == [0] and await client.hkeys(block.head[1]) == []
    assert await _lease(client, block, b"a", 8) == [2, 0]  # a new block: a quarter of the 8 left
    # A lease nobody renews: 50 ms of life, then the next call by anyone returns its unit.
    args = [8, 0, 0]
    await client.eval(LEASE.decode(), 2, *block.head, b"a", 50, 0, 0, *args)
    await asyncio.sleep(0.1)
    assert await _lease(client, block, b"b", 8) == [2, 0]  # (8 - 0 admitted) // 4: the expired units counted free
    assert await client.hkeys(block.head[1]) == [b"b"]
