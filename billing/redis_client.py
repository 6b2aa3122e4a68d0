"""The redis-py client billing uses for its cold-path commands (groups, trims, dead letters, metrics,
retention): a plain client for one server, a RedisCluster when the server says it is part of a cluster."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError


async def connect(url: str, **options: Any) -> aioredis.Redis | RedisCluster:
    """A client for `url`; asks the server (INFO cluster) which kind it needs. An unreachable server gets
    the plain client, which reconnects by itself; a cluster is found at the next start."""
    plain = aioredis.Redis.from_url(url, **options)
    try:
        info = await plain.info("cluster")
    except RedisError:
        return plain
    if not info.get("cluster_enabled"):
        return plain
    await plain.aclose()
    cluster = RedisCluster.from_url(url, **options)
    await cluster.initialize()
    return cluster
