"""The floor: a bare pure-ASGI 302 that first makes one event per request durable in Redis, and nothing else.

What any tracker that records before it answers must pay at least, measured on the day's machine: the
least a click can cost, between the bare app (loadtests.baseline, nothing recorded) and the tracker
(everything on). Each request appends a small orjson event to its stream shard with XADD, by group
commit over one raw-RESP connection as the tracker does (the requests in flight go in one pipeline,
each waits for its batch); no click id, cookie, bot, cap, uniqueness or GeoIP work, no spool. It is
DESIGN.md's "pure ASGI + group commit written as raw RESP" row, run in the same bench as the others.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from typing import Any

import orjson

from tracker.streams import RespConnection, stream_key, xadd_command

_LOCATION = (b"location", b"https://shop.example.com/landing?cid=floor&s1=x")
_NO_STORE = (b"cache-control", b"no-store, max-age=0")
_EMPTY = (b"content-length", b"0")
_SHARDS = int(os.environ.get("CLICKMINT_SHARDS", "4"))
# Under the bench's key prefix (removed after a run on a configured Redis), apart from the tracker's streams.
_KEYS = [stream_key(os.environ.get("CLICKMINT_KEY_PREFIX", "bench") + ":floor", n) for n in range(_SHARDS)]


class _Batches:
    """Group commit: the events of the requests in flight go out in one pipeline, one batch at a time."""

    def __init__(self, url: str) -> None:
        self.conn = RespConnection(url)
        self.pending: list[bytes] = []
        self.future: asyncio.Future[None] | None = None
        self.flushing = False

    async def append(self, command: bytes) -> None:
        future = self.future
        if future is None:
            future = self.future = asyncio.get_running_loop().create_future()
            if not self.flushing:
                asyncio.get_running_loop().call_soon(self._start)
        self.pending.append(command)
        await future

    def _start(self) -> None:
        if self.flushing or not self.pending:
            return
        batch, future = self.pending, self.future
        self.pending, self.future = [], None
        self.flushing = True
        asyncio.get_running_loop().create_task(self._flush(batch, future))  # type: ignore[arg-type]

    async def _flush(self, batch: list[bytes], future: asyncio.Future[None]) -> None:
        try:
            await self.conn.execute(batch, timeout=5.0)
            future.set_result(None)
        except Exception as exc:  # the bench reads the errors off its generator's counts
            future.set_exception(exc)
        finally:
            self.flushing = False
            if self.pending:
                self._start()


_batches: _Batches | None = None
_sequence = itertools.count()


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Record one event, then answer the 302; starts and stops its Redis connection with the lifespan."""
    global _batches
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                _batches = _Batches(os.environ["CLICKMINT_REDIS_URL"])
                await _batches.conn.connect()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                assert _batches is not None
                await _batches.conn.close()
                await send({"type": "lifespan.shutdown.complete"})
                return
    n = next(_sequence)
    event = orjson.dumps({"id": n, "ts": int(time.time() * 1000), "type": "click", "path": scope["path"]})
    assert _batches is not None
    await _batches.append(xadd_command(_KEYS[n % _SHARDS], event))
    await send({"type": "http.response.start", "status": 302, "headers": [_LOCATION, _NO_STORE, _EMPTY]})
    await send({"type": "http.response.body", "body": b""})
