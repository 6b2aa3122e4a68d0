"""A real Valkey Cluster on loopback for the scale-out tests: three masters started from the bundled
valkey-server in cluster mode, the 16384 slots split between them, joined with CLUSTER MEET."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
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
    def __init__(self, base: Path, masters: int = 3) -> None:
        self.base = base
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
                    "no",
                ),
            )
            for i in range(masters)
        ]

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def start(self) -> None:
        for node in self.nodes:
            (node.dir.parent).mkdir(parents=True, exist_ok=True)
            os.chmod(node.dir.parent, 0o755)
            node.start()
        share = SLOTS // len(self.nodes)
        for i, node in enumerate(self.nodes):
            first, last = i * share, (SLOTS - 1 if i == len(self.nodes) - 1 else (i + 1) * share - 1)
            with redis.Redis(port=node.port) as client:
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", first, last)
        with redis.Redis(port=self.nodes[0].port) as client:
            for node in self.nodes[1:]:
                client.execute_command("CLUSTER", "MEET", "127.0.0.1", node.port)
        self.wait_ok()

    def wait_ok(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = []
            for node in self.nodes:
                try:
                    with redis.Redis(port=node.port, socket_timeout=1) as client:
                        info = client.execute_command("CLUSTER", "INFO")
                        text = info.decode() if isinstance(info, bytes) else str(info)
                        states.append("cluster_state:ok" in text and f"cluster_known_nodes:{len(self.nodes)}" in text)
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

    def stop(self) -> None:
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
def running_cluster() -> Iterator[ValkeyCluster]:
    """A started cluster in a temporary directory, stopped and removed afterwards."""
    base = Path(tempfile.mkdtemp(prefix="clickmint-cluster-"))
    os.chmod(base, 0o755)
    valkeys = ValkeyCluster(base)
    try:
        valkeys.start()
        yield valkeys
    finally:
        valkeys.stop()
        shutil.rmtree(base, ignore_errors=True)
