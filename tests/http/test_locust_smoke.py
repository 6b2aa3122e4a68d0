"""The locust scenarios against a real tracker and portal (uvicorn on loopback): seeded, no failure, events recorded."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import pytest
import redis

from clickmint.embedded import pick_port
from kernel.settings import Settings

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parents[2]


def _env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLICKMINT_", "LOCUST_"))}
    assert settings.redis_url and settings.database_url
    env.update(
        CLICKMINT_MODE="production",
        CLICKMINT_REDIS_URL=settings.redis_url,
        CLICKMINT_DATABASE_URL=settings.database_url,
        CLICKMINT_SECRET_KEY=settings.secret_key,
        CLICKMINT_DATA_DIR=str(settings.data_dir),
        CLICKMINT_KEY_PREFIX=settings.key_prefix,
        CLICKMINT_SHARDS=str(settings.shards),
        CLICKMINT_TRUST_FORWARDED="true",  # the locustfile's visitors come through X-Forwarded-For
    )
    return env


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"{url}: the server exited with {proc.returncode}"
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer 200 within {timeout}s")


@contextmanager
def _uvicorn(app: str, env: dict[str, str], ready_path: str) -> Iterator[str]:
    """One uvicorn worker serving `app` on a free loopback port, with the flags `clickmint up` uses."""
    port = pick_port(0)
    cmd = [sys.executable, "-m", "uvicorn", app, "--factory", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--workers", "1", "--no-access-log", "--no-proxy-headers", "--log-level", "warning"]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base + ready_path, proc)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _stream_entries(settings: Settings) -> int:
    assert settings.redis_url
    client = redis.Redis.from_url(settings.redis_url)
    try:
        return sum(int(client.xlen(f"{settings.key_prefix}:events:{{{shard}}}")) for shard in range(settings.shards))
    finally:
        client.close()


def _run_locust(env: dict[str, str], seed: Path, out: Path) -> None:
    with (
        _uvicorn("tracker.app:create_app", env, "/readyz") as tracker_url,
        _uvicorn("portal.app:create_app", env, "/healthz") as portal_url,
    ):
        command = [sys.executable, "-m", "locust", "-f", "loadtests/locustfile.py", "--headless", "--only-summary"]
        command += ["-u", "5", "-r", "5", "-t", "5s", "--csv", str(out / "run")]
        command += ["--host", tracker_url, "--portal-host", portal_url, "--seed-file", str(seed)]
        result = subprocess.run(
            command,
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


async def test_locust_tracker_mix_without_failures(settings: Settings, db: asyncpg.Connection, tmp_path: Path) -> None:
    env = _env(settings)
    seed = tmp_path / "out" / "seed.json"
    seeded = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "loadtests.seed", "--out", str(seed), "--partners", "3"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert seeded.returncode == 0, seeded.stderr
    written = json.loads(seed.read_text())
    assert {offer["kind"] for offer in written["offers"]} == {"cps", "cpa"}
    assert len(written["links"]) == 3 * len(written["offers"])
    assert await db.fetchval("SELECT count(*) FROM links") == len(written["links"])

    await asyncio.to_thread(_run_locust, env, seed, tmp_path)

    with (tmp_path / "run_stats.csv").open(newline="") as handle:
        rows = {row["Name"]: row for row in csv.DictReader(handle)}
    total = rows["Aggregated"]
    assert int(total["Request Count"]) > 0
    assert int(total["Failure Count"]) == 0, (tmp_path / "run_failures.csv").read_text()
    assert int(rows["/v/[link]"]["Request Count"]) > 0
    assert int(rows["/c/[link]"]["Request Count"]) > 0
    assert "portal /" in rows or "portal /healthz" in rows, sorted(rows)
    assert await asyncio.to_thread(_stream_entries, settings) > 0
