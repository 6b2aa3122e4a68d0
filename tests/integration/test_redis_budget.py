"""The Redis budget measures Redis, not the tracker's own event loop (uvloop, as uvicorn runs it).

A reply that came within the budget but sat unread while the loop was busy elsewhere is not late:
before the fix, uvloop's timer fired first and the batch went to the spool, which under load added
work to a loop that was already behind.
"""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
import uvloop

from kernel.redis.resp import RedisUnavailable, RespConnection, pack


class _Busy(asyncio.Protocol):
    """Another connection's data arrives first and keeps the loop busy, as a burst of requests would."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def data_received(self, data: bytes) -> None:
        time.sleep(self.seconds)


async def _reply_while_busy(url: str, key: str, reply_s: float, busy_s: float, budget_s: float) -> list[object]:
    """BLPOP on an empty list: a real Valkey that answers late on purpose (nil, after its timeout, which
    the server rounds up to its 100 ms clock)."""
    loop = asyncio.get_running_loop()
    ours, theirs = socket.socketpair()
    transport, _ = await loop.create_connection(lambda: _Busy(busy_s), sock=ours)
    conn = RespConnection(url)
    await conn.connect()
    try:
        theirs.send(b"x")  # ready before the reply: read in the next poll, which then blocks the loop
        return await conn.execute([pack(b"BLPOP", key, reply_s)], timeout=budget_s)
    finally:
        await conn.close()
        transport.close()
        theirs.close()


def test_a_reply_in_time_that_a_busy_loop_read_late_is_not_late(servers) -> None:
    # Valkey answers within ~100 ms, well within the 200 ms budget; the loop is busy for 300 ms meanwhile.
    key = f"{servers.prefix}:budget:empty"
    replies = uvloop.run(_reply_while_busy(servers.redis_url, key, reply_s=0.01, busy_s=0.3, budget_s=0.2))
    assert replies == [None]


def test_a_reply_that_really_is_late_still_is(servers) -> None:
    # Valkey itself takes 150-250 ms against a 40 ms budget: late, whatever the loop does.
    key = f"{servers.prefix}:budget:empty"
    with pytest.raises(RedisUnavailable, match="within 40 ms"):
        uvloop.run(_reply_while_busy(servers.redis_url, key, reply_s=0.15, busy_s=0.0, budget_s=0.04))
