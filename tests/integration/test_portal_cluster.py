"""The portal on a Redis Cluster: cap usage read from every node (an offer's counters live in its own slot), and
rate limits kept on the node of each key. Before, the portal read the first node of the URL only: an offer
whose counters lived elsewhere answered 503 and the offers page showed no usage."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from dataclasses import replace

import asyncpg
import pytest
from redis.exceptions import RedisError

from clickmint.embedded import pick_port
from kernel import caps as tracker_caps
from kernel.redis.pyclient import Lazy
from kernel.settings import Settings
from portal import cap_usage
from portal.errors import ApiError
from portal.ratelimit import RateLimiter
from tests.cluster_kit import ValkeyCluster, key_slot_owner, running_cluster
from tests.factories import programme
from tests.helpers import tracker_client
from tests.portal.kit import add_user, login, portal_client

pytestmark = pytest.mark.timeout(120)
CAPS = {"clicks": {"daily": 50}}


@pytest.fixture()
def cluster() -> Iterator[ValkeyCluster]:
    with running_cluster() as valkeys:
        yield valkeys


@pytest.mark.cluster
async def test_cap_usage_and_rate_limits_on_every_node(
    settings: Settings, db: asyncpg.Connection, cluster: ValkeyCluster
) -> None:
    settings = replace(settings, redis_url=cluster.url)
    (limit,) = tracker_caps.parse(CAPS)
    day = dt.datetime.now(dt.UTC).strftime("%Y%m%d")
    first = await programme(db, caps=CAPS)
    progs, owners = [first], set()
    while len(progs) < 4 or len(owners) < 3:  # offers until their counters are on all three masters
        assert len(progs) < 40, "the offers' counters never spread over the masters"
        key = tracker_caps.counter_key(settings.key_prefix, progs[-1].offer_id, limit, 0, day)
        owners.add(key_slot_owner(cluster, key))
        if len(progs) < 4 or len(owners) < 3:
            progs.append(await programme(db, caps=CAPS, merchant_id=first.merchant_id))
    await add_user(db, "ops@cluster.example", "operator", merchant_id=first.merchant_id)
    clicks = {prog.offer_id: 1 + n % 4 for n, prog in enumerate(progs)}
    async with tracker_client(settings) as (_app, tracker):
        for prog in progs:
            for i in range(clicks[prog.offer_id]):
                response = await tracker.get(f"/c/{prog.code}", headers={"user-agent": f"Mozilla/5.0 v{i}"})
                assert response.status_code == 302

    async with portal_client(settings) as client:
        await login(client, "ops@cluster.example")
        answers = {p.offer_id: await client.get(f"/api/v1/admin/offers/{p.offer_id}/caps") for p in progs}
        page = await client.get("/admin/offers")
    for offer_id, answer in answers.items():
        assert answer.status_code == 200, answer.text
        assert [(row["used"], row["remaining"]) for row in answer.json()["caps"]] == [
            (clicks[offer_id], 50 - clicks[offer_id])
        ]
    assert page.status_code == 200

    redis = Lazy(cluster.url)  # the offers page's read: every offer's counters in one call, across the nodes
    try:
        _, found = await cap_usage.usage(redis, settings.key_prefix, [(p.offer_id, (limit,), []) for p in progs])
        assert {offer_id: rows[0]["used"] for offer_id, rows in found.items()} == clicks

        limiter = RateLimiter(redis, settings.key_prefix)
        callers = [f"caller-{n}@cluster.example" for n in range(12)]  # their keys fall on different nodes
        for caller in callers:
            await limiter.hit("login", caller, 2)
            await limiter.hit("login", caller, 2)
            with pytest.raises(ApiError) as refused:
                await limiter.hit("login", caller, 2)
            assert refused.value.status == 429 and refused.value.retry_after
        await limiter.reset("login", callers[0])
        await limiter.hit("login", callers[0], 2)  # counted from zero again

        for index in range(cluster.masters):  # the whole cluster gone: a RedisError, which the callers turn
            cluster.kill(index)  # into a 503 or "caps": null, never redis-py's own cluster exceptions (a 500)
        with pytest.raises(RedisError):
            await cap_usage.usage(redis, settings.key_prefix, [(p.offer_id, (limit,), []) for p in progs])
        with pytest.raises(ApiError) as away:  # the limit cannot be checked: refused, closed not open
            await limiter.hit("login", callers[1], 2)
        assert (away.value.status, away.value.code) == (503, "redis_unavailable")
    finally:
        await redis.aclose()


async def test_the_portal_starts_while_redis_is_away_and_reads_it_once_it_answers(
    settings: Settings, db: asyncpg.Connection
) -> None:
    """The client is made on first use: no answer is a RedisError then (a 503 where counters are read), and the
    next use tries again."""
    redis = Lazy(f"redis://127.0.0.1:{pick_port(0)}")  # auto: nobody answers, so which client is right is unknown
    with pytest.raises(RedisError):
        await redis.client()
    redis.url = settings.redis_url or ""  # now a node answers
    with pytest.raises(RedisError):  # but the failure is remembered a moment: requests do not queue to retry
        await redis.mget(["no-such-key"])
    await asyncio.sleep(Lazy.RETRY_S)  # then the next use connects
    try:
        assert await redis.mget(["no-such-key"]) == [None]
    finally:
        await redis.aclose()
