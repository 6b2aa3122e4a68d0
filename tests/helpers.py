"""What the integration, fault and HTTP tests share: an in-process tracker, a drain of ingest, signed postbacks."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import orjson

from billing.consumer import Ingest
from billing.derive import Deriver
from billing.settings import BillingSettings
from kernel.env import Env
from kernel.settings import Settings
from kernel.signature import sign
from tracker.app import TrackerApp
from tracker.settings import TrackerSettings

# /metrics answers on the click port only with the operator's token: the in-process tests' clients carry it,
# and no admin listener is opened (tests/security/test_metrics_not_public.py covers that one).
METRICS_TOKEN = "tests-metrics-token-" + "t" * 24
TRACKER_TEST_ENV = {"CLICKMINT_METRICS_PORT": "0", "CLICKMINT_METRICS_TOKEN": METRICS_TOKEN}
METRICS_AUTH = {"authorization": f"Bearer {METRICS_TOKEN}"}
# The tracker believes X-Forwarded-For: each `visitor(n)` is then a person of an address of its own. Many
# visitors from the client's one address would be one address's burst (docs/VISITORS.md).
PER_ADDRESS = {"CLICKMINT_TRUST_FORWARDED": "true"}


def visitor(n: int) -> dict[str, str]:
    """The headers of visitor n: a user agent and an address of its own (198.18.0.0/15, a test range)."""
    return {
        "user-agent": f"Mozilla/5.0 visitor-{n}",
        "x-forwarded-for": f"198.{18 + (n >> 16 & 1)}.{n >> 8 & 255}.{n & 255}",
    }


@contextlib.asynccontextmanager
async def tracker_client(
    settings: Settings, env: dict[str, str] | None = None
) -> AsyncIterator[tuple[TrackerApp, httpx.AsyncClient]]:
    """An in-process tracker and a client on it; `env` adds CLICKMINT_* settings (PER_ADDRESS: see `visitor`)."""
    # A generous Redis budget: on a loaded CI machine a batch slower than the default 20 ms would be spooled,
    # and a spooled click passes its cap (Redis could not say), which a cap test would take for a bug.
    values = {"CLICKMINT_REDIS_BUDGET_MS": "5000", **TRACKER_TEST_ENV, **(env or {})}
    app = TrackerApp(TrackerSettings.from_env(Env(values), core=settings))
    async with app.lifespan(app.cold):
        transport = httpx.ASGITransport(app=app, client=("203.0.113.77", 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://track.test", headers=METRICS_AUTH) as client:
            yield app, client


async def drain(settings: Settings, until: int, conn: asyncpg.Connection, timeout: float = 10.0) -> None:
    """Run ingest until `until` events are in PostgreSQL."""
    ingest = Ingest(BillingSettings.from_env(Env({}), core=settings), derive=Deriver())
    task = asyncio.create_task(ingest.run())
    try:
        async with asyncio.timeout(timeout):
            while await conn.fetchval("SELECT count(*) FROM events") < until:
                await asyncio.sleep(0.02)
    finally:
        ingest.stop()
        await task


async def postback(client: httpx.AsyncClient, secret: str, payload: dict[str, Any]) -> httpx.Response:
    body = orjson.dumps(payload)
    ts = int(time.time())
    headers = {
        "content-type": "application/json",
        "x-clickmint-timestamp": str(ts),
        "x-clickmint-signature": sign(secret, ts, body),
    }
    return await client.post("/postback", content=body, headers=headers)


def click_id_of(response: httpx.Response) -> str:
    return response.headers["set-cookie"].split("=", 1)[1].split(";")[0]


def cli_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of a `clickmint` subprocess on the test's servers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLICKMINT_")}
    env.update(
        CLICKMINT_REDIS_URL=settings.redis_url or "",
        CLICKMINT_DATABASE_URL=settings.database_url or "",
        CLICKMINT_KEY_PREFIX=settings.key_prefix,
        CLICKMINT_SECRET_KEY=settings.secret_key,
        CLICKMINT_DATA_DIR=str(settings.data_dir),
        CLICKMINT_SHARDS=str(settings.shards),
    )
    env.update(extra)
    return env


async def run_cli(env: dict[str, str], *args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    """`python -m clickmint ARGS`: (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "clickmint",
        *args,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate(stdin)
    return proc.returncode or 0, out.decode(), err.decode()
