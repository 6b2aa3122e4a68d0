"""Checks before running against a server: a Redis that could evict the event streams is refused."""

from __future__ import annotations

import redis

from kernel.errors import ClickmintError
from kernel.redis.nodes import node_urls

# Policies that may evict keys without a TTL, i.e. our streams: acknowledged clicks could vanish.
EVICTING_POLICIES = frozenset(("allkeys-lru", "allkeys-lfu", "allkeys-random"))


class PreflightError(ClickmintError):
    """A server is unsafe for Clickmint; the message says which setting to change."""


def redis_policy(url: str) -> str:
    """The server's maxmemory policy (of a cluster: the first evicting one among its masters, else
    noeviction's); raises PreflightError when Redis cannot be reached. Of several nodes: the first
    that answers."""
    nodes = node_urls(url)
    for node in nodes[:-1]:
        try:
            return _policy(node)
        except PreflightError:
            continue
    return _policy(nodes[-1])


def _policy(url: str) -> str:
    client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
    try:
        policies = [str(client.info("memory").get("maxmemory_policy", "noeviction"))]
        if client.info("cluster").get("cluster_enabled"):
            for _first, _last, master, *_ in client.execute_command("CLUSTER", "SLOTS"):  # type: ignore[no-untyped-call]  # redis-py leaves execute_command unannotated
                host = master[0].decode() if isinstance(master[0], bytes) else str(master[0])
                node = redis.Redis(
                    host=host or "127.0.0.1",
                    port=int(master[1]),
                    username=client.connection_pool.connection_kwargs.get("username"),
                    password=client.connection_pool.connection_kwargs.get("password"),
                    socket_connect_timeout=5,
                    socket_timeout=5,
                )
                with node:
                    policies.append(str(node.info("memory").get("maxmemory_policy", "noeviction")))
    except redis.RedisError as exc:
        raise PreflightError(f"cannot reach Redis at {url.split('@')[-1]}: {exc}") from exc
    finally:
        client.close()
    return next((policy for policy in policies if policy in EVICTING_POLICIES), policies[0])


def check_redis(url: str) -> str:
    """The server's maxmemory policy; raises PreflightError when it could evict streams or Redis is down."""
    return refuse_evicting(redis_policy(url))


def refuse_evicting(policy: str) -> str:
    """The policy, or PreflightError when it could evict the streams."""
    if policy in EVICTING_POLICIES:
        raise PreflightError(
            f"Redis maxmemory-policy is {policy}: it may evict the event streams and lose acknowledged clicks; "
            "set maxmemory-policy noeviction (or a volatile-* policy)"
        )
    return policy
