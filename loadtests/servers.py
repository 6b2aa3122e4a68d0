"""Redis/Valkey and PostgreSQL for a benchmark: the configured ones, else embedded ones in a temp dir.

`Servers.open` returns URLs with the database migrated; `seed_link` inserts one merchant, offer,
approved partner and link (what tests/factories.py does, kept separate so loadtests import nothing
from tests). Against configured servers a benchmark removes what it added: its rows and its keys.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import orjson

from clickmint.embedded import EmbeddedPostgres, EmbeddedValkey
from clickmint.migrate import migrate

DESTINATION = "https://shop.example.com/landing?cid={click_id}&s1={sub1}"


@dataclass
class Servers:
    redis_url: str
    database_url: str
    base: Path  # temp dir: embedded servers' data, the tracker's data dir and spool, logs
    valkey: EmbeddedValkey | None = None
    postgres: EmbeddedPostgres | None = None
    notes: list[str] = field(default_factory=list)

    @classmethod
    def open(cls) -> Servers:
        """Start what is not configured through CLICKMINT_REDIS_URL / CLICKMINT_DATABASE_URL, then migrate."""
        base = Path(tempfile.mkdtemp(prefix="clickmint-bench-"))
        os.chmod(base, 0o755)  # PostgreSQL runs unprivileged when we are root: it must reach its data
        servers = cls(os.environ.get("CLICKMINT_REDIS_URL", ""), os.environ.get("CLICKMINT_DATABASE_URL", ""), base)
        try:
            if not servers.redis_url:
                servers.valkey = EmbeddedValkey(base, port=0)
                servers.redis_url = servers.valkey.start()
            if not servers.database_url:
                servers.postgres = EmbeddedPostgres(base, port=0)
                servers.database_url = servers.postgres.start()
            asyncio.run(migrate(servers.database_url))
        except BaseException:
            servers.close()
            raise
        return servers

    @property
    def redis_where(self) -> str:
        return "embedded Valkey (AOF everysec)" if self.valkey else "CLICKMINT_REDIS_URL"

    @property
    def postgres_where(self) -> str:
        return "embedded PostgreSQL" if self.postgres else "CLICKMINT_DATABASE_URL"

    def close(self) -> None:
        for server in (self.postgres, self.valkey):
            if server is not None:
                server.stop()
        shutil.rmtree(self.base, ignore_errors=True)


@dataclass(frozen=True)
class SeededLink:
    merchant_id: int
    offer_id: int
    partner_id: int
    link_id: int
    code: str


async def seed_link(dsn: str) -> SeededLink:
    """One merchant, one CPC offer, one approved partner and its link, in one transaction."""
    tag = secrets.token_hex(4)
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            merchant_id = await conn.fetchval(
                "INSERT INTO merchants (slug, name, currency) VALUES ($1, 'Bench Shop', 'USD') RETURNING id",
                f"bench-{tag}",
            )
            offer_id = await conn.fetchval(
                """INSERT INTO offers (merchant_id, name, destination_url, allowed_hosts, attribution_window_s,
                                       currency, fee_plan, caps)
                   VALUES ($1, 'Bench offer', $2, $3, 86400, 'USD', $4, '{}') RETURNING id""",
                merchant_id,
                DESTINATION,
                ["shop.example.com"],
                orjson.dumps({}).decode(),
            )
            partner_id = await conn.fetchval(
                "INSERT INTO partners (name, email) VALUES ('Bench partner', $1) RETURNING id",
                f"bench-{tag}@partners.example",
            )
            await conn.execute(
                "INSERT INTO partner_programmes (partner_id, merchant_id, status) VALUES ($1, $2, 'approved')",
                partner_id,
                merchant_id,
            )
            code = "bench" + secrets.token_urlsafe(8)
            link_id = await conn.fetchval(
                "INSERT INTO links (code, partner_id, offer_id) VALUES ($1, $2, $3) RETURNING id",
                code,
                partner_id,
                offer_id,
            )
    finally:
        await conn.close()
    return SeededLink(merchant_id, offer_id, partner_id, link_id, code)


async def unseed_link(dsn: str, seeded: SeededLink) -> None:
    """Remove the seeded rows (configured PostgreSQL only: an embedded one is thrown away whole)."""
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute("DELETE FROM links WHERE id = $1", seeded.link_id)
            await conn.execute("DELETE FROM partner_programmes WHERE partner_id = $1", seeded.partner_id)
            await conn.execute("DELETE FROM partners WHERE id = $1", seeded.partner_id)
            await conn.execute("DELETE FROM offers WHERE id = $1", seeded.offer_id)
            await conn.execute("DELETE FROM merchants WHERE id = $1", seeded.merchant_id)
    finally:
        await conn.close()


def stream_lengths(redis_url: str, prefix: str, shards: int) -> int:
    """Entries in the event streams of `prefix`, all shards together."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        return sum(int(client.xlen(f"{prefix}:events:{{{n}}}")) for n in range(shards))
    finally:
        client.close()


def delete_keys(redis_url: str, prefix: str) -> int:
    """Unlink every key under `prefix:` (configured Redis only); returns how many."""
    import redis

    client = redis.Redis.from_url(redis_url)
    removed = 0
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                removed += int(client.unlink(*batch))
                batch = []
        if batch:
            removed += int(client.unlink(*batch))
    finally:
        client.close()
    return removed
