"""Scale-out on engines that already exist: a real 3-master Valkey Cluster on loopback (the bundled
valkey-server in cluster mode, ports in a test range), two tracker processes and two ingest processes,
and a master restarted in the middle of the traffic. Every answered click is in PostgreSQL exactly once."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import orjson
import pytest
import redis

from kernel.settings import Settings
from tests.cluster_kit import ValkeyCluster, key_slot_owner, running_cluster
from tests.contract import check_entry
from tests.factories import programme
from tests.faults.test_tracker_kill import start_tracker, stop_tracker, tracker_env
from tests.helpers import drain, tracker_client
from tests.integration.test_caps import FALLBACK, clicks_over_a_cap, stored_over_cap

pytestmark = [pytest.mark.timeout(180), pytest.mark.cluster]
SHARDS = 6


@pytest.fixture()
def cluster() -> Iterator[ValkeyCluster]:
    with running_cluster() as valkeys:
        yield valkeys


def _ingest(env: dict[str, str], name: str, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "clickmint", "ingest"],
            env={**env, "CLICKMINT_CONSUMER_NAME": name, "CLICKMINT_BILLING_METRICS_PORT": "0"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def test_two_trackers_two_ingests_and_a_master_restart(
    settings: Settings, db: asyncpg.Connection, cluster: ValkeyCluster, tmp_path: Path
) -> None:
    settings = replace(settings, redis_url=cluster.url, shards=SHARDS)
    owners = {key_slot_owner(cluster, f"{settings.key_prefix}:events:{{{n}}}") for n in range(SHARDS)}
    assert len(owners) == 3, "the shards are spread over the three masters"
    prog = await programme(db)
    env = tracker_env(settings, CLICKMINT_TRUST_FORWARDED="true")
    trackers = [start_tracker(env, 1, tmp_path / f"tracker{i}.log") for i in range(2)]
    ingests = [_ingest(env, f"ingest-{i}", tmp_path / f"ingest{i}.log") for i in range(2)]
    answered: list[str] = []
    failed = 0
    try:
        stop = asyncio.Event()

        async def visitor(n: int) -> None:
            nonlocal failed
            base = trackers[n % 2][1]
            async with httpx.AsyncClient(base_url=base, timeout=10) as client:
                i = 0
                while not stop.is_set():
                    try:
                        response = await client.get(
                            f"/c/{prog.code}",
                            headers={"user-agent": "Mozilla/5.0", "x-forwarded-for": f"198.51.{n}.{i % 250}"},
                        )
                    except httpx.HTTPError:
                        failed += 1
                        continue
                    assert response.status_code == 302, response.text
                    answered.append(parse_qs(urlsplit(response.headers["location"]).query)["cid"][0])
                    i += 1

        load = [asyncio.create_task(visitor(n)) for n in range(8)]
        await asyncio.sleep(2.0)
        before = len(answered)
        await asyncio.to_thread(cluster.restart, 1, 1.0)  # a master down for a second, then back
        during = len(answered) - before
        await asyncio.sleep(2.0)
        stop.set()
        await asyncio.gather(*load)

        deadline = time.monotonic() + 60
        stored = 0
        while time.monotonic() < deadline:
            stored = await db.fetchval("SELECT count(*) FROM events")
            if stored >= len(answered):
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)  # anything stored twice would show now
        rows = await db.fetch("SELECT click_id, count(*) AS n FROM events GROUP BY click_id")
    finally:
        for proc in ingests:
            proc.terminate()
        for proc in ingests:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        for proc, _ in trackers:
            stop_tracker(proc)
    counts = {row["click_id"]: row["n"] for row in rows}
    print(
        f"\ncluster: {len(answered)} clicks answered ({during} while a master restarted), {failed} failed, "
        f"{sum(counts.values())} events stored"
    )
    assert failed == 0 and during > 0
    assert set(counts) == set(answered), "every answered click is stored, and nothing else"
    assert set(counts.values()) == {1}, "exactly once"
    # Both ingest processes read every shard through the group (consumers are named <process>:<shard>).
    consumers: set[str] = set()
    for n in range(SHARDS):
        key = f"{settings.key_prefix}:events:{{{n}}}"
        node = key_slot_owner(cluster, key)
        with redis.Redis(port=node) as client:
            for consumer in client.xinfo_consumers(key, "billing"):
                name = consumer["name"]
                consumers.add((name.decode() if isinstance(name, bytes) else name).split(":")[0])
    assert consumers == {"ingest-0", "ingest-1"}


async def test_click_caps_by_lease_on_a_cluster(
    settings: Settings, db: asyncpg.Connection, cluster: ValkeyCluster
) -> None:
    """The cap counters and leases live in the offer's slot, the streams in theirs: the leases are taken and the
    used units reported in a round trip of their own, the clicks appended with the tracker's verdict ("c"), and
    an over-cap click is stored just as on a single Redis."""
    settings = replace(settings, redis_url=cluster.url, shards=SHARDS)
    prog, locations = await clicks_over_a_cap(settings, db)
    assert [loc == FALLBACK for loc in locations] == [False, False, False, True, True]
    fields = []
    for n in range(SHARDS):
        key = f"{settings.key_prefix}:events:{{{n}}}"
        with redis.Redis(port=key_slot_owner(cluster, key)) as client:
            fields += [entry for _, entry in client.xrange(key)]
    assert len(fields) == 5 and sorted(entry[b"c"] for entry in fields) == [b"0", b"0", b"1", b"1", b"1"]
    for entry in fields:
        check_entry(entry)
    offer = f"{settings.key_prefix}:cap:{{o{prog.offer_id}}}:"
    with redis.Redis(port=key_slot_owner(cluster, offer)) as client:
        counters = [int(client.get(key)) for key in client.keys(offer + "*")]
        leases = client.keys(f"{settings.key_prefix}:lease:{{o{prog.offer_id}}}:*")
    assert counters == [3, 3] and leases == []  # admitted clicks counted; the tracker's stop gave its units back
    assert await stored_over_cap(settings, db, prog) == [(False, True)] * 3 + [(True, False)] * 2  # sorted


async def test_bursts_on_a_cluster_are_counted_in_the_slot_of_the_stream(
    settings: Settings, db: asyncpg.Connection, cluster: ValkeyCluster
) -> None:
    """A script's keys share one slot: on a Cluster an address's hits are counted per shard, beside the
    stream ({N}), in the same script call that appends them. 40 hits of one link: 30 views and 10 bursts,
    as on a single Redis; ingest stores them so."""
    settings = replace(settings, redis_url=cluster.url, shards=SHARDS)
    prog = await programme(db)
    async with tracker_client(settings) as (app, client):
        for _ in range(40):
            assert (await client.get(f"/v/{prog.code}", headers={"user-agent": "Mozilla/5.0"})).status_code == 200
        shard = app.cache.snapshot.links[prog.code].shard
    stream = f"{settings.key_prefix}:events:{{{shard}}}"
    with redis.Redis(port=key_slot_owner(cluster, stream)) as client:
        entries = [fields for _, fields in client.xrange(stream)]
        lists = list(client.scan_iter(match=f"{settings.key_prefix}:burst:*"))
    for entry in entries:
        check_entry(entry)
    assert [entry[b"b"] for entry in entries] == [b"0"] * 30 + [b"1"] * 10
    assert len(lists) == 1 and lists[0].startswith(f"{settings.key_prefix}:burst:{{{shard}}}:".encode())
    await drain(settings, 40, db)
    rows = await db.fetch("SELECT id::text AS id, bot_reason FROM events")
    # Each event as its entry said (events of one millisecond have no order in the table: told apart by id).
    expected = {orjson.loads(entry[b"d"])["id"]: ("burst" if entry[b"b"] == b"1" else None) for entry in entries}
    assert {row["id"]: row["bot_reason"] for row in rows} == expected
    assert sorted(expected.values(), key=str) == [None] * 30 + ["burst"] * 10
