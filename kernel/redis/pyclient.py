"""redis-py for the cold paths that want its conveniences (retention's look at the streams, the portal's
counters and rate limits, tests): a plain client for one server, a RedisCluster for a cluster, decided as
the raw client decides (kernel/redis/client.py): by CLICKMINT_REDIS_CLUSTER, or in `auto` by asking the
nodes in turn. `Lazy` makes that client on first use, for a process that starts while Redis is away."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException, RedisError

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


class Lazy:
    """redis-py for a process that must start and keep serving while Redis is away (the portal): the client
    `connect` chooses for the nodes of `url` (one server or a cluster), made on first use. A failed attempt is
    remembered for RETRY_S: the requests meanwhile fail at once instead of queueing for their own attempts.
    Every failure of `client`, `mget`, `script` and `delete` is a RedisError (a cluster none of whose nodes
    answers raises redis-py's RedisClusterException family, which is not one: it is told as ConnectionError)."""

    RETRY_S = 1.0

    def __init__(self, url: str, cluster: str = DEFAULT_CLUSTER_MODE, **options: Any) -> None:
        if cluster not in CLUSTER_MODES:
            raise ValueError(f"the cluster mode is one of {', '.join(CLUSTER_MODES)}, not {cluster!r}")
        self.url, self.cluster, self._options = url, cluster, options
        self._client: aioredis.Redis | RedisCluster | None = None
        self._lock = asyncio.Lock()
        self._failed: tuple[float, RedisError] | None = None  # when the last attempt failed, and why
        self._scripts: dict[str, Any] = {}  # source -> the script registered with the current client

    async def client(self) -> aioredis.Redis | RedisCluster:
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is not None:
                return self._client
            loop = asyncio.get_running_loop()
            if self._failed is not None and loop.time() - self._failed[0] < self.RETRY_S:
                raise self._failed[1]
            try:
                self._client = await connect(self.url, self.cluster, **self._options)
            except (RedisError, RedisClusterException) as exc:
                error = _told(exc)
                self._failed = (loop.time(), error)
                raise error from exc
            self._failed, self._scripts = None, {}
            return self._client

    async def mget(self, keys: Sequence[str]) -> list[Any]:
        """The values of `keys` in their order; on a cluster, keys of several slots are read per node (not
        atomically: each node's keys as one MGET)."""
        client = await self.client()
        try:
            if isinstance(client, RedisCluster):
                return list(await client.mget_nonatomic(list(keys)))
            return list(await client.mget(list(keys)))
        except RedisClusterException as exc:
            raise _told(exc) from exc

    async def script(self, source: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run a Lua script (EVALSHA, loaded when Redis does not know it) on the node of its keys."""
        client = await self.client()
        script = self._scripts.get(source)
        if script is None:
            script = self._scripts[source] = client.register_script(source)
        try:
            return await script(keys=list(keys), args=list(args))
        except RedisClusterException as exc:
            raise _told(exc) from exc

    async def delete(self, key: str) -> None:
        client = await self.client()
        try:
            await client.delete(key)
        except RedisClusterException as exc:
            raise _told(exc) from exc

    async def aclose(self) -> None:
        async with self._lock:
            if self._client is not None:
                await self._client.aclose()
                self._client = None


def _told(exc: Exception) -> RedisError:
    """A failure as a RedisError: a cluster's own exceptions (no node answers, a slot not covered) as
    ConnectionError."""
    if isinstance(exc, RedisError):
        return exc
    return aioredis.ConnectionError(f"the Redis Cluster cannot answer: {exc}")
