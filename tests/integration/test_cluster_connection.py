"""The tracker's cluster pipelines against a real 3-master Valkey Cluster on loopback."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import hiredis
import pytest
import redis
from redis.asyncio.cluster import RedisCluster

from clickmint.embedded import pick_port
from kernel.keys import stream_key
from kernel.redis import pyclient
from kernel.redis.client import Redis
from kernel.redis.cluster import ClusterConnection, command_slot, key_slot
from kernel.redis.resp import RedisUnavailable, RespConnection, pack
from kernel.redis.scripts import UNIQUE_XADD, burst_args, unique_xadd_command
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
            stream_key(prefix, n).encode(),
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


def _dead_url() -> str:
    return f"redis://127.0.0.1:{pick_port(0)}"  # nothing listens there


async def test_a_seed_that_is_down_does_not_decide_the_kind_of_client(cluster: ValkeyCluster) -> None:
    """The first node of the list is down: the next one says it is a cluster (not 'a single server')."""
    client = Redis(f"{_dead_url()},{cluster.url}")
    await client.connect()
    assert client.is_cluster
    await client.close()
    py = await pyclient.connect(f"{_dead_url()},{cluster.url}")
    assert isinstance(py, RedisCluster)
    await py.aclose()


async def test_no_node_answering_leaves_it_undecided() -> None:
    client = Redis(f"{_dead_url()},{_dead_url()}")
    with pytest.raises(RedisUnavailable, match="still undecided"):
        await client.connect()
    assert not client.connected
    with pytest.raises(redis.exceptions.ConnectionError):
        await pyclient.connect(_dead_url())


async def test_the_configured_kind_is_taken(cluster: ValkeyCluster, servers) -> None:
    plain = Redis(cluster.url, "no")
    await plain.connect()
    assert not plain.is_cluster
    replies = await plain.execute([pack(b"SET", f"cmcl:{{{n}}}".encode(), b"1") for n in range(12)])
    assert any(isinstance(r, hiredis.ReplyError) and str(r).startswith("MOVED") for r in replies)
    assert not plain.is_cluster  # configured "no": a MOVED is an answer, not a reason to switch
    await plain.close()
    wrong = Redis(servers.redis_url, "yes")
    with pytest.raises(RedisUnavailable, match="CLUSTER SLOTS refused"):
        await wrong.connect()
    py = await pyclient.connect(servers.redis_url, "no")
    assert not isinstance(py, RedisCluster)
    await py.aclose()


async def test_a_single_server_client_that_meets_moved_becomes_a_cluster_client(cluster: ValkeyCluster) -> None:
    """A client that took the node for a single server (say, it answered before its cluster was set up)
    switches at the first MOVED, sends the redirected commands again and loads its scripts on every master."""
    for node in cluster.nodes:  # no master knows the script yet
        with redis.Redis(port=node.port) as direct:
            direct.script_flush()
    client = Redis(cluster.url)
    single = RespConnection(cluster.url)
    await single.connect()
    client._conn = single
    (sha,) = await client.execute([pack(b"SCRIPT", b"LOAD", UNIQUE_XADD)])
    assert isinstance(sha, bytes)
    prefix = "cmcl" + os.urandom(3).hex()
    commands = [
        unique_xadd_command(
            f"{prefix}:uniq:{{{n}}}:1:v".encode(),
            f"{prefix}:burst:{{{n}}}:a".encode(),
            stream_key(prefix, n).encode(),
            60,
            ARGS,
            b'{"n":%d}' % n,
        )
        for n in range(12)
    ]
    replies = await client.execute(commands, timeout=2.0)
    assert client.is_cluster
    assert replies == [0] * 12, replies  # every one appended once: on the seed at once, the others after MOVED
    total = 0
    for node in cluster.nodes:
        with redis.Redis(port=node.port) as direct:
            total += sum(direct.xlen(stream_key(prefix, n)) for n in range(12) if _owns(direct, n))
    assert total == 12
    await client.close()


def _owns(direct: redis.Redis, shard: int) -> bool:
    return bool(direct.execute_command("CLUSTER", "COUNTKEYSINSLOT", key_slot(str(shard).encode())))


async def test_the_slot_map_is_read_again_periodically(cluster: ValkeyCluster) -> None:
    conn = ClusterConnection(cluster.url, refresh_s=0.05)
    await conn.connect()
    assert conn.refreshes == 1
    await conn.execute([pack(b"PING")])
    await asyncio.sleep(0.1)
    await conn.execute([pack(b"PING")])
    assert conn.refreshes == 2
    assert set(conn.masters()) == {("127.0.0.1", node.port) for node in cluster.nodes}
    await conn.close()
