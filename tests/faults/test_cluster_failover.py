"""Ingest on a real Valkey Cluster with a replica per master (issue 23), clicks flowing all along:
the seed node down while ingest starts, a master killed and its replica promoted, a master paused.

In each, every answered click is stored exactly once, every shard's backlog (its oldest entry not
yet stored, as ingest's own /metrics reads it through the cluster-aware client) is younger than 2 s
within 10 s of the cluster being ok again, and nobody steps in. One cluster serves the three tests,
in order (each leaves it with three masters, each with a replica); together they take about a minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import pytest

from billing.consumer import Ingest
from billing.derive import Deriver
from billing.metrics import BillingMetrics
from billing.settings import BillingSettings
from kernel.env import Env
from kernel.redis.client import Redis
from kernel.settings import Settings
from tests.cluster_kit import ValkeyCluster, running_cluster
from tests.factories import Programme, programme
from tests.helpers import PER_ADDRESS, tracker_client, visitor
from tracker.snapshot import shard_of

pytestmark = [pytest.mark.timeout(120), pytest.mark.cluster]
SHARDS = 6
LAG_S = 2.0  # each shard's oldest entry not yet stored must be younger than this...
WITHIN_S = 10.0  # ...this long after the cluster is ok again
_AGE = re.compile(r'^clickmint_ingest_oldest_age_seconds\{shard="(\d+)"\} (\S+)$', re.M)
_STALLED = re.compile(r'^clickmint_ingest_shard_stalled\{shard="(\d+)"\} (\S+)$', re.M)


@pytest.fixture(scope="module")
def cluster() -> Iterator[ValkeyCluster]:
    with running_cluster(replicas=1, full_coverage=True) as valkeys:
        yield valkeys


def _urls(cluster: ValkeyCluster, *indexes: int) -> str:
    """A CLICKMINT_REDIS_URL naming these nodes."""
    return ",".join(f"redis://127.0.0.1:{cluster.nodes[i].port}" for i in indexes)


async def _links(db: asyncpg.Connection) -> list[Programme]:
    """Links until every shard has one, so the clicks reach every master."""
    progs: dict[int, Programme] = {}
    while len(progs) < SHARDS:
        prog = await programme(db)
        progs.setdefault(shard_of(prog.link_id, SHARDS), prog)
    return list(progs.values())


@dataclass
class Traffic:
    """Visitors clicking every link until stopped; `answered` holds the click id of every 302."""

    client: httpx.AsyncClient
    links: list[Programme]
    answered: list[str] = field(default_factory=list)
    failed: int = 0
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self, visitors: int = 4) -> None:
        self._tasks = [asyncio.create_task(self._visitor(n)) for n in range(visitors)]

    async def _visitor(self, n: int) -> None:
        i = 0
        while not self._stop.is_set():
            prog = self.links[i % len(self.links)]
            response = await self.client.get(f"/c/{prog.code}", headers=visitor(n * 10_000 + i))
            if response.status_code == 302:
                self.answered.append(parse_qs(urlsplit(response.headers["location"]).query)["cid"][0])
            else:
                self.failed += 1
            i += 1
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)


@contextlib.asynccontextmanager
async def _ingest(settings: Settings) -> AsyncIterator[tuple[Ingest, BillingMetrics]]:
    """Ingest in this process, and its metrics on the same kind of client."""
    billing = BillingSettings.from_env(Env({"CLICKMINT_INGEST_STALL_S": "5"}), core=settings)
    ingest = Ingest(billing, derive=Deriver())
    metrics = BillingMetrics(billing, Redis(settings.redis_url or "", "auto", connect_timeout=1.0), ingest.stats)
    task = asyncio.create_task(ingest.run())
    try:
        yield ingest, metrics
    finally:
        ingest.stop()
        await asyncio.wait_for(task, 30)
        await metrics.close()
        await metrics.redis.close()


async def _caught_up(metrics: BillingMetrics, ok_at: float) -> float:
    """Seconds from the cluster being ok to every shard's backlog younger than LAG_S (fails after WITHIN_S)."""
    last = ""
    while time.monotonic() - ok_at < WITHIN_S:
        last = await metrics.render()
        ages = {int(shard): float(age) for shard, age in _AGE.findall(last)}
        if len(ages) == SHARDS and max(ages.values()) < LAG_S and "clickmint_ingest_redis_up 1" in last:
            return time.monotonic() - ok_at
        await asyncio.sleep(0.2)
    raise AssertionError(f"a shard still lags {WITHIN_S} s after the cluster is ok:\n{last}")


async def _stored_once(db: asyncpg.Connection, answered: list[str], metrics: BillingMetrics) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if await db.fetchval("SELECT count(*) FROM events") >= len(answered):
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)  # anything stored twice would show now
    rows = await db.fetch("SELECT click_id, count(*) AS n FROM events GROUP BY click_id")
    counts = {row["click_id"]: row["n"] for row in rows}
    assert set(counts) == set(answered), "every answered click is stored, and nothing else"
    assert set(counts.values()) == {1}, "exactly once"
    text = await metrics.render()
    assert {stalled for _, stalled in _STALLED.findall(text)} == {"0"}, text


def _settings(settings: Settings, cluster: ValkeyCluster, name: str) -> Settings:
    cluster.wait_replicated()  # every master has a replica in sync before anything fails
    return replace(
        settings, redis_url=_urls(cluster, 0, 1, 2), shards=SHARDS, key_prefix=f"{settings.key_prefix}{name}"
    )


async def test_ingest_started_while_the_seed_is_down_waits_for_it_as_a_cluster_client(
    settings: Settings, db: asyncpg.Connection, cluster: ValkeyCluster, caplog: pytest.LogCaptureFixture
) -> None:
    """Ingest knows only the seed (as in the issue), which is down when ingest starts: it does not fall
    back to a single-server client; when the seed is back, every shard drains."""
    settings = _settings(settings, cluster, "seed")
    seed = next(i for i, node in enumerate(cluster.nodes) if node.port in cluster.master_ports())
    links = await _links(db)
    async with tracker_client(settings, {**PER_ADDRESS, "CLICKMINT_REDIS_BUDGET_MS": "300"}) as (_app, client):
        traffic = Traffic(client, links)
        traffic.start()
        await asyncio.sleep(0.5)
        await asyncio.to_thread(cluster.nodes[seed].stop)  # SIGTERM: its AOF is flushed, it may come back as it was
        cluster.down.add(seed)
        alone = replace(settings, redis_url=_urls(cluster, seed))
        async with _ingest(alone) as (ingest, metrics):
            await asyncio.sleep(2.0)
            assert ingest.stats.events == 0  # nothing to ask which kind of Redis it is
            await asyncio.to_thread(cluster.start_again, seed)
            await asyncio.to_thread(cluster.wait_ok)
            ok_at = time.monotonic()
            took = await _caught_up(metrics, ok_at)
            assert all(conn.is_cluster for conn in ingest._streams.values()), "never a single-server client"
            await traffic.stop()
            await _stored_once(db, traffic.answered, metrics)
    print(f"\nseed down: {len(traffic.answered)} clicks answered, every shard under {LAG_S} s {took:.1f} s after ok")
    assert traffic.failed == 0 and len(traffic.answered) > 100
    tracebacks = [r for r in caplog.records if r.name.startswith("clickmint.billing") and r.exc_info]
    assert not tracebacks, "an expected state of the cluster is a one-line warning"
    assert any("redis unavailable" in r.getMessage() for r in caplog.records if r.name == "clickmint.billing.ingest")


async def test_a_master_killed_and_its_replica_promoted(
    settings: Settings, db: asyncpg.Connection, cluster: ValkeyCluster, caplog: pytest.LogCaptureFixture
) -> None:
    """SIGKILL of a master under traffic: its replica is promoted, and ingest reads the shards from the
    promoted replica as soon as the cluster is ok, not when the dead master comes back."""
    settings = _settings(settings, cluster, "kill")
    links = await _links(db)
    async with (
        tracker_client(settings, {**PER_ADDRESS, "CLICKMINT_REDIS_BUDGET_MS": "300"}) as (_app, client),
        _ingest(settings) as (ingest, metrics),
    ):
        traffic = Traffic(client, links)
        traffic.start()
        await asyncio.sleep(1.0)
        masters = cluster.master_ports()
        victim = next(i for i, node in enumerate(cluster.nodes) if node.port in masters and i != 0)
        await asyncio.to_thread(cluster.kill, victim)
        await asyncio.to_thread(cluster.wait_ok)  # the replica took the dead master's slots
        ok_at = time.monotonic()
        assert cluster.nodes[victim].port not in cluster.master_ports()
        took = await _caught_up(metrics, ok_at)
        await asyncio.sleep(0.5)
        await traffic.stop()
        await _stored_once(db, traffic.answered, metrics)
        assert ingest.stats.new_events == len(traffic.answered)
        await asyncio.to_thread(cluster.start_again, victim)  # back as the new master's replica
        await asyncio.to_thread(cluster.wait_ok)
        await asyncio.to_thread(cluster.wait_replicated)
    print(
        f"\nmaster killed: {len(traffic.answered)} clicks answered, every shard under {LAG_S} s {took:.1f} s after ok"
    )
    assert traffic.failed == 0
    assert not [r for r in caplog.records if r.name.startswith("clickmint.billing") and r.exc_info]


async def test_a_master_paused(
    settings: Settings, db: asyncpg.Connection, cluster: ValkeyCluster, caplog: pytest.LogCaptureFixture
) -> None:
    """SIGSTOP of a master: its connections stay open and nothing answers. Ingest's blocked read gives up
    after its BLOCK time plus a margin, reads the promoted replica; the paused node, resumed, rejoins as
    a replica and nothing it took while paused is stored twice or lost."""
    settings = _settings(settings, cluster, "pause")
    links = await _links(db)
    async with (
        tracker_client(settings, {**PER_ADDRESS, "CLICKMINT_REDIS_BUDGET_MS": "300"}) as (_app, client),
        _ingest(settings) as (ingest, metrics),
    ):
        traffic = Traffic(client, links)
        traffic.start()
        await asyncio.sleep(1.0)
        masters = cluster.master_ports()
        victim = next(i for i, node in enumerate(cluster.nodes) if node.port in masters and i != 0)
        cluster.pause(victim)
        try:
            await asyncio.to_thread(cluster.wait_ok)
            ok_at = time.monotonic()
            took = await _caught_up(metrics, ok_at)
        finally:
            cluster.resume(victim)
        await asyncio.to_thread(cluster.wait_ok)
        await asyncio.sleep(0.5)
        await traffic.stop()
        await _stored_once(db, traffic.answered, metrics)
        assert ingest.stats.new_events == len(traffic.answered)
        await asyncio.to_thread(cluster.wait_replicated)
    print(
        f"\nmaster paused: {len(traffic.answered)} clicks answered, every shard under {LAG_S} s {took:.1f} s after ok"
    )
    assert traffic.failed == 0
    assert not [r for r in caplog.records if r.name.startswith("clickmint.billing") and r.exc_info]
