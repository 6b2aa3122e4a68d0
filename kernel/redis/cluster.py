"""Redis Cluster for the raw RESP pipelines, with no change to the callers.

A ClusterConnection routes each packed command to the master that
owns its slot: the slot comes from the command's first hash tag ({N} of cm:events:{N}, {o<offer>} of the
caps and nonce keys; every command Clickmint sends names its hash-tagged key before any payload), one
pipeline per node, all nodes at once, the replies put back in order. A command without a hash tag
(SCRIPT LOAD, PING) goes to every master. MOVED and ASK answers refresh the slot map and are retried
once; a node that cannot be reached makes the batch fail as a whole (RedisUnavailable), so the tracker
spools it, and the event ids make the replay idempotent. Whether Redis is a cluster at all is decided
in kernel/redis/client.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import hiredis

from kernel.redis.nodes import address, node_url, node_urls
from kernel.redis.resp import DEFAULT_CONNECT_TIMEOUT_S, RedisUnavailable, RespConnection, pack

SLOTS = 16384
DEFAULT_REFRESH_S = 10.0  # the slot map is read again this often, even when nothing failed
REFRESH_AFTER_ERROR_S = 0.25  # and after a failed node, before the next command, at most this often


def _crc16_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return table


_TABLE = _crc16_table()


def crc16(data: bytes) -> int:
    """CRC16-CCITT (XModem), as Redis Cluster hashes keys."""
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ _TABLE[((crc >> 8) ^ byte) & 0xFF]
    return crc


def key_slot(key: bytes) -> int:
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            key = key[start + 1 : end]
    return crc16(key) % SLOTS


_TAG_SLOTS: dict[bytes, int] = {}


_BROADCAST = (b"*3\r\n$6\r\nSCRIPT", b"*1\r\n$4\r\nPING", b"*2\r\n$4\r\nPING")


def command_slot(command: bytes) -> int | None:
    """The slot of a packed command's first hash tag, or None for a command without a key (to every master)."""
    if command.startswith(_BROADCAST):
        return None
    start = command.find(b"{")
    if start < 0:
        return None
    end = command.find(b"}", start + 1)
    if end <= start + 1:
        return None
    tag = command[start + 1 : end]
    slot = _TAG_SLOTS.get(tag)
    if slot is None:
        slot = _TAG_SLOTS[tag] = crc16(tag) % SLOTS
    return slot


class ClusterConnection:
    """Pipelines over every master of a Redis Cluster; the same interface as RespConnection.

    The slot map is read from any node that answers: the nodes of the last map (masters and replicas)
    first, then the seeds of CLICKMINT_REDIS_URL, nodes that just failed last. It is read again after a
    MOVED or ASK answer, after a node could not be reached or did not answer in time (at most every
    REFRESH_AFTER_ERROR_S), and every `refresh_s` seconds: a promoted replica is written to (and read
    from) as soon as the cluster says so, without waiting for the dead master to come back.
    """

    def __init__(
        self,
        seeds: str | Sequence[str],
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S,
        refresh_s: float = DEFAULT_REFRESH_S,
        setup: Sequence[bytes] = (),
    ) -> None:
        self._seeds = node_urls(seeds) if isinstance(seeds, str) else list(seeds)
        self._url = self._seeds[0]  # credentials and TLS settings of every node
        self._timeout = connect_timeout
        self._refresh_s = refresh_s
        self._slots: list[tuple[str, int] | None] = [None] * SLOTS
        self._known: list[tuple[str, int]] = []  # every node of the last map, masters first
        self._failed: dict[tuple[str, int], float] = {}  # node -> when it last failed (asked last)
        self._nodes: dict[tuple[str, int], RespConnection] = {}
        self._setup: list[bytes] = list(setup)  # replayed on every node connection (SCRIPT LOAD)
        self._ready = False
        self._stale = False
        self._refreshed_at = self._tried_at = 0.0
        self._refresh_lock = asyncio.Lock()
        self.refreshes = 0

    @property
    def connected(self) -> bool:
        return self._ready

    async def connect(self) -> None:
        await self._refresh()
        self._ready = True

    def masters(self) -> list[tuple[str, int]]:
        """The masters of the last slot map."""
        return sorted({node for node in self._slots if node is not None})

    def _candidates(self) -> list[tuple[str, int]]:
        order = list(dict.fromkeys([*self._known, *(address(url) for url in self._seeds)]))
        return sorted(order, key=lambda node: self._failed.get(node, 0.0))  # stable: healthy nodes first

    async def _refresh(self) -> None:
        """Read the slot map from any node that answers."""
        last: Exception | None = None
        for host, port in self._candidates():
            conn = RespConnection(node_url(self._url, host, port), self._timeout)
            try:
                await conn.connect()
                (reply,) = await conn.execute([pack("CLUSTER", "SLOTS")], timeout=self._timeout)
            except RedisUnavailable as exc:
                self._failed[host, port] = time.monotonic()
                last = exc
                continue
            finally:
                await conn.close()
            if isinstance(reply, hiredis.ReplyError):
                raise RedisUnavailable(f"CLUSTER SLOTS refused by {host}:{port}: {reply}")
            for demoted in self._apply(reply, host):  # a master no more: let its connection go
                await demoted.close()
            return
        raise RedisUnavailable(f"no cluster node answers: {last}")

    def _apply(self, reply: list[Any], asked: str) -> list[RespConnection]:
        slots: list[tuple[str, int] | None] = [None] * SLOTS
        masters: dict[tuple[str, int], None] = {}
        replicas: dict[tuple[str, int], None] = {}
        for first, last_slot, master, *others in reply:
            node = (_host(master[0], asked), int(master[1]))
            masters[node] = None
            for other in others:
                replicas[_host(other[0], asked), int(other[1])] = None
            for slot in range(first, last_slot + 1):
                slots[slot] = node
        self._slots = slots
        self._known = list(dict.fromkeys([*masters, *replicas]))
        self._refreshed_at = time.monotonic()
        self._stale = False
        self.refreshes += 1
        return [self._nodes.pop(node) for node in [node for node in self._nodes if node not in masters]]

    async def _refresh_if_due(self) -> None:
        now = time.monotonic()
        periodic = now - self._refreshed_at >= self._refresh_s
        if not periodic and not (self._stale and now - self._tried_at >= REFRESH_AFTER_ERROR_S):
            return
        async with self._refresh_lock:
            if self._tried_at > now:
                return  # another task read the map (or tried to) meanwhile
            self._tried_at = time.monotonic()
            await self._refresh()

    async def _node(self, node: tuple[str, int]) -> RespConnection:
        conn = self._nodes.get(node)
        if conn is not None and conn.connected:
            return conn
        conn = RespConnection(node_url(self._url, *node), self._timeout)
        await conn.connect()
        if self._setup:
            for reply in await conn.execute(self._setup, timeout=self._timeout):
                if isinstance(reply, hiredis.ReplyError):
                    await conn.close()
                    raise RedisUnavailable(f"node {node} refused the set-up: {reply}")
        self._nodes[node] = conn
        return conn

    async def execute(self, commands: Sequence[bytes], timeout: float | None = None) -> list[Any]:
        """Write each command to the master owning its slot (commands without a tag: to every master)."""
        if not self._ready:
            raise RedisUnavailable("not connected")
        await self._refresh_if_due()
        replies: list[Any] = [None] * len(commands)
        broadcast = [i for i, command in enumerate(commands) if command_slot(command) is None]
        if broadcast:
            if any(commands[i].startswith(_BROADCAST[0]) for i in broadcast):
                self._setup = [commands[i] for i in broadcast]  # new node connections load the scripts too
            results = await self._each({node: [commands[i] for i in broadcast] for node in self.masters()}, timeout)
            first = next(iter(results.values()), [])
            for i, reply in zip(broadcast, first, strict=False):
                replies[i] = reply
        routed = [i for i in range(len(commands)) if command_slot(commands[i]) is not None]
        for attempt in range(2):
            plan: dict[tuple[str, int], list[int]] = {}
            for i in routed:
                node = self._slots[command_slot(commands[i])]  # type: ignore[index]
                if node is None:
                    self._stale = True
                    raise RedisUnavailable("a slot has no master (cluster not fully covered)")
                plan.setdefault(node, []).append(i)
            results = await self._each({node: [commands[i] for i in idx] for node, idx in plan.items()}, timeout)
            redirected = []
            for node, idx in plan.items():
                for i, reply in zip(idx, results[node], strict=True):
                    if isinstance(reply, hiredis.ReplyError) and str(reply).startswith(("MOVED ", "ASK ")):
                        redirected.append(i)
                    replies[i] = reply
            if not redirected or attempt == 1:
                break
            async with self._refresh_lock:  # a slot moved (resharding or a failover): read the map, retry those
                await self._refresh()
            routed = redirected
        return replies

    async def _each(self, work: dict[tuple[str, int], list[bytes]], timeout: float | None) -> dict[Any, list[Any]]:
        async def one(node: tuple[str, int], batch: list[bytes]) -> list[Any]:
            try:
                conn = await self._node(node)
                return await conn.execute(batch, timeout=timeout)
            except RedisUnavailable:
                gone = self._nodes.pop(node, None)
                if gone is not None:
                    await gone.close()
                self._failed[node] = time.monotonic()
                self._stale = True  # a failover may be under way: read the map again before the next batch
                raise

        nodes = list(work)
        results = await asyncio.gather(*(one(node, work[node]) for node in nodes), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return dict(zip(nodes, results, strict=True))  # type: ignore[arg-type]

    async def close(self) -> None:
        self._ready = False
        nodes, self._nodes = self._nodes, {}
        for conn in nodes.values():
            await conn.close()


def _host(value: bytes | str, asked: str) -> str:
    host = value.decode() if isinstance(value, bytes) else str(value)
    return asked if host in ("", "?") else host  # a node that does not know its own address
