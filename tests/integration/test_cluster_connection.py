"""The tracker's cluster pipelines against a real 3-master Valkey Cluster on loopback."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import hiredis
import pytest
import redis

from kernel.redis.client import Redis
from kernel.redis.cluster import ClusterConnection, command_slot, key_slot
from kernel.redis.resp import RedisUnavailable, RespConnection, pack
from kernel.redis.scripts import UNIQUE_XADD, burst_args, stream_key, unique_xadd_command
from tests.cluster_kit import ValkeyCluster, running_cluster

pytestmark = [pytest.mark.timeout(120), pytest.mark.cluster]
ARGS = burst_args(30, 10)


async def connect_any(url: str) -> Redis:
    """The client tracker and ingest use, connected: it asked the node whether it is a cluster."""
    client = Redis(url)
    await client.connect()
    return client


@pytest.fixture(scope="module")
def cluster() -> Iterator[ValkeyCluster]:
    with running_cluster() as valkeys:
        yield valkeys


@pytest.mark.parametrize(
    ("key", "slot"),
    [
        (b"foo", 12182),
        (b"{user1000}.following", 3443),
        (b"cm:events:{0}", key_slot(b"0")),
        (b"a{}b", key_slot(b"a{}b")),
    ],
)
def test_key_slots_match_redis(key: bytes, slot: int) -> None:
    assert key_slot(key) == slot


def test_command_slot_is_the_first_hash_tag() -> None:
    payload = b'{"type":"click","sub1":"{x}"}'
    assert command_slot(pack(b"XADD", b"cm:events:{3}", b"*", b"d", payload)) == key_slot(b"3")
    unique = unique_xadd_command(b"cm:uniq:{3}:7:v", b"cm:burst:{3}:a", b"cm:events:{3}", 60, ARGS, payload)
    assert command_slot(unique) == key_slot(b"3")
    assert command_slot(pack(b"SCRIPT", b"LOAD", b"return {1}")) is None
    assert command_slot(pack(b"PING")) is None


async def test_pipelines_are_routed_to_the_owner_of_each_slot(cluster: ValkeyCluster) -> None:
    conn = await connect_any(cluster.url)
    assert isinstance(conn.cluster, ClusterConnection)
    (loaded,) = await conn.execute([pack(b"SCRIPT", b"LOAD", UNIQUE_XADD)])
    assert isinstance(loaded, bytes)
    prefix = "cmcl" + os.urandom(3).hex()
    commands = [
        unique_xadd_command(
            f"{prefix}:uniq:{{{n}}}:1:v".encode(),
            f"{prefix}:burst:{{{n}}}:a".encode(),
            stream_key(prefix, n),
            60,
            ARGS,
            b'{"n":%d}' % n,
        )
        for n in range(16)
    ]
    replies = await conn.execute(commands, timeout=2.0)
    assert replies == [0] * 16, replies  # appended, no burst
    again = await conn.execute(commands[:2], timeout=2.0)  # the same visitor again: appended, not unique
    assert again == [0, 0], again
    owners = set()
    for n in range(16):
        node = next(
            node
            for node in cluster.nodes
            if redis.Redis(port=node.port).execute_command("CLUSTER", "COUNTKEYSINSLOT", key_slot(str(n).encode())) > 0
        )
        owners.add(node.port)
        entries = redis.Redis(port=node.port).xrange(stream_key(prefix, n))
        assert [e[1][b"u"] for e in entries] == ([b"1", b"0"] if n < 2 else [b"1"])
        assert {e[1][b"b"] for e in entries} == {b"0"}
    assert len(owners) == 3  # the shards really are spread over the three masters
    await conn.close()


async def test_a_master_restart_fails_the_batch_then_heals(cluster: ValkeyCluster) -> None:
    conn = await connect_any(cluster.url)
    prefix = "cmcl" + os.urandom(3).hex()
    commands = [pack(b"XADD", stream_key(prefix, n), b"*", b"d", b"x") for n in range(12)]
    await conn.execute(commands, timeout=2.0)
    victim = cluster.nodes[1]
    port = victim.port
    await asyncio.to_thread(victim.stop)
    with pytest.raises(RedisUnavailable):
        await conn.execute(commands, timeout=2.0)
    await asyncio.to_thread(cluster.restart, 1)
    assert cluster.nodes[1].port == port
    replies = await conn.execute(commands, timeout=2.0)
    assert not any(isinstance(r, hiredis.ReplyError) for r in replies)
    await conn.close()


async def test_a_single_server_gets_the_plain_connection(servers) -> None:
    conn = await connect_any(servers.redis_url)
    assert not conn.is_cluster and isinstance(conn._conn, RespConnection)
    await conn.close()
