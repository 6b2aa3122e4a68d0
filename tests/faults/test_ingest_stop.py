"""Ingest stops within its grace period during a Redis outage: the ack retry honours stop, a round trip to a
Redis that does not answer ends at its command timeout or, when it would outlast the grace, is cut short, and
what was not acknowledged is read again, never stored twice."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
import redis.asyncio as aioredis

from billing.consumer import STOP_GRACE_S, Ingest
from billing.derive import Deriver
from billing.settings import GROUP, BillingSettings
from clickmint.embedded import EmbeddedValkey
from kernel.env import Env
from kernel.keys import stream_key
from kernel.settings import Settings
from tests.factories import Programme, programme
from tests.faults.test_tracker_kill import tracker_env
from tests.helpers import drain

pytestmark = pytest.mark.timeout(60)
EVENTS = 50


@pytest.fixture
def own_valkey() -> Iterator[tuple[EmbeddedValkey, Path]]:
    base = Path(tempfile.mkdtemp(prefix="clickmint-ingest-stop-"))
    os.chmod(base, 0o755)
    valkey = EmbeddedValkey(base, port=0)
    valkey.start()
    yield valkey, base
    if valkey.proc is not None and valkey.proc.poll() is None:
        valkey.proc.send_signal(signal.SIGCONT)  # a frozen one must run to hear its SIGTERM
    valkey.stop()
    shutil.rmtree(base, ignore_errors=True)


async def _events(url: str, settings: Settings, prog: Programme) -> None:
    redis = aioredis.Redis.from_url(url)
    now_ms = int(time.time() * 1000)
    try:
        for i in range(EVENTS):
            event = {
                "id": str(uuid.uuid4()),
                "ts": now_ms - i,
                "type": "click",
                "link": prog.link_id,
                "partner": prog.partner_id,
                "offer": prog.offer_id,
                "click_id": f"c{i}",
                "unique": True,
            }
            await redis.xadd(stream_key(settings.key_prefix, 0), {"d": orjson.dumps(event)})
    finally:
        await redis.aclose()


async def test_stop_ends_the_ack_retries_and_the_batch_is_stored_once(
    settings: Settings, db: asyncpg.Connection, own_valkey: tuple[EmbeddedValkey, Path], caplog: Any
) -> None:
    valkey, base = own_valkey
    settings = replace(settings, redis_url=valkey.url, shards=1)
    prog = await programme(db)
    await _events(valkey.url, settings, prog)
    deriver = Deriver()
    killed = asyncio.Event()

    async def derive_then_kill_valkey(conn: asyncpg.Connection, new_events: list[dict[str, Any]]) -> None:
        await deriver(conn, new_events)
        if not killed.is_set():  # inside the batch's transaction: the commit lands, its XACK cannot
            killed.set()
            valkey.proc.kill()
            valkey.proc.wait()

    caplog.set_level(logging.WARNING, logger="clickmint.billing.ingest")
    ingest = Ingest(BillingSettings.from_env(Env({}), core=settings), derive=derive_then_kill_valkey)
    task = asyncio.create_task(ingest.run())
    await asyncio.wait_for(killed.wait(), 20)
    # The retry warnings are rate-limited (one line per 10 s, kernel/redis/states.py): wait for the first,
    # then for the third attempt (0.1 s + 0.2 s of backoff after it).
    while not any("ack failed (attempt 1)" in r.getMessage() for r in caplog.records):
        assert not task.done()
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.6)
    assert not task.done()
    asked = time.monotonic()
    ingest.stop()
    await asyncio.wait_for(task, STOP_GRACE_S + 5)
    took = time.monotonic() - asked
    messages = [r.getMessage() for r in caplog.records]
    print(f"\ningest stopped {took:.2f}s after stop() while retrying an ack")
    assert any(f"stopping with {EVENTS} entries" in m and "not acknowledged" in m for m in messages), messages
    assert not any("did not stop within" in m for m in messages)  # the retry loop ended itself, not the grace
    assert await db.fetchval("SELECT count(*) FROM events") == EVENTS  # committed before the ack failed

    again = EmbeddedValkey(base, port=valkey.port)
    await asyncio.to_thread(again.start)
    valkey.proc = again.proc
    redis = aioredis.Redis.from_url(valkey.url)
    try:
        pending = await redis.xpending(stream_key(settings.key_prefix, 0), GROUP)
    finally:
        await redis.aclose()
    assert pending["pending"] == EVENTS  # not acknowledged: read again by the next ingest
    await drain(settings, EVENTS, db)
    await asyncio.sleep(0.5)
    assert await db.fetchval("SELECT count(*) FROM events") == EVENTS
    assert await db.fetchval("SELECT sum(clicks) FROM rollups") == EVENTS  # derived once too


@pytest.mark.parametrize("outage", ["killed", "frozen", "frozen-long-read"])
async def test_sigterm_stops_the_ingest_process_within_its_grace_during_a_redis_outage(
    settings: Settings, db: asyncpg.Connection, own_valkey: tuple[EmbeddedValkey, Path], tmp_path: Path, outage: str
) -> None:
    """`clickmint ingest` as `clickmint up` runs it. Killed: every command fails at once and is retried.
    Frozen (SIGSTOP): a round trip never answers; the shard's blocking read gives up after BLOCK + 1 s
    (billing/consumer.py, READ_MARGIN_S) and the shard stops by itself. Frozen with a 20 s BLOCK: the read
    would outlast the grace, so only the grace period can end it."""
    valkey, _ = own_valkey
    settings = replace(settings, redis_url=valkey.url, shards=2)
    await _events(valkey.url, settings, await programme(db))
    block = {"CLICKMINT_INGEST_BLOCK_MS": "20000"} if outage == "frozen-long-read" else {}
    env = tracker_env(settings, CLICKMINT_BILLING_METRICS_PORT="0", **block)
    log = tmp_path / "ingest.log"
    proc = _start_ingest(env, log)
    try:
        async with asyncio.timeout(20):
            while await db.fetchval("SELECT count(*) FROM events") < EVENTS:
                await asyncio.sleep(0.05)
        assert valkey.proc is not None
        if outage == "killed":
            valkey.proc.kill()
            valkey.proc.wait()
        else:
            valkey.proc.send_signal(signal.SIGSTOP)
        await asyncio.sleep(1.0)
        assert proc.poll() is None
        asked = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, STOP_GRACE_S + 5)  # the supervisor waits 15 s before it kills
        took = time.monotonic() - asked
    finally:
        proc.kill()
        proc.wait()
    print(f"\ningest ({outage} Redis) stopped {took:.2f}s after SIGTERM")
    assert code == 0, log.read_text()
    if outage == "frozen-long-read":
        assert "did not stop within" in log.read_text()  # cut short, as it had to be
    else:
        assert "did not stop within" not in log.read_text()  # the shards stopped by themselves


def _start_ingest(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "clickmint", "ingest"], env=env, stdout=out, stderr=out)
