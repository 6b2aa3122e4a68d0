"""`clickmint demo` turns on a loyalty programme for the demo shop, once, and says how to try it."""

from __future__ import annotations

import asyncpg

from clickmint.demo import seed


async def test_demo_enables_loyalty_once(db: asyncpg.Connection, servers) -> None:
    first = await seed(servers.database_url, "http://t.example", "http://p.example")
    second = await seed(servers.database_url, "http://t.example", "http://p.example")
    assert "Loyalty: on for Demo Shop" in first and "clickmint loyalty balance --merchant demo-shop" in first
    assert "http://p.example/loyalty/m/" in second
    assert await db.fetchval("SELECT count(*) FROM loyalty_programmes WHERE enabled") == 1
    assert await db.fetchval("SELECT balance FROM loyalty_members WHERE customer_ref = 'demo-customer'") == 500
