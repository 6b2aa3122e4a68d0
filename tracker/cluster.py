"""Redis Cluster for the tracker's raw RESP pipelines, with no change to the callers.

`connect_any(url)` asks the server whether it is a cluster (CLUSTER SLOTS). If not, the plain
RespConnection is used. If it is, a ClusterConnection routes each packed command to the master that
owns its slot: the slot comes from the command's first hash tag ({N} of cm:events:{N}, {o<offer>} of the
caps and nonce keys; every command Clickmint sends names its hash-tagged key before any payload), one
pipeline per node, all nodes at once, the replies put back in order. A command without a hash tag
(SCRIPT LOAD, PING) goes to every master. MOVED and ASK answers refresh the slot map and are retried
once; a node that cannot be reached makes the batch fail as a whole (RedisUnavailable), so the tracker
spools it, and the event ids make the replay idempotent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import hiredis

from tracker.streams import RedisUnavailable, RespConnection, pack

SLOTS = 16384


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


def _node_url(url: str, host: str, port: int) -> str:
    parts = urlsplit(url)
    auth = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return urlunsplit((parts.scheme, f"{auth}{host}:{port}", "", parts.query, ""))  # the query: TLS settings


class ClusterConnection:
    """Pipelines over every master of a Redis Cluster; the same interface as RespConnection."""

    def __init__(self, url: str, connect_timeout: float = 2.0) -> None:
        self._url = url
        self._timeout = connect_timeout
        self._slots: list[tuple[str, int] | None] = [None] * SLOTS
        self._nodes: dict[tuple[str, int], RespConnection] = {}
        self._setup: list[bytes] = []  # replayed on every node connection (SCRIPT LOAD)
        self._ready = False

    @property
    def connected(self) -> bool:
        return self._ready

    async def connect(self) -> None:
        await self._refresh()
        self._ready = True

    async def _refresh(self) -> None:
        """Read the slot map from any node that answers (the seed first)."""
        candidates = [urlsplit(self._url)]
        seeds = [(p.hostname or "127.0.0.1", p.port or 6379) for p in candidates] + list(self._nodes)
        last: Exception | None = None
        for host, port in seeds:
            conn = RespConnection(_node_url(self._url, host, port), self._timeout)
            try:
                await conn.connect()
                (reply,) = await conn.execute([pack("CLUSTER", "SLOTS")], timeout=self._timeout)
            except RedisUnavailable as exc:
                last = exc
                continue
            finally:
                await conn.close()
            if isinstance(reply, hiredis.ReplyError):
                raise RedisUnavailable(f"CLUSTER SLOTS refused: {reply}")
            slots: list[tuple[str, int] | None] = [None] * SLOTS
            for first, last_slot, master, *_ in reply:
                node = ((master[0].decode() or host), int(master[1]))
                for slot in range(first, last_slot + 1):
                    slots[slot] = node
            self._slots = slots
            return
        raise RedisUnavailable(f"no cluster node answers: {last}")

    async def _node(self, node: tuple[str, int]) -> RespConnection:
        conn = self._nodes.get(node)
        if conn is not None and conn.connected:
            return conn
        conn = RespConnection(_node_url(self._url, *node), self._timeout)
        await conn.connect()
        if self._setup:
            for reply in await conn.execute(self._setup, timeout=self._timeout):
                if isinstance(reply, hiredis.ReplyError):
                    await conn.close()
                    raise RedisUnavailable(f"node {node} refused the set-up: {reply}")
        self._nodes[node] = conn
        return conn

    def _masters(self) -> list[tuple[str, int]]:
        return sorted({node for node in self._slots if node is not None})

    async def execute(self, commands: Sequence[bytes], timeout: float | None = None) -> list[Any]:
        """Write each command to the master owning its slot (commands without a tag: to every master)."""
        if not self._ready:
            raise RedisUnavailable("not connected")
        replies: list[Any] = [None] * len(commands)
        broadcast = [i for i, command in enumerate(commands) if command_slot(command) is None]
        if broadcast:
            if any(commands[i].startswith(_BROADCAST[0]) for i in broadcast):
                self._setup = [commands[i] for i in broadcast]  # new node connections load the scripts too
            results = await self._each({node: [commands[i] for i in broadcast] for node in self._masters()}, timeout)
            first = next(iter(results.values()), [])
            for i, reply in zip(broadcast, first, strict=False):
                replies[i] = reply
        routed = [i for i in range(len(commands)) if command_slot(commands[i]) is not None]
        for attempt in range(2):
            plan: dict[tuple[str, int], list[int]] = {}
            for i in routed:
                node = self._slots[command_slot(commands[i])]  # type: ignore[index]
                if node is None:
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
            await self._refresh()  # a slot moved (resharding or a failover): read the map again, retry those
            routed = redirected
        return replies

    async def _each(self, work: dict[tuple[str, int], list[bytes]], timeout: float | None) -> dict[Any, list[Any]]:
        async def one(node: tuple[str, int], batch: list[bytes]) -> list[Any]:
            try:
                conn = await self._node(node)
                return await conn.execute(batch, timeout=timeout)
            except RedisUnavailable:
                self._nodes.pop(node, None)
                raise

        nodes = list(work)
        results = await asyncio.gather(*(one(node, work[node]) for node in nodes), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                if isinstance(result, RedisUnavailable):
                    raise result
                raise result
        return dict(zip(nodes, results, strict=True))  # type: ignore[arg-type]

    async def close(self) -> None:
        self._ready = False
        nodes, self._nodes = self._nodes, {}
        for conn in nodes.values():
            await conn.close()


async def connect_any(url: str, connect_timeout: float = 2.0) -> RespConnection | ClusterConnection:
    """A connected RespConnection for a single server, or a ClusterConnection for a cluster."""
    conn = RespConnection(url, connect_timeout)
    await conn.connect()
    try:
        (reply,) = await conn.execute([pack("CLUSTER", "SLOTS")], timeout=connect_timeout)
    except RedisUnavailable:
        await conn.close()
        raise
    if isinstance(reply, hiredis.ReplyError):  # "cluster support disabled": a single server
        return conn
    await conn.close()
    cluster = ClusterConnection(url, connect_timeout)
    await cluster.connect()
    return cluster
