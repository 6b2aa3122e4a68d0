"""A real Valkey Cluster on loopback for the scale-out tests: three masters started from the bundled
valkey-server in cluster mode, the 16384 slots split between them, joined with CLUSTER MEET; with
`replicas=1` a replica of each master too (CLUSTER REPLICATE), for the failover tests, which kill,
pause (SIGSTOP) and start nodes again."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import redis

from clickmint.embedded import EmbeddedValkey, port_is_free

SLOTS = 16384
PORTS = range(21000, 29000)  # a node's cluster bus listens on port + 10000: it must stay below 65536


def _free_port() -> int:
    for _ in range(200):
        port = random.choice(PORTS)
        if port_is_free(port) and port_is_free(port + 10000):
            return port
    raise RuntimeError("no free port pair in the cluster test range")


class ValkeyCluster:
    def __init__(self, base: Path, masters: int = 3, replicas: int = 0, full_coverage: bool = False) -> None:
        self.base = base
        self.masters = masters
        self.down: set[int] = set()  # indexes of nodes killed or paused
        self.nodes = [
            EmbeddedValkey(
                base / f"node{i}",
                port=_free_port(),
                extra_args=(
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                    "--cluster-require-full-coverage",
                    "yes" if full_coverage else "no",
                    # Failover tests: a replica may always take over, and syncs without a disk round.
                    "--cluster-replica-validity-factor",
                    "0",
                    "--repl-diskless-sync",
                    "yes",
                    "--repl-diskless-sync-delay",
                    "0",
                ),
            )
            for i in range(masters * (1 + replicas))
        ]

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def start(self) -> None:
        for node in self.nodes:
            (node.dir.parent).mkdir(parents=True, exist_ok=True)
            os.chmod(node.dir.parent, 0o755)
            node.start()
        share = SLOTS // self.masters
        for i, node in enumerate(self.nodes[: self.masters]):
            first, last = i * share, (SLOTS - 1 if i == self.masters - 1 else (i + 1) * share - 1)
            with redis.Redis(port=node.port) as client:
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", first, last)
        with redis.Redis(port=self.nodes[0].port) as client:
            for node in self.nodes[1:]:
                client.execute_command("CLUSTER", "MEET", "127.0.0.1", node.port)
        self.wait_ok()
        for i, node in enumerate(self.nodes[self.masters :]):
            master = self.nodes[i % self.masters]
            with redis.Redis(port=master.port) as client:
                master_id = client.execute_command("CLUSTER", "MYID")
            with redis.Redis(port=node.port) as client:
                client.execute_command("CLUSTER", "REPLICATE", master_id)
        if len(self.nodes) > self.masters:
            self.wait_replicated()

    def wait_replicated(self, timeout: float = 30.0) -> None:
        """Until every master has a replica in sync (online)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            synced = 0
            for i, node in enumerate(self.nodes):
                if i in self.down:
                    continue
                with contextlib.suppress(redis.RedisError), redis.Redis(port=node.port, socket_timeout=1) as client:
                    info = client.info("replication")
                    if info.get("role") == "master" and info.get("connected_slaves", 0) >= 1:
                        replica = info.get("slave0") or {}
                        synced += replica.get("state") == "online"
            if synced >= self.masters:
                return
            time.sleep(0.1)
        raise TimeoutError("the replicas did not sync")

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Until every running node says cluster_state:ok and every slot's master runs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = []
            running = {node.port for i, node in enumerate(self.nodes) if i not in self.down}
            for i, node in enumerate(self.nodes):
                if i in self.down:
                    continue
                try:
                    with redis.Redis(port=node.port, socket_timeout=1) as client:
                        info = client.execute_command("CLUSTER", "INFO")
                        text = info.decode() if isinstance(info, bytes) else str(info)
                        states.append("cluster_state:ok" in text and f"cluster_known_nodes:{len(self.nodes)}" in text)
                        masters = {int(m[1]) for _f, _l, m, *_ in client.execute_command("CLUSTER", "SLOTS")}
                        states.append(masters <= running)
                except redis.RedisError:
                    states.append(False)
            if all(states):
                return
            time.sleep(0.1)
        raise TimeoutError("the cluster did not reach cluster_state:ok")

    def restart(self, index: int, down_s: float = 0.0) -> None:
        """Stop one master (SIGTERM: AOF and nodes.conf written) and start it again on the same port."""
        node = self.nodes[index]
        port = node.port
        node.stop()
        time.sleep(down_s)
        again = EmbeddedValkey(node.dir.parent, port=port, extra_args=node.extra_args)
        again.start()
        assert again.port == port
        self.nodes[index] = again
        self.wait_ok()

    def kill(self, index: int) -> None:
        """SIGKILL one node: no AOF flush, no goodbye to the cluster."""
        proc = self.nodes[index].proc
        assert proc is not None
        proc.kill()
        proc.wait()
        self.down.add(index)

    def pause(self, index: int) -> None:
        """SIGSTOP one node: its sockets stay open and nothing answers."""
        proc = self.nodes[index].proc
        assert proc is not None
        proc.send_signal(signal.SIGSTOP)
        self.down.add(index)

    def resume(self, index: int) -> None:
        proc = self.nodes[index].proc
        assert proc is not None
        proc.send_signal(signal.SIGCONT)
        self.down.discard(index)

    def start_again(self, index: int) -> None:
        """Start a killed node on its port and data (nodes.conf): it rejoins, as a replica if it was failed over."""
        node = self.nodes[index]
        again = EmbeddedValkey(node.dir.parent, port=node.port, extra_args=node.extra_args)
        again.start()
        assert again.port == node.port
        self.nodes[index] = again
        self.down.discard(index)

    def master_ports(self) -> set[int]:
        """The ports of the masters serving slots, as a running node sees them."""
        for i, node in enumerate(self.nodes):
            if i in self.down:
                continue
            with contextlib.suppress(redis.RedisError), redis.Redis(port=node.port, socket_timeout=1) as client:
                return {int(m[1]) for _f, _l, m, *_ in client.execute_command("CLUSTER", "SLOTS")}
        return set()

    def stop(self) -> None:
        for i in list(self.down):
            with contextlib.suppress(Exception):
                self.resume(i)  # a paused node cannot take the SIGTERM
        for node in self.nodes:
            node.stop()


def key_slot_owner(cluster: ValkeyCluster, key: str) -> int:
    """The port of the master that owns `key`."""
    with redis.Redis(port=cluster.nodes[0].port) as client:
        slot = client.execute_command("CLUSTER", "KEYSLOT", key)
        for first, last, master, *_ in client.execute_command("CLUSTER", "SLOTS"):
            if first <= slot <= last:
                return int(master[1])
    raise LookupError(key)


@contextlib.contextmanager
def running_cluster(replicas: int = 0, full_coverage: bool = False) -> Iterator[ValkeyCluster]:
    """A started cluster in a temporary directory, stopped and removed afterwards."""
    base = Path(tempfile.mkdtemp(prefix="clickmint-cluster-"))
    os.chmod(base, 0o755)
    valkeys = ValkeyCluster(base, replicas=replicas, full_coverage=full_coverage)
    try:
        valkeys.start()
        yield valkeys
    finally:
        valkeys.stop()
        shutil.rmtree(base, ignore_errors=True)
