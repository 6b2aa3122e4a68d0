"""Embedded servers: a taken port is replaced, a data dir has one owner, a restart finds the data."""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from clickmint.embedded import DataDirLock, EmbeddedValkey, pick_port
from clickmint.services import ServicesError, services
from kernel.settings import Settings
from tests.conftest import TEST_SECRET


@pytest.fixture
def base() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="clickmint-emb-"))
    os.chmod(path, 0o755)
    yield path
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def test_a_taken_port_is_replaced_by_a_free_one() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        chosen = pick_port(taken)
        assert chosen != taken
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", chosen))


def test_valkey_keeps_its_data_across_a_restart(base: Path) -> None:
    valkey = EmbeddedValkey(base, port=0)
    client = redis.Redis.from_url(valkey.start())
    client.xadd("s", {"d": "1"})
    client.close()
    valkey.stop()
    again = EmbeddedValkey(base, port=0)
    client = redis.Redis.from_url(again.start())
    try:
        assert client.xlen("s") == 1  # the AOF brought it back
        assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
        assert client.config_get("appendonly")["appendonly"] == "yes"
    finally:
        client.close()
        again.stop()


def test_one_owner_per_data_dir(base: Path) -> None:
    first = DataDirLock(base)
    assert first.acquire()
    assert not DataDirLock(base).acquire()
    first.release()
    assert DataDirLock(base).acquire()


def test_a_second_process_uses_the_running_servers_or_is_told_why(base: Path) -> None:
    settings = Settings(
        mode="development",
        redis_url=None,
        database_url=None,
        data_dir=base,
        secret_key=TEST_SECRET,
        host="127.0.0.1",
        tracker_port=0,
        portal_port=0,
        tracker_workers=1,
        shards=1,
        key_prefix="cm",
    )
    holder = DataDirLock(base)
    assert holder.acquire()
    try:
        with pytest.raises(ServicesError, match="holds"), services(settings):
            pass
    finally:
        holder.release()
