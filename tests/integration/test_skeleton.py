"""The walking skeleton: a click travels from the tracker through a Redis Stream into PostgreSQL."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs, urlsplit

import asyncpg
import redis.asyncio as aioredis

from kernel.keys import stream_key
from kernel.settings import Settings
from tests.factories import programme
from tests.helpers import drain, tracker_client


async def test_click_reaches_postgres_through_the_stream(settings: Settings, db: asyncpg.Connection) -> None:
    prog = await programme(db)
    async with tracker_client(settings) as (app, client):
        response = await client.get(
            f"/c/{prog.code}?sub1=summer%20deal&source=news", headers={"user-agent": "Mozilla/5.0"}
        )
    assert response.status_code == 302
    location = urlsplit(response.headers["location"])
    assert (location.scheme, location.hostname, location.path) == ("https", "shop.example.com", "/landing")
    query = parse_qs(location.query)
    assert query["s1"] == ["summer deal"]
    click_id = query["cid"][0]
    assert response.headers["set-cookie"].startswith(f"cm_{prog.offer_id}={click_id};")

    redis = aioredis.Redis.from_url(settings.redis_url)
    shard = app.cache.snapshot.links[prog.code].shard
    assert await redis.xlen(stream_key(settings.key_prefix, shard)) == 1

    await drain(settings, 1, db)
    row = await db.fetchrow("SELECT * FROM events")
    assert row["type"] == "click"
    assert row["link_id"] == prog.link_id and row["partner_id"] == prog.partner_id
    assert row["click_id"] == click_id
    assert row["sub1"] == "summer deal" and row["source"] == "news"
    assert row["ip_prefix"] == "203.0.113.0"
    assert row["is_unique"] is True
    # Acknowledged only after commit: nothing is left pending in the group.
    pending = await redis.xpending(stream_key(settings.key_prefix, shard), "billing")
    assert pending["pending"] == 0
    await redis.aclose()


async def test_replayed_entries_are_stored_once(settings: Settings, db: asyncpg.Connection) -> None:
    prog = await programme(db)
    async with tracker_client(settings) as (app, client):
        for _ in range(3):
            assert (await client.get(f"/c/{prog.code}")).status_code == 302
    redis = aioredis.Redis.from_url(settings.redis_url)
    key = stream_key(settings.key_prefix, app.cache.snapshot.links[prog.code].shard)
    entries = await redis.xrange(key)
    for _, fields in entries:  # the same three events again, as a replayed spool or a second tracker would
        await redis.xadd(key, fields)
    await drain(settings, 3, db)
    await asyncio.sleep(0.3)
    assert await db.fetchval("SELECT count(*) FROM events") == 3
    assert await db.fetchval("SELECT count(DISTINCT id) FROM events") == 3
    await redis.aclose()


async def test_unknown_link_is_a_404_page_and_records_nothing(settings: Settings, db: asyncpg.Connection) -> None:
    async with tracker_client(settings) as (_app, client):
        response = await client.get("/c/no-such-link")
    assert response.status_code == 404
    assert "text/html" in response.headers["content-type"]
    redis = aioredis.Redis.from_url(settings.redis_url)
    keys = [k async for k in redis.scan_iter(match=f"{settings.key_prefix}:events:*")]
    assert keys == []
    await redis.aclose()


async def test_a_deep_link_may_carry_macros(settings: Settings, db: asyncpg.Connection) -> None:
    prog = await programme(db)
    async with tracker_client(settings) as (_app, client):
        url = "https://shop.example.com/p/42?cid={click_id}&s={sub1}"
        response = await client.get(f"/c/{prog.code}", params={"url": url, "sub1": "a b"})
    location = urlsplit(response.headers["location"])
    assert (location.hostname, location.path) == ("shop.example.com", "/p/42")
    query = parse_qs(location.query)
    assert query["s"] == ["a b"] and len(query["cid"][0]) == 38


async def test_a_new_link_is_served_within_a_second(settings: Settings, db: asyncpg.Connection) -> None:
    prog = await programme(db)
    async with tracker_client(settings) as (_app, client):
        assert (await client.get("/c/brand-new-link")).status_code == 404
        await db.execute(
            "INSERT INTO links (code, partner_id, offer_id) VALUES ('brand-new-link', $1, $2)",
            prog.partner_id,
            prog.offer_id,
        )
        async with asyncio.timeout(1.0):  # NOTIFY cm_config, else the one-second version poll
            while (await client.get("/c/brand-new-link")).status_code != 302:
                await asyncio.sleep(0.02)
        await db.execute("UPDATE links SET status = 'paused' WHERE code = 'brand-new-link'")
        async with asyncio.timeout(1.0):
            while "set-cookie" in (await client.get("/c/brand-new-link")).headers:
                await asyncio.sleep(0.02)


async def test_a_banner_is_served_with_its_etag_and_revalidated(settings: Settings, db: asyncpg.Connection) -> None:
    import hashlib

    prog = await programme(db)
    png = b"\x89PNG\r\n\x1a\n" + b"0" * 64
    creative = await db.fetchval(
        """INSERT INTO creatives (offer_id, name, content_type, width, height, body, sha256)
           VALUES ($1, 'banner', 'image/png', 300, 250, $2, $3) RETURNING id""",
        prog.offer_id,
        png,
        hashlib.sha256(png).hexdigest(),
    )
    await db.execute("UPDATE links SET creative_id = $1 WHERE id = $2", creative, prog.link_id)
    async with tracker_client(settings) as (app, client):
        first = await client.get(f"/b/{prog.code}")
        again = await client.get(f"/b/{prog.code}", headers={"if-none-match": first.headers["etag"]})
    assert first.status_code == 200 and first.content == png and first.headers["content-type"] == "image/png"
    assert again.status_code == 304 and again.content == b""
    assert app.recorder.stats.events_redis == 2  # both are views
