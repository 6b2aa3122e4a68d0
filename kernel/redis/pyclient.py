"""redis-py for the cold paths that want its conveniences (retention's look at the streams, tests):
a plain client for one server, a RedisCluster for a cluster, decided as the raw client decides
(kernel/redis/client.py): by CLICKMINT_REDIS_CLUSTER, or in `auto` by asking the nodes in turn."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisError

from kernel.redis.nodes import CLUSTER_MODES, DEFAULT_CLUSTER_MODE, address, node_urls


async def connect(url: str, cluster: str = DEFAULT_CLUSTER_MODE, **options: Any) -> aioredis.Redis | RedisCluster:
    """A redis-py client for the nodes of `url`; raises redis.exceptions.ConnectionError when `cluster`
    is auto and no node answers (it is then unknown which client is right)."""
    if cluster not in CLUSTER_MODES:
        raise ValueError(f"the cluster mode is one of {', '.join(CLUSTER_MODES)}, not {cluster!r}")
    urls = node_urls(url)
    if cluster == "no":
        return aioredis.Redis.from_url(urls[0], **options)
    if cluster == "auto":
        last: Exception | None = None
        for node in urls:
            plain = aioredis.Redis.from_url(node, **options)
            try:
                info = await plain.info("cluster")
            except RedisError as exc:
                last = exc
                await plain.aclose()
                continue
            if not info.get("cluster_enabled"):
                return plain
            await plain.aclose()
            break
        else:
            raise aioredis.ConnectionError(f"no Redis node of the URL answers: {last}")
    nodes = [ClusterNode(*address(node)) for node in urls]
    client = RedisCluster.from_url(urls[0], startup_nodes=nodes, **options)
    await client.initialize()
    return client
