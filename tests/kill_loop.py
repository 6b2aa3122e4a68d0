"""The kill -9 loop the ingest fault tests share: start `clickmint ingest`, let it work a random while, kill it.

The random while is counted from the moment the process says it is consuming, not from its start: how long
a Python process takes to import and connect depends on the machine's load, and a loop that kills at a
fixed time after start can kill every run before it reads a single entry (a loaded CI machine did, for the
whole deadline). Kills during start-up touch nothing, so they are not what these tests are about.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis.asyncio as aioredis

from kernel.keys import stream_key
from kernel.settings import Settings
from tests.faults.test_tracker_kill import tracker_env

READY = b"consuming shard(s)"  # billing/consumer.py logs it once PostgreSQL answers (Redis: its first command)
START_TIMEOUT_S = 30.0  # within the tests' 300 s: 240 s of loop, a start, the setup
WORK_S = (0.02, 0.5)  # how long a run works before its kill -9, drawn uniformly


def ingest_process(settings: Settings, log: Path, crash_after: int = 0) -> subprocess.Popen[bytes]:
    """`clickmint ingest` with small batches and a fixed consumer name; its log goes to `log`."""
    env = tracker_env(  # the servers' settings as a tracker subprocess gets them, and ingest's own
        settings,
        CLICKMINT_INGEST_BATCH="500",
        CLICKMINT_CONSUMER_NAME="killable",
        CLICKMINT_CLAIM_IDLE_MS="1000",
        CLICKMINT_FAULT_CRASH_AFTER_COMMIT=str(crash_after),
    )
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "clickmint", "ingest"], env=env, stdout=subprocess.DEVNULL, stderr=out
        )


def _wait_ready(proc: subprocess.Popen[bytes], log: Path) -> None:
    """Return once the process logged READY or ended; fail with its log if it did neither in time."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while proc.poll() is None and READY not in log.read_bytes():
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise AssertionError(f"ingest did not start within {START_TIMEOUT_S:.0f}s:\n{log.read_text()}")
        time.sleep(0.01)


async def drained(redis: aioredis.Redis, settings: Settings) -> bool:
    """Every shard's group has read and acknowledged everything in its stream."""
    for shard in range(settings.shards):
        key = stream_key(settings.key_prefix, shard)
        group = next(iter(await redis.xinfo_groups(key)), None)
        if group is None or group["pending"] or group["lag"]:
            return False
    return True


async def kill_until_drained(settings: Settings, rng: random.Random, deadline_s: float = 240) -> tuple[int, int]:
    """Run ingest over and over, killed by SIGKILL after WORK_S of work (a batch of 500 takes ~10-40 ms, so a
    kill lands at any point of a batch) or crashing on its own between COMMIT and XACK, until the streams are
    drained; return (kills, crashes after commit)."""
    redis = aioredis.Redis.from_url(settings.redis_url)
    kills = crashes_after_commit = 0
    deadline = time.monotonic() + deadline_s
    try:
        with tempfile.TemporaryDirectory() as tmp:
            log = Path(tmp) / "ingest.log"
            while not await drained(redis, settings):
                assert time.monotonic() < deadline, f"ingest did not finish; its last log:\n{log.read_text()}"
                crash_after = rng.choice([0, 0, 1, 2, 3])  # some runs die exactly between COMMIT and XACK
                proc = ingest_process(settings, log, crash_after)
                _wait_ready(proc, log)
                try:
                    proc.wait(timeout=rng.uniform(*WORK_S))
                    crashes_after_commit += proc.returncode == 137
                except subprocess.TimeoutExpired:
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                    kills += 1
    finally:
        await redis.aclose()
    return kills, crashes_after_commit
