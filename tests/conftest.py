"""Real servers for the whole session: embedded Valkey and PostgreSQL, or the ones named by
CLICKMINT_TEST_REDIS_URL / CLICKMINT_TEST_DATABASE_URL (then with a database and a key prefix of
our own, dropped at the end). Each test starts from empty tables and no keys of ours."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import redis
import redis.asyncio

from clickmint.embedded import EmbeddedPostgres, EmbeddedValkey
from clickmint.migrate import migrate
from kernel.settings import Settings

TEST_SECRET = "test-secret-" + "x" * 40
_TABLES_KEPT = frozenset(("schema_migrations", "config_version"))


@dataclass(frozen=True)
class Servers:
    redis_url: str
    database_url: str
    prefix: str
    data_dir: Path


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    base = Path(tempfile.mkdtemp(prefix="clickmint-test-"))
    os.chmod(base, 0o755)  # PostgreSQL runs unprivileged when the suite runs as root: it must reach its data
    redis_url = os.environ.get("CLICKMINT_TEST_REDIS_URL")
    admin_url = os.environ.get("CLICKMINT_TEST_DATABASE_URL")
    valkey = postgres = None
    if not redis_url:
        valkey = EmbeddedValkey(base, port=0)
        redis_url = valkey.start()
    if admin_url:
        dbname = "clickmint_test_" + secrets.token_hex(4)
        asyncio.run(_admin(admin_url, f'CREATE DATABASE "{dbname}"'))
        database_url = _with_database(admin_url, dbname)
    else:
        postgres = EmbeddedPostgres(base, port=0)
        database_url = postgres.start()
    asyncio.run(migrate(database_url))
    prefix = "cmt" + secrets.token_hex(3)
    try:
        yield Servers(redis_url, database_url, prefix, base)
    finally:
        client = redis.Redis.from_url(redis_url)
        for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            client.delete(key)
        client.close()
        if admin_url:
            asyncio.run(_admin(admin_url, f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)'))
        if postgres:
            postgres.stop()
        if valkey:
            valkey.stop()
        shutil.rmtree(base, ignore_errors=True)


async def _admin(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture
def settings(servers: Servers, tmp_path: Path) -> Settings:
    """Shared settings pointing at the session's servers, with a per-test data dir."""
    return Settings(
        mode="development",
        redis_url=servers.redis_url,
        database_url=servers.database_url,
        data_dir=tmp_path,
        secret_key=TEST_SECRET,
        host="127.0.0.1",
        tracker_port=0,
        portal_port=0,
        tracker_workers=1,
        shards=2,
        key_prefix=servers.prefix,
    )


@pytest.fixture
async def db(servers: Servers) -> AsyncIterator[asyncpg.Connection]:
    """A connection to an emptied database; Redis keys of the prefix are gone too."""
    conn = await asyncpg.connect(servers.database_url)
    tables = [
        r["tablename"]
        for r in await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename NOT LIKE 'events_%'"
        )
    ]
    tables = [t for t in tables if t not in _TABLES_KEPT]
    await conn.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
    client = redis.asyncio.Redis.from_url(servers.redis_url)
    keys = [key async for key in client.scan_iter(match=f"{servers.prefix}:*", count=1000)]
    if keys:
        await client.delete(*keys)
    await client.aclose()
    try:
        yield conn
    finally:
        await conn.close()


def with_shards(settings: Settings, shards: int) -> Settings:
    return replace(settings, shards=shards)
