"""The floor: a bare pure-ASGI 302 that first makes one event per request durable in Redis, and nothing else.

What any tracker that records before it answers must pay at least, measured on the day's machine: the
least a click can cost, between the bare app (loadtests.baseline, nothing recorded) and the tracker
(everything on). Each request records a small event through the tracker's own Recorder (group commit:
the events of the requests in flight go in one pipeline of raw-RESP XADDs, each request waits for its
batch; the spool behind it), to streams of their own; no click id, cookie, bot, cap, uniqueness or
GeoIP work. It is the "pure ASGI + group commit written as raw RESP" row of the reference figures in
loadtests/README.md, run in the same bench.
"""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path
from typing import Any

from loadtests import baseline
from tracker.recorder import Recorder
from tracker.spool import Spool

_SHARDS = int(os.environ.get("CLICKMINT_SHARDS", "4"))


def key_prefix(tracker_prefix: str) -> str:
    """The floor's streams: under the bench's key prefix (removed after a run on a configured Redis), apart
    from the tracker's."""
    return tracker_prefix + ":floor"


_recorder: Recorder | None = None
_sequence = itertools.count()


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Record one event, then answer as the bare app; the recorder starts and stops with the lifespan."""
    global _recorder
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                spool = Spool(Path(os.environ["CLICKMINT_DATA_DIR"]) / "floor-spool")
                prefix = key_prefix(os.environ.get("CLICKMINT_KEY_PREFIX", "bench"))
                _recorder = Recorder(os.environ["CLICKMINT_REDIS_URL"], prefix, spool)
                await _recorder.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                assert _recorder is not None
                await _recorder.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return
    n = next(_sequence)
    assert _recorder is not None
    await _recorder.record(n % _SHARDS, {"id": n, "ts": int(time.time() * 1000), "type": "click", "link": 1})
    await baseline.app(scope, receive, send)  # then the bare app's very answer
