"""Migrations: in order, recorded, safe twice and from two processes at once, forward-only."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from clickmint.migrate import MigrationError, load, migrate
from tests.conftest import Servers, _admin, _with_database


@pytest.fixture
async def fresh_database(servers: Servers) -> str:
    import secrets

    name = "clickmint_mig_" + secrets.token_hex(4)
    await _admin(servers.database_url, f'CREATE DATABASE "{name}"')
    yield _with_database(servers.database_url, name)
    await _admin(servers.database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_two_processes_at_once_then_again(fresh_database: str) -> None:
    first, second = await asyncio.gather(migrate(fresh_database), migrate(fresh_database))
    names = [f"{m.version:04d}_{m.name}" for m in load()]
    assert sorted(first + second) == names  # each migration applied exactly once, by one of them
    assert await migrate(fresh_database) == []
    conn = await asyncpg.connect(fresh_database)
    try:
        recorded = [r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations ORDER BY 1")]
        assert recorded == list(range(1, len(names) + 1))
        # Event partitions exist ahead of time.
        ahead = await conn.fetchval(
            "SELECT count(*) FROM pg_class WHERE relname = 'events_' || to_char(now() + interval '7 days', 'YYYYMMDD')"
        )
        assert ahead == 1
    finally:
        await conn.close()


async def test_an_edited_migration_is_refused(fresh_database: str, tmp_path: Path) -> None:
    (tmp_path / "0001_first.sql").write_text("CREATE TABLE t (x int);")
    assert await migrate(fresh_database, tmp_path) == ["0001_first"]
    (tmp_path / "0001_first.sql").write_text("CREATE TABLE t (x bigint);")
    with pytest.raises(MigrationError, match="changed after it was applied"):
        await migrate(fresh_database, tmp_path)


async def test_a_failing_migration_rolls_back_alone(fresh_database: str, tmp_path: Path) -> None:
    (tmp_path / "0001_good.sql").write_text("CREATE TABLE good (x int);")
    (tmp_path / "0002_bad.sql").write_text("CREATE TABLE half (x int); SELECT no_such_function();")
    with pytest.raises(MigrationError, match="0002_bad failed"):
        await migrate(fresh_database, tmp_path)
    conn = await asyncpg.connect(fresh_database)
    try:
        assert await conn.fetchval("SELECT to_regclass('good') IS NOT NULL")
        assert await conn.fetchval("SELECT to_regclass('half') IS NULL")
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == 1
    finally:
        await conn.close()


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (["0001_a.sql", "0003_c.sql"], "migration 0002 is missing"),
        (["0001_a.sql", "2_b.sql"], "NNNN_lower_snake.sql"),
        (["0001_A.sql"], "NNNN_lower_snake.sql"),
    ],
)
def test_malformed_migration_sets_are_refused(tmp_path: Path, files: list[str], message: str) -> None:
    for name in files:
        (tmp_path / name).write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=message):
        load(tmp_path)
