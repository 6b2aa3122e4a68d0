"""Click caps by lease across four real tracker processes (uvicorn, one worker each) on one offer: together they
admit exactly the limit under concurrent load, offer-wide and per partner; a process killed with units on lease
under-delivers at most its block until the lease expires, then the others admit the rest; a clean stop gives
its unused units back at once; no cap is ever exceeded."""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis

from kernel.settings import Settings
from tests.factories import Programme, programme
from tests.faults.test_tracker_kill import start_tracker, stop_tracker, tracker_env
from tests.helpers import PER_ADDRESS, visitor

pytestmark = pytest.mark.timeout(120)
FALLBACK = "https://fallback.example.org/"
PROCESSES = 4
BLOCK_MAX = 25
LEASE_MS = 8000
_visitors = itertools.count()


class Trackers:
    """Four tracker processes and a client that sends each click to the next of them."""

    def __init__(self, procs: list[tuple[subprocess.Popen[bytes], str]], client: httpx.AsyncClient) -> None:
        self.procs = procs
        self.client = client
        self.live = list(range(len(procs)))

    async def clicks(self, code: str, n: int, concurrency: int = 16) -> list[tuple[int, bool]]:
        """n clicks of new visitors on the link, spread over the live processes: (process, admitted) each."""
        queue = list(range(n))
        results: list[tuple[int, bool]] = []

        async def worker() -> None:
            while queue:
                i = queue.pop()
                which = self.live[i % len(self.live)]
                response = await self.client.get(
                    f"{self.procs[which][1]}/c/{code}", headers=visitor(next(_visitors)), timeout=30
                )
                assert response.status_code == 302, response.text
                results.append((which, response.headers["location"] != FALLBACK))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return results


@pytest.fixture
async def trackers(settings: Settings, tmp_path: Path) -> AsyncIterator[Trackers]:
    env = tracker_env(
        settings,
        **PER_ADDRESS,
        CLICKMINT_METRICS_PORT="0",
        CLICKMINT_REDIS_BUDGET_MS="5000",  # a loaded machine's slow batch must not be spooled (then unchecked)
        CLICKMINT_CAP_LEASE_MS=str(LEASE_MS),
        CLICKMINT_CAP_BLOCK_MAX=str(BLOCK_MAX),
    )
    procs = await asyncio.gather(
        *(asyncio.to_thread(start_tracker, env, 1, tmp_path / f"tracker-{i}.log", 60.0) for i in range(PROCESSES))
    )
    try:
        async with httpx.AsyncClient() as client:
            yield Trackers(list(procs), client)
    finally:
        await asyncio.gather(*(asyncio.to_thread(stop_tracker, proc) for proc, _ in procs))


async def _another_partner(db: asyncpg.Connection, prog: Programme) -> str:
    """A second approved partner of the programme's merchant with a link to the same offer: its code."""
    partner = await db.fetchval(
        "INSERT INTO partners (name, email) VALUES ('Partner B', $1) RETURNING id",
        f"b{secrets.token_hex(4)}@partners.example",
    )
    await db.execute(
        "INSERT INTO partner_programmes (partner_id, merchant_id, status) VALUES ($1, $2, 'approved')",
        partner,
        prog.merchant_id,
    )
    code = secrets.token_urlsafe(8)
    await db.execute("INSERT INTO links (code, partner_id, offer_id) VALUES ($1, $2, $3)", code, partner, prog.offer_id)
    return code


async def _counters(settings: Settings, offer_id: int) -> dict[str, int]:
    async with aioredis.Redis.from_url(settings.redis_url or "") as client:
        found = await client.keys(f"{settings.key_prefix}:cap:{{o{offer_id}}}:*")
        return {key.decode(): int(await client.get(key)) for key in found}


async def _leases(settings: Settings, offer_id: int) -> dict[str, int]:
    """The units each lease holds on the offer's caps (its id names the process: random.pid.serial)."""
    async with aioredis.Redis.from_url(settings.redis_url or "") as client:
        held: dict[str, int] = {}
        for key in await client.keys(f"{settings.key_prefix}:lease:{{o{offer_id}}}:*"):
            for name, value in (await client.hgetall(key)).items():
                held[f"{key.decode()} {name.decode()}"] = int(value.split(b":")[0])
        return held


async def _wait_ready_for(settings: Settings, trackers: Trackers, code: str) -> None:
    """Until every process knows the new link (its configuration reloads on NOTIFY)."""
    async with asyncio.timeout(10):
        for _proc, base in trackers.procs:
            while (await trackers.client.get(f"{base}/c/{code}", headers={"user-agent": "curl/8"})).status_code == 404:
                await asyncio.sleep(0.05)


async def test_four_processes_admit_exactly_the_limit(
    settings: Settings, db: asyncpg.Connection, trackers: Trackers
) -> None:
    """An offer's daily cap under 16 concurrent clients spread over four processes: exactly the limit admitted,
    the counter says so, and once the processes stop no unit is left on lease."""
    prog = await programme(db, caps={"clicks": {"daily": 300}}, fallback_url=FALLBACK)
    await _wait_ready_for(settings, trackers, prog.code)  # a bot's click (curl): never takes from the cap
    results = await trackers.clicks(prog.code, 700)
    admitted = sum(ok for _, ok in results)
    assert admitted == 300
    assert all(sum(ok for which, ok in results if which == p) > 0 for p in range(PROCESSES)), "all took part"
    for proc, _ in trackers.procs:
        stop_tracker(proc)
    assert list((await _counters(settings, prog.offer_id)).values()) == [300]
    assert await _leases(settings, prog.offer_id) == {}


async def test_offer_and_partner_caps_together(settings: Settings, db: asyncpg.Connection, trackers: Trackers) -> None:
    """Two partners' links on one offer, a per-partner lifetime cap and an offer daily cap: a click takes from
    both leases or neither; each partner stays within its cap and together they reach the offer's exactly."""
    prog = await programme(
        db, caps={"clicks": {"daily": 150}, "per_partner": {"clicks": {"lifetime": 100}}}, fallback_url=FALLBACK
    )
    other = await _another_partner(db, prog)
    await _wait_ready_for(settings, trackers, other)
    first, second = await asyncio.gather(trackers.clicks(prog.code, 300, 8), trackers.clicks(other, 300, 8))
    a, b = sum(ok for _, ok in first), sum(ok for _, ok in second)
    assert a <= 100 and b <= 100, (a, b)
    assert a + b == 150, (a, b)
    for proc, _ in trackers.procs:
        stop_tracker(proc)
    counters = await _counters(settings, prog.offer_id)
    assert sorted(counters.values()) == sorted([a, b, a + b]), counters


async def test_a_killed_process_under_delivers_only_until_its_lease_expires(
    settings: Settings, db: asyncpg.Connection, trackers: Trackers
) -> None:
    """kill -9 of a process holding units: while its lease lives the others admit all but those units (at most
    one block), never more than the limit; once it expires they admit exactly the limit. A process stopped
    cleanly gives its units back at once."""
    limit = 400
    prog = await programme(db, caps={"clicks": {"daily": limit}}, fallback_url=FALLBACK)
    await _wait_ready_for(settings, trackers, prog.code)
    before = sum(ok for _, ok in await trackers.clicks(prog.code, 120))
    held = await _leases(settings, prog.offer_id)
    pids = {p: trackers.procs[p][0].pid for p in range(PROCESSES)}
    holding = {p: sum(u for name, u in held.items() if f".{pids[p]}." in name) for p in range(PROCESSES)}
    holders = [p for p in range(PROCESSES) if holding[p] > 0]
    assert len(holders) >= 2, (held, pids)  # the blocks of processes that just admitted clicks
    killed, stopped = holders[0], holders[1]
    assert 0 < holding[killed] <= BLOCK_MAX

    os.kill(pids[killed], signal.SIGKILL)
    trackers.procs[killed][0].wait()
    killed_at = time.monotonic()
    stop_tracker(trackers.procs[stopped][0])  # a clean stop: its units go back now
    after_stop = await _leases(settings, prog.offer_id)
    assert not any(f".{pids[stopped]}." in name for name in after_stop), after_stop
    trackers.live = [p for p in range(PROCESSES) if p not in (killed, stopped)]

    during = sum(ok for _, ok in await trackers.clicks(prog.code, limit - before + 2 * BLOCK_MAX))
    lease_lived = time.monotonic() - killed_at < LEASE_MS / 1000
    assert before + during <= limit
    if lease_lived:  # the bound: the killed process's unused units, at most one block
        assert before + during >= limit - holding[killed], (before, during, holding[killed])

    await asyncio.sleep(max(0.0, LEASE_MS / 1000 - (time.monotonic() - killed_at)) + 0.2)
    rest = sum(ok for _, ok in await trackers.clicks(prog.code, 2 * BLOCK_MAX))
    assert before + during + rest == limit, (before, during, rest)
    assert list((await _counters(settings, prog.offer_id)).values()) == [limit]
