"""Caps hold at the exact boundary under concurrency, across clicks and conversions."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import httpx
import orjson
import pytest
import redis.asyncio

from kernel.settings import Settings
from tests.contract import check_entry
from tests.factories import Programme, programme
from tests.helpers import PER_ADDRESS, drain, postback, tracker_client, visitor

FALLBACK = "https://fallback.example.org/"


async def test_click_cap_admits_exactly_the_limit_under_concurrency(settings: Settings, db: asyncpg.Connection) -> None:
    prog = await programme(db, caps={"clicks": {"daily": 25}}, fallback_url=FALLBACK)
    async with tracker_client(settings, PER_ADDRESS) as (_app, client):

        async def click(i: int) -> httpx.Response:
            return await client.get(f"/c/{prog.code}", headers=visitor(i))

        responses = await asyncio.gather(*(click(i) for i in range(60)))
    locations = [r.headers["location"] for r in responses]
    assert all(r.status_code == 302 for r in responses)
    assert sum(loc.startswith("https://shop.example.com/") for loc in locations) == 25
    assert sum(loc == FALLBACK for loc in locations) == 35
    over = [r for r in responses if r.headers["location"] == FALLBACK]
    assert all("set-cookie" not in r.headers for r in over)  # no click id handed out past the cap


async def test_two_trackers_share_one_cap_exactly(settings: Settings, db: asyncpg.Connection) -> None:
    """Two tracker processes' worth of recorders (each its own connection and batches) on one cap, offer-wide
    and per partner: together they admit exactly the limit."""
    prog = await programme(
        db, caps={"clicks": {"daily": 40}, "per_partner": {"clicks": {"lifetime": 30}}}, fallback_url=FALLBACK
    )
    async with (
        tracker_client(settings, PER_ADDRESS) as (_a, first),
        tracker_client(settings, PER_ADDRESS) as (_b, second),
    ):

        async def click(i: int) -> str:
            client = first if i % 2 else second
            return await _location(client, prog.code, i)

        locations = await asyncio.gather(*(click(i) for i in range(90)))
    assert sum(loc != FALLBACK for loc in locations) == 30  # the tighter of the two caps
    assert sum(loc == FALLBACK for loc in locations) == 60


async def _location(client: httpx.AsyncClient, code: str, n: int) -> str:
    """Where one click of a new visitor on the link goes: the offer, or the fallback when over the cap."""
    response = await client.get(f"/c/{code}", headers=visitor(n))
    return response.headers["location"]


async def test_a_daily_click_cap_starts_again_at_midnight_utc(
    settings: Settings, db: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daily counter is keyed by the UTC day of the click, also when its cap check is reused all day."""
    prog = await programme(db, caps={"clicks": {"daily": 2}}, fallback_url=FALLBACK)
    midnight = (int(time.time()) // 86400 + 1) * 86400.0  # the next UTC midnight
    clock = [midnight - 2.0]
    monkeypatch.setattr(time, "time", lambda: clock[0])
    async with tracker_client(settings) as (_app, client):
        before = [await _location(client, prog.code, i) for i in range(3)]
        clock[0] = midnight + 1.0
        after = [await _location(client, prog.code, i) for i in range(3, 6)]
    assert [loc == FALLBACK for loc in before] == [False, False, True]  # the third of the day is over the cap
    assert [loc == FALLBACK for loc in after] == [False, False, True]  # a new day: two more, then over again


async def test_a_changed_click_cap_applies_to_the_next_clicks(settings: Settings, db: asyncpg.Connection) -> None:
    """The packed cap check is reused all day, but not past a configuration change."""
    prog = await programme(db, caps={"clicks": {"daily": 2}}, fallback_url=FALLBACK)
    async with tracker_client(settings) as (app, client):
        assert [await _location(client, prog.code, i) == FALLBACK for i in range(3)] == [False, False, True]
        version = app.cache.snapshot.version
        await db.execute("UPDATE offers SET caps = $1 WHERE id = $2", '{"clicks": {"daily": 4}}', prog.offer_id)
        async with asyncio.timeout(2.0):  # NOTIFY cm_config, else the one-second version poll
            while app.cache.snapshot.version == version:
                await asyncio.sleep(0.02)
        # The daily counter stands at 2 (the refused click was not counted): two more, then over again.
        assert [await _location(client, prog.code, i) == FALLBACK for i in range(3, 6)] == [False, False, True]


async def clicks_over_a_cap(settings: Settings, db: asyncpg.Connection) -> tuple[Programme, list[str]]:
    """Five visitors' clicks on a link capped at three a day, one after the other: where each went."""
    prog = await programme(
        db, caps={"clicks": {"daily": 3}, "per_partner": {"clicks": {"lifetime": 100}}}, fallback_url=FALLBACK
    )
    async with tracker_client(settings, PER_ADDRESS) as (_app, client):
        return prog, [await _location(client, prog.code, i) for i in range(5)]


async def stored_over_cap(settings: Settings, db: asyncpg.Connection, prog: Programme) -> list[tuple[bool, bool]]:
    """Ingest the clicks; per stored click (sorted): (over cap, has a click id), checked against its payload."""
    await drain(settings, 5, db)
    rows = await db.fetch("SELECT refusal, click_id, payload FROM events WHERE link_id = $1 ", prog.link_id)
    stored = []
    for row in rows:
        payload = orjson.loads(row["payload"])
        over = row["refusal"] == "over_cap"
        assert payload.get("over_cap", False) is over and payload.get("refusal") == row["refusal"]
        assert ("click_id" in payload) is (row["click_id"] is not None)
        stored.append((over, row["click_id"] is not None))
    return sorted(stored)


async def test_a_capped_click_carries_its_lease_verdict_and_the_counters_hold_what_was_admitted(
    settings: Settings, db: asyncpg.Connection
) -> None:
    """The tracker decides a click's caps from its lease and appends the verdict as "c"; the click's own script
    touches no cap. The counters hold the clicks admitted (what the portal shows), never units on lease, and a
    clean stop gives every unused unit back. Ingest stores an over-cap click refused over_cap, without its id."""
    client = redis.asyncio.Redis.from_url(settings.redis_url)
    try:
        prog, locations = await clicks_over_a_cap(settings, db)
        entries = [
            fields
            for shard in range(settings.shards)
            for _, fields in await client.xrange(f"{settings.key_prefix}:events:{{{shard}}}")
        ]
        counters = await client.keys(f"{settings.key_prefix}:cap:*")
        values = {key.decode().rsplit(":", 1)[1]: int(await client.get(key)) for key in counters}
        ttls = {key.decode().rsplit(":", 1)[1]: await client.ttl(key) for key in counters}
        leases = await client.keys(f"{settings.key_prefix}:lease:*")
    finally:
        await client.aclose()
    assert [loc == FALLBACK for loc in locations] == [False, False, False, True, True]
    assert sorted(fields[b"c"] for fields in entries) == [b"0", b"0", b"1", b"1", b"1"]
    for fields in entries:
        check_entry(fields)
    assert sorted(values.values()) == [3, 3], values  # admitted: three each, the refused two not counted
    assert leases == [], "a clean stop gives every unused unit back"
    daily = [ttl for name, ttl in ttls.items() if name.startswith("d")]
    assert len(ttls) == 2 and ttls["life"] == -1, ttls  # the partner's lifetime counter never expires
    assert len(daily) == 1 and 0 < daily[0] <= 2 * 86400, ttls  # the offer's daily one does
    assert await stored_over_cap(settings, db, prog) == [(False, True)] * 3 + [(True, False)] * 2  # sorted


async def test_caps_hold_when_redis_forgets_the_scripts(settings: Settings, db: asyncpg.Connection) -> None:
    """SCRIPT FLUSH (or a failover to a node that never loaded them) leaves the connection up: the tracker
    loads its scripts again and resends those calls, so clicks are still checked and nothing is spooled."""
    prog = await programme(db, caps={"clicks": {"daily": 2}}, fallback_url=FALLBACK)
    client = redis.asyncio.Redis.from_url(settings.redis_url)
    try:
        async with tracker_client(settings) as (app, http):
            first = await _location(http, prog.code, 0)
            await client.script_flush()
            rest = [await _location(http, prog.code, i) for i in (1, 2)]
            spooled = app.recorder.stats.events_spooled
            metrics = (await http.get("/metrics")).text
    finally:
        await client.aclose()
    assert [loc == FALLBACK for loc in (first, *rest)] == [False, False, True]
    assert spooled == 0
    # An operator sees it happened: once per call that met the forgetful Redis (a lease call and a batch may both).
    reloaded = [line for line in metrics.splitlines() if line.startswith("clickmint_scripts_reloaded_total ")]
    assert len(reloaded) == 1 and float(reloaded[0].split()[1]) >= 1, reloaded


async def test_per_partner_conversion_cap(settings: Settings, db: asyncpg.Connection) -> None:
    prog = await programme(db, caps={"per_partner": {"conversions": {"lifetime": 3}}})
    secret = await db.fetchval("SELECT postback_secret FROM offers WHERE id = $1", prog.offer_id)
    async with tracker_client(settings) as (_app, client):
        click = await client.get(f"/c/{prog.code}", headers={"user-agent": "Mozilla/5.0"})
        click_id = click.headers["set-cookie"].split("=", 1)[1].split(";")[0]

        async def convert(i: int) -> str:
            payload = {"offer_id": prog.offer_id, "click_id": click_id, "action": "signup", "order_id": f"o{i}"}
            response = await postback(client, secret, payload)
            assert response.status_code == 200, response.text
            return str(response.json()["status"])

        statuses = await asyncio.gather(*(convert(i) for i in range(10)))
    assert statuses.count("accepted") == 3
    assert statuses.count("over_cap") == 7


async def test_payout_cap_counts_the_commission(settings: Settings, db: asyncpg.Connection) -> None:
    # 10% of 40.00 = 4.00 per sale; a daily payout cap of 10.00 admits two sales, not three.
    prog = await programme(db, caps={"payout": {"daily": 1000}}, fee_plan={"cps_percent": "10"})
    secret = await db.fetchval("SELECT postback_secret FROM offers WHERE id = $1", prog.offer_id)
    async with tracker_client(settings) as (_app, client):
        click = await client.get(f"/c/{prog.code}", headers={"user-agent": "Mozilla/5.0"})
        click_id = click.headers["set-cookie"].split("=", 1)[1].split(";")[0]
        statuses = []
        for i in range(3):
            payload = {"offer_id": prog.offer_id, "click_id": click_id, "order_id": f"s{i}", "amount": "40.00"}
            statuses.append((await postback(client, secret, payload)).json()["status"])
    assert statuses == ["accepted", "accepted", "over_cap"]


async def test_a_block_given_back_when_idle_is_taken_anew_and_every_click_counted(
    settings: Settings, db: asyncpg.Connection
) -> None:
    """A short lease (400 ms): an idle block is given back and forgotten within 50 ms; the link's next clicks
    take a new one, and every admitted click is in the counter, while the tracker runs and after it stops."""
    prog = await programme(db, caps={"clicks": {"daily": 100}}, fallback_url=FALLBACK)
    client = redis.asyncio.Redis.from_url(settings.redis_url)
    key = f"{settings.key_prefix}:cap:{{o{prog.offer_id}}}:clicks:d{time.strftime('%Y%m%d', time.gmtime())}"
    try:
        async with tracker_client(settings, {**PER_ADDRESS, "CLICKMINT_CAP_LEASE_MS": "400"}) as (app, http):
            for round_ in range(3):
                assert [await _location(http, prog.code, 10 * round_ + i) != FALLBACK for i in range(3)] == [True] * 3
                await asyncio.sleep(0.4)  # idle: given back, forgotten
            running = int(await client.get(key))
            granted, calls = app.hot.leases.granted, app.hot.leases.calls
        stopped = int(await client.get(key))
    finally:
        await client.aclose()
    assert running == stopped == 9
    assert granted >= 9 and calls >= 6  # a take and an end per round at least
