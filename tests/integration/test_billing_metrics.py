"""Billing metrics: stream lag and pending before ingest, zero after, events counted, dead letters, last runs."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import subprocess
import sys
from pathlib import Path

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis

from billing.consumer import Ingest, Stats
from billing.derive import Deriver
from billing.metrics import BillingMetrics, record_run
from billing.settings import GROUP, BillingSettings
from clickmint.embedded import pick_port
from kernel.env import Env
from kernel.keys import stream_key
from kernel.redis.client import Redis
from kernel.settings import Settings
from tests.factories import programme
from tests.helpers import tracker_client

_LINE = re.compile(r"^(\w+)(?:\{shard=\"(\d+)\"\})? (\S+)$")


async def _scrape(port: int) -> dict[tuple[str, int | None], float]:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{port}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    values: dict[tuple[str, int | None], float] = {}
    for line in response.text.splitlines():
        if line.startswith("#"):
            continue
        match = _LINE.match(line)
        assert match, line
        values[match.group(1), int(match.group(2)) if match.group(2) else None] = float(match.group(3))
    return values


def _per_shard(values: dict[tuple[str, int | None], float], name: str) -> dict[int, float]:
    return {shard: v for (metric, shard), v in values.items() if metric == name and shard is not None}


async def test_lag_and_pending_then_zero_after_ingest(settings: Settings, db: asyncpg.Connection) -> None:
    prog = await programme(db)
    # Entries a consumer leaves pending are claimed by ingest once idle for 0.1 s.
    billing = BillingSettings.from_env(Env({"CLICKMINT_CLAIM_IDLE_MS": "100"}), core=settings)
    client = aioredis.Redis.from_url(settings.redis_url or "")
    ingest = Ingest(billing, derive=Deriver())
    metrics = BillingMetrics(billing, Redis(settings.redis_url or ""), ingest.stats)
    port = await metrics.start(0)
    try:
        async with tracker_client(settings) as (_app, tracker):
            for _ in range(5):
                await tracker.get(f"/c/{prog.code}", headers={"user-agent": "Mozilla/5.0"})
        # One entry of another shard is delivered to a consumer that never acknowledges it.
        other = stream_key(settings.key_prefix, 1)
        await client.xgroup_create(other, GROUP, id="0", mkstream=True)
        await client.xadd(other, {"d": b"not json"})
        await client.xadd(other, {"d": b"not json either"})
        await client.xreadgroup(GROUP, "gone", {other: ">"}, count=1)

        before = await _scrape(port)
        lag = _per_shard(before, "clickmint_ingest_stream_lag")
        assert set(lag) == {0, 1}
        assert sum(lag.values()) == 5 + 1  # the clicks, and the second entry of shard 1
        assert _per_shard(before, "clickmint_ingest_pending_entries") == {0: 0, 1: 1}
        assert before["clickmint_ingest_events_total", None] == 0
        assert sum(_per_shard(before, "clickmint_ingest_dead_letters").values()) == 0
        assert ("clickmint_settle_last_duration_seconds", None) not in before

        # Ingest: the clicks land, both malformed entries (one claimed once idle) go to the dead letters.
        task = asyncio.create_task(ingest.run())
        try:
            async with asyncio.timeout(15):
                while True:
                    now = await _scrape(port)
                    lags = _per_shard(now, "clickmint_ingest_stream_lag")
                    pending = _per_shard(now, "clickmint_ingest_pending_entries")
                    dead = sum(_per_shard(now, "clickmint_ingest_dead_letters").values())
                    if not any(lags.values()) and not any(pending.values()) and dead == 2:
                        break
                    await asyncio.sleep(0.05)
        finally:
            ingest.stop()
            await task
        after = await _scrape(port)
        assert _per_shard(after, "clickmint_ingest_stream_lag") == {0: 0, 1: 0}
        assert _per_shard(after, "clickmint_ingest_pending_entries") == {0: 0, 1: 0}
        assert after["clickmint_ingest_events_total", None] == 5
        assert after["clickmint_ingest_new_events_total", None] == 5
        assert sum(_per_shard(after, "clickmint_ingest_entries_read").values()) == 5 + 2
        assert await db.fetchval("SELECT count(*) FROM events") == 5

        await record_run(db, "settle", dt.datetime.now(dt.UTC), 1.25, {"period": "2026-01"})
        runs = await _scrape(port)
        assert runs["clickmint_settle_last_duration_seconds", None] == 1.25
    finally:
        await metrics.close()
        await client.aclose()


async def test_unknown_paths_and_methods(settings: Settings, db: asyncpg.Connection) -> None:
    billing = BillingSettings.from_env(Env({}), core=settings)
    client = aioredis.Redis.from_url(settings.redis_url or "")
    metrics = BillingMetrics(billing, Redis(settings.redis_url or ""), Stats())
    port = await metrics.start(0)
    try:
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"http://127.0.0.1:{port}/nope")).status_code == 404
            assert (await http.post(f"http://127.0.0.1:{port}/metrics")).status_code == 405
    finally:
        await metrics.close()
        await client.aclose()


def _gauge(text: str, name: str) -> dict[int, float]:
    return {int(m.group(1)): float(m.group(2)) for m in re.finditer(rf'^{name}\{{shard="(\d+)"\}} (\S+)$', text, re.M)}


async def test_a_shard_that_does_not_move_is_reported_stalled(settings: Settings, db: asyncpg.Connection) -> None:
    """Entries wait and nobody stores them: the oldest one's age grows, and once it has not changed for
    CLICKMINT_INGEST_STALL_S between two scrapes the shard is stalled; ingest drains it and both fall to 0."""
    billing = BillingSettings.from_env(Env({"CLICKMINT_INGEST_STALL_S": "1"}), core=settings)
    client = aioredis.Redis.from_url(settings.redis_url or "")
    key = stream_key(settings.key_prefix, 1)
    await client.xadd(key, {"d": b"not json"})
    metrics = BillingMetrics(billing, Redis(settings.redis_url or ""), Stats())
    try:
        first = await metrics.render()
        assert _gauge(first, "clickmint_ingest_shard_stalled") == {0: 0, 1: 0}  # seen for the first time
        await asyncio.sleep(1.1)
        second = await metrics.render()
        assert _gauge(second, "clickmint_ingest_shard_stalled") == {0: 0, 1: 1}
        ages = _gauge(second, "clickmint_ingest_oldest_age_seconds")
        assert ages[0] == 0 and ages[1] >= 1.0
        await client.xadd(stream_key(settings.key_prefix, 0), {"d": b"not json either"})
        ingest = Ingest(billing, derive=Deriver())
        task = asyncio.create_task(ingest.run())
        try:
            async with asyncio.timeout(15):
                while ingest.stats.dead < 2:
                    await asyncio.sleep(0.05)
        finally:
            ingest.stop()
            await task
        after = await metrics.render()
        assert _gauge(after, "clickmint_ingest_shard_stalled") == {0: 0, 1: 0}
        assert _gauge(after, "clickmint_ingest_oldest_age_seconds") == {0: 0, 1: 0}
        assert "clickmint_ingest_redis_up 1" in after
    finally:
        await metrics.redis.close()
        await client.aclose()


async def test_streams_out_of_reach_say_redis_is_down(settings: Settings, db: asyncpg.Connection) -> None:
    billing = BillingSettings.from_env(Env({}), core=settings)
    metrics = BillingMetrics(billing, Redis(f"redis://127.0.0.1:{pick_port(0)}"), Stats())  # nothing listens there
    text = await metrics.render()
    assert "clickmint_ingest_redis_up 0" in text
    assert not _gauge(text, "clickmint_ingest_stream_lag")  # nothing made up for the shards it could not read
    assert "clickmint_ingest_events_total 0" in text


async def test_the_tracker_multiprocess_directory_is_neither_written_nor_read(
    settings: Settings, db: asyncpg.Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`clickmint up` sets PROMETHEUS_MULTIPROC_DIR for the tracker: ingest, one process, keeps to its own values."""
    _tracker_worker_counts(tmp_path)
    files = _files(tmp_path)
    assert files  # the worker wrote its counter there
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    stats = Stats()
    stats.events, stats.new_events = 7, 4
    billing = BillingSettings.from_env(Env({}), core=settings)
    metrics = BillingMetrics(billing, Redis(settings.redis_url or ""), stats)
    port = await metrics.start(0)
    try:
        async with httpx.AsyncClient() as http:
            text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
            assert (await http.get(f"http://127.0.0.1:{port}/")).text.startswith("# HELP")
    finally:
        await metrics.close()
        await metrics.redis.close()
    assert "clickmint_tracker_only" not in text
    assert "clickmint_ingest_events_total 7\n" in text and "clickmint_ingest_new_events_total 4\n" in text
    assert "# TYPE clickmint_ingest_events_total counter\n" in text
    assert "clickmint_ingest_redis_up 1\n" in text
    assert _files(tmp_path) == files  # nothing written by ingest


def _tracker_worker_counts(directory: Path) -> None:
    """A tracker worker's file in the directory, written by prometheus_client itself in a process of its own."""
    worker = "from prometheus_client import Counter; Counter('clickmint_tracker_only', 'x').inc(3)"
    subprocess.run(
        [sys.executable, "-c", worker], env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}, check=True
    )


def _files(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))
