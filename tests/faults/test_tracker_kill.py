"""kill -9 of tracker workers under load (real uvicorn, two workers): every click answered with a 302 is
in PostgreSQL exactly once; requests in flight at a kill may fail, and are counted."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import psutil
import pytest
import redis.asyncio as aioredis
import redis.exceptions as redis_errors

from billing.consumer import Ingest
from billing.derive import Deriver
from billing.settings import BillingSettings
from clickmint.embedded import pick_port
from kernel.env import Env
from kernel.keys import stream_key
from kernel.settings import Settings
from tests.factories import programme

pytestmark = pytest.mark.timeout(60)
KILLS = 3
CONCURRENCY = 16


def tracker_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of a tracker subprocess on the test's servers; `extra` adds CLICKMINT_* or other variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLICKMINT_")}
    env.update(
        CLICKMINT_REDIS_URL=settings.redis_url or "",
        CLICKMINT_DATABASE_URL=settings.database_url or "",
        CLICKMINT_KEY_PREFIX=settings.key_prefix,
        CLICKMINT_SHARDS=str(settings.shards),
        CLICKMINT_SECRET_KEY=settings.secret_key,
        CLICKMINT_DATA_DIR=str(settings.data_dir),
    )
    env.update(extra)
    return env


def start_tracker(
    env: dict[str, str], workers: int, log: Path, ready_s: float = 20.0
) -> tuple[subprocess.Popen[bytes], str]:
    """uvicorn as `clickmint up` runs it, on a free port; returns once /readyz answers 200 (within ready_s)."""
    port = pick_port(0)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "tracker.app:create_app",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                str(workers),
                "--no-access-log",
                "--log-level",
                "warning",
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + ready_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the tracker exited:\n{log.read_text()}"
        try:
            if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"the tracker did not become ready:\n{log.read_text()}")


def stop_tracker(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _workers(pid: int) -> list[int]:
    """uvicorn's worker processes (not multiprocessing's resource tracker)."""
    return [
        child.pid for child in psutil.Process(pid).children() if any("spawn_main" in part for part in child.cmdline())
    ]


@pytest.fixture
def tracker(settings: Settings, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    proc, base = start_tracker(tracker_env(settings), 2, tmp_path / "tracker.log")
    try:
        yield proc, base
    finally:
        stop_tracker(proc)


async def drain_all(settings: Settings, timeout: float = 30.0) -> Ingest:
    """Run ingest until every entry of every shard is delivered and acknowledged."""
    ingest = Ingest(BillingSettings.from_env(Env({}), core=settings), derive=Deriver())
    task = asyncio.create_task(ingest.run())
    redis = aioredis.Redis.from_url(settings.redis_url)
    try:
        async with asyncio.timeout(timeout):
            while True:
                await asyncio.sleep(0.1)
                try:
                    groups = [
                        await redis.xinfo_groups(stream_key(settings.key_prefix, s)) for s in range(settings.shards)
                    ]
                except redis_errors.ResponseError:  # a shard whose stream ingest has not created yet: not ready
                    continue
                if all(g and not g[0]["pending"] and not g[0]["lag"] for g in groups):
                    return ingest
    finally:
        ingest.stop()
        await task
        await redis.aclose()


async def test_kill_9_of_tracker_workers_under_load(
    settings: Settings, db: asyncpg.Connection, tracker: tuple[subprocess.Popen[bytes], str]
) -> None:
    proc, base = tracker
    prog = await programme(db)
    answered: list[str] = []  # click ids of the 302s
    failed: list[str] = []  # requests that got no response: in flight at a kill
    other: list[int] = []
    stop = asyncio.Event()
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)

    async def visitor(client: httpx.AsyncClient, n: int) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            try:
                response = await client.get(f"/c/{prog.code}", headers={"user-agent": f"Mozilla/5.0 v{n}-{i}"})
            except httpx.TransportError as exc:
                failed.append(type(exc).__name__)
                await asyncio.sleep(0.01)
                continue
            if response.status_code == 302:
                answered.append(parse_qs(urlsplit(response.headers["location"]).query)["cid"][0])
            else:
                other.append(response.status_code)

    rng = random.Random(11)
    killed: list[int] = []
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=10) as client:
        load = [asyncio.create_task(visitor(client, n)) for n in range(CONCURRENCY)]
        try:
            await asyncio.sleep(1.0)
            for _ in range(KILLS):
                workers = _workers(proc.pid)
                assert len(workers) == 2, workers
                victim = rng.choice(workers)
                before = len(answered)
                os.kill(victim, signal.SIGKILL)  # mid-batch: events of requests in flight may be half-way
                killed.append(victim)
                await asyncio.sleep(1.2)  # uvicorn's supervisor notices within 0.5 s and starts a new worker
                assert len(answered) > before, "the other worker kept answering"
            await asyncio.sleep(0.5)
        finally:
            stop.set()
            await asyncio.gather(*load)
    assert proc.poll() is None
    # What a batch slower than the budget spooled, and what a killed worker left in its spool, the live
    # workers replay into the streams (a dead process's file is no longer locked).
    spool = settings.data_dir / "spool"
    spooled_files = 0
    deadline = time.monotonic() + 15
    while True:
        files = [p for p in spool.glob("*.*") if p.suffix in (".log", ".ready") and p.stat().st_size]
        spooled_files = max(spooled_files, len(files))
        if not files:
            break
        assert time.monotonic() < deadline, f"the spool was not replayed: {files}"
        await asyncio.sleep(0.1)
    stop_tracker(proc)

    ingest = await drain_all(settings)
    rows = await db.fetch("SELECT click_id, count(*) AS n FROM events WHERE type = 'click' GROUP BY click_id")
    stored = {r["click_id"]: r["n"] for r in rows}
    missing = [cid for cid in answered if cid not in stored]
    twice = [cid for cid, n in stored.items() if n > 1]
    unanswered = len(stored) - len(set(answered) & set(stored))
    print(
        f"\ntracker kill -9 x{len(killed)}: {len(answered)} clicks answered 302, {len(failed)} failed in flight "
        f"({sorted(set(failed))}), {len(other)} other statuses, {len(stored)} click events stored "
        f"({unanswered} of requests that got no 302), non-empty spool files seen at the end: {spooled_files}, "
        f"ingest saw {ingest.stats.events} entries"
    )
    assert other == []
    assert len(answered) == len(set(answered)) > 500
    assert missing == [], f"{len(missing)} clicks answered 302 but not in PostgreSQL"
    assert twice == []
    assert unanswered <= len(failed), "an event without a 302 can only be a request in flight at a kill"
