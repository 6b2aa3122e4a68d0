"""The one Redis client of the tracker and of ingest: raw RESP pipelines to one server or a cluster.

`Redis(url, cluster)` takes `CLICKMINT_REDIS_URL` (one node or several, see kernel/redis/nodes.py) and
`CLICKMINT_REDIS_CLUSTER` (auto, yes, no). `connect()` decides which connection it needs: `yes` a
ClusterConnection, `no` a RespConnection to the first node, `auto` asks the nodes in turn (CLUSTER
SLOTS) and the first that answers says; when none answers the client stays unconnected (and the caller
retries), it never guesses "a single server". A client that took a single server and meets a MOVED
answer (the server became a cluster, or answered before its cluster was configured) becomes a cluster
client at once and sends the redirected commands again.

Every command goes through `execute` (a pipeline, error replies as values, as the hot paths want them)
or `call` (one command; it connects when needed and raises an error reply).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import hiredis

from kernel.redis.cluster import DEFAULT_REFRESH_S, ClusterConnection
from kernel.redis.nodes import CLUSTER_MODES, DEFAULT_CLUSTER_MODE, node_urls
from kernel.redis.resp import DEFAULT_CONNECT_TIMEOUT_S, RedisUnavailable, RespConnection, pack

log = logging.getLogger("clickmint.redis")
ReplyError = hiredis.ReplyError  # an error reply; `call` raises it, `execute` returns it as a value
_SCRIPT = b"*3\r\n$6\r\nSCRIPT"


class Redis:
    """A connection to the Redis of CLICKMINT_REDIS_URL, whichever kind it is."""

    def __init__(
        self,
        url: str,
        cluster: str = DEFAULT_CLUSTER_MODE,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S,
        refresh_s: float = DEFAULT_REFRESH_S,
    ) -> None:
        if cluster not in CLUSTER_MODES:
            raise ValueError(f"the cluster mode is one of {', '.join(CLUSTER_MODES)}, not {cluster!r}")
        self.seeds = node_urls(url)
        RespConnection(self.seeds[0])  # fails now on a URL the raw client cannot take
        self.mode = cluster
        self._timeout = connect_timeout
        self._refresh_s = refresh_s
        self._conn: RespConnection | ClusterConnection | None = None
        self._setup: list[bytes] = []  # the scripts loaded: a new cluster connection loads them too

    @property
    def connected(self) -> bool:
        return self._conn is not None and self._conn.connected

    @property
    def is_cluster(self) -> bool:
        return isinstance(self._conn, ClusterConnection)

    @property
    def cluster(self) -> ClusterConnection | None:
        """The cluster connection, when connected to a cluster (its slot map, for tests and metrics)."""
        return self._conn if isinstance(self._conn, ClusterConnection) else None

    async def connect(self) -> None:
        """(Re)connect; raises RedisUnavailable when no node answers."""
        await self.close()
        if self.mode == "yes":
            self._conn = await self._cluster(self.seeds)
        elif self.mode == "no":
            conn = RespConnection(self.seeds[0], self._timeout)
            await conn.connect()
            self._conn = conn
        else:
            self._conn = await self._detect()

    async def _cluster(self, seeds: Sequence[str]) -> ClusterConnection:
        conn = ClusterConnection(seeds, self._timeout, self._refresh_s, self._setup)
        await conn.connect()
        return conn

    async def _detect(self) -> RespConnection | ClusterConnection:
        """Ask the nodes in turn whether they are a cluster; the first that answers decides."""
        last: Exception | None = None
        for i, url in enumerate(self.seeds):
            conn = RespConnection(url, self._timeout)
            try:
                await conn.connect()
                (reply,) = await conn.execute([pack("CLUSTER", "SLOTS")], timeout=self._timeout)
            except RedisUnavailable as exc:
                await conn.close()
                last = exc
                continue
            if isinstance(reply, hiredis.ReplyError):  # "cluster support disabled": a single server
                return conn
            await conn.close()
            return await self._cluster([*self.seeds[i:], *self.seeds[:i]])  # the node that answered first
        raise RedisUnavailable(f"no Redis node of the URL answers (cluster or not is still undecided): {last}")

    async def execute(self, commands: Sequence[bytes], timeout: float | None = None) -> list[Any]:
        """One pipeline: every command's reply, error replies as ReplyError values; RedisUnavailable when
        the connection is down or Redis did not answer within `timeout`."""
        conn = self._conn
        if conn is None:
            raise RedisUnavailable("not connected")
        if commands and commands[0].startswith(_SCRIPT):
            self._setup = [command for command in commands if command.startswith(_SCRIPT)]
        replies = await conn.execute(commands, timeout)
        # Looked for in C (map, in) first: the tracker sends every click through here.
        if self.mode == "auto" and ReplyError in map(type, replies) and isinstance(conn, RespConnection):
            moved = [i for i, reply in enumerate(replies) if _redirected(reply)]
            if moved:
                replies = await self._become_cluster(commands, replies, moved, timeout)
        return replies

    async def _become_cluster(
        self, commands: Sequence[bytes], replies: list[Any], moved: list[int], timeout: float | None
    ) -> list[Any]:
        log.warning("redis answered %s: it is a cluster, switching to the cluster client", str(replies[moved[0]]))
        await self.close()
        self._conn = await self._cluster(self.seeds)
        again = await self._conn.execute([commands[i] for i in moved], timeout)
        for i, reply in zip(moved, again, strict=True):
            replies[i] = reply
        return replies

    async def call(self, *args: str | bytes | int, timeout: float | None = None) -> Any:
        """One command, connecting first when needed; an error reply is raised as ReplyError."""
        if not self.connected:
            await self.connect()
        (reply,) = await self.execute([pack(*args)], timeout)
        if isinstance(reply, hiredis.ReplyError):
            raise reply
        return reply

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()


def _redirected(reply: Any) -> bool:
    return isinstance(reply, hiredis.ReplyError) and str(reply).startswith(("MOVED ", "ASK "))
