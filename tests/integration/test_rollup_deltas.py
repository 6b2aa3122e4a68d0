"""Rollups as appended deltas folded into totals (issue 22, migration 0021): `rollups` (the view of both) equals a
recomputation from the events and conversions stored, before a fold, after it, and with deltas on top of totals."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from billing import derive
from kernel.settings import Settings
from tests.factories import Programme, programme
from tests.money_kit import Feeder, feeder

KEY = "partner_id, day, offer_id, country, sub1"
COUNTS = ("views", "clicks", "unique_clicks", "bots", "actions", "sales", "sales_minor", "billable_views")
# What ingest is meant to count, recomputed from the records: traffic from `events`, conversions (under the
# country and sub id of their click) from `conversions`.
RECOMPUTED = f"""
    SELECT {KEY}, sum(views)::bigint AS views, sum(clicks)::bigint AS clicks,
           sum(unique_clicks)::bigint AS unique_clicks, sum(bots)::bigint AS bots, sum(actions)::bigint AS actions,
           sum(sales)::bigint AS sales, sum(sales_minor)::bigint AS sales_minor,
           sum(billable_views)::bigint AS billable_views
    FROM (SELECT partner_id, (ts AT TIME ZONE 'UTC')::date AS day, offer_id, country,
                 left(coalesce(sub1, ''), 100) AS sub1,
                 (type = 'view' AND bot_reason IS NULL)::int AS views,
                 (type = 'click' AND bot_reason IS NULL)::int AS clicks,
                 (type = 'click' AND bot_reason IS NULL AND is_unique AND refusal IS NULL)::int AS unique_clicks,
                 (bot_reason IS NOT NULL)::int AS bots, 0 AS actions, 0 AS sales, 0 AS sales_minor,
                 (type = 'view' AND bot_reason IS NULL AND refusal IS NULL)::int AS billable_views
          FROM events WHERE type IN ('view', 'click')
          UNION ALL
          SELECT partner_id, (ts AT TIME ZONE 'UTC')::date, offer_id, country, sub1, 0, 0, 0, 0, 1,
                 (kind = 'purchase' AND status IN ('pending', 'held'))::int,
                 CASE WHEN kind = 'purchase' AND status IN ('pending', 'held') THEN amount_minor ELSE 0 END, 0
          FROM conversions) x
    GROUP BY {KEY} ORDER BY {KEY}"""


async def _rows(db: asyncpg.Connection, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in await db.fetch(sql)]


async def _assert_exact(db: asyncpg.Connection) -> list[tuple[Any, ...]]:
    shown = await _rows(db, f"SELECT {KEY}, {', '.join(COUNTS)} FROM rollups ORDER BY {KEY}")
    assert shown == await _rows(db, RECOMPUTED)
    return shown


def _traffic(feed: Feeder, prog: Programme, at: dt.datetime, n: int, tag: str) -> list[dict[str, Any]]:
    """Views and clicks (some repeated, some bots, some refused) over three countries and sub ids, a purchase
    on a click."""
    out = []
    for i in range(n):
        fields: dict[str, Any] = {"country": ("DE", "US", "FR")[i % 3], "sub1": f"s{i % 4}"}
        if i % 7 == 0:
            fields["bot"] = "search_crawler"
        if i % 11 == 0:
            fields["refusal"] = "cap"
        if i % 2:
            out.append(feed.event(prog, "view", at + dt.timedelta(seconds=i), **fields))
        else:
            out.append(feed.event(prog, "click", at + dt.timedelta(seconds=i), unique=i % 4 == 0, **fields))
    click = feed.event(prog, "click", at, click_id=f"c{tag}".ljust(38, "0"), country="US", sub1="paid")
    sale = feed.event(
        prog, "purchase", at + dt.timedelta(minutes=5), click_id=click["click_id"], order_id=f"o{tag}",
        amount=12_345, currency="USD", auth="signature",
    )  # fmt: skip
    return [*out, click, sale]


async def test_rollups_equal_the_events_before_and_after_folds(
    settings: Settings, db: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(derive, "FOLD_EVERY_S", 3600.0)  # this test folds by hand
    prog = await programme(db, fee_plan={"cps_percent": "10"})
    today = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    async with feeder(settings, db) as feed:
        await feed.send(*_traffic(feed, prog, today - dt.timedelta(days=1), 40, "a"))
        await feed.send(*_traffic(feed, prog, today, 30, "b"))
        assert await db.fetchval("SELECT count(*) FROM rollup_totals") == 0  # nothing folded yet
        before = await _assert_exact(db)
        assert sum(row[-3] for row in before) == 2  # the two sales counted
        deltas = await db.fetchval("SELECT count(*) FROM rollup_deltas")
        assert deltas >= len(before)  # a row per key and batch
        assert await db.fetchval("SELECT cm_fold_rollups()") == deltas
        assert await db.fetchval("SELECT count(*) FROM rollup_deltas") == 0
        assert await _assert_exact(db) == before  # a fold changes no figure
        await feed.send(*_traffic(feed, prog, today, 25, "c"))  # deltas on top of the totals
        assert await db.fetchval("SELECT count(*) FROM rollup_deltas") > 0
        after = await _assert_exact(db)
        assert after != before
        await db.fetchval("SELECT cm_fold_rollups()")
        assert await _assert_exact(db) == after
    totals = await _rows(db, f"SELECT {KEY} FROM rollup_totals ORDER BY {KEY}")
    assert totals == [row[:5] for row in after]  # one row per key once folded


async def test_ingest_folds_when_due(
    settings: Settings, db: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(derive, "FOLD_EVERY_S", 0.05)  # ingest folds every 50 ms, in a transaction of its own
    prog = await programme(db)
    today = dt.datetime.now(dt.UTC)
    async with feeder(settings, db) as feed:
        await feed.send(*_traffic(feed, prog, today, 20, "d"))
        await feed.send(*_traffic(feed, prog, today, 20, "e"))
        async with asyncio.timeout(30):
            while await db.fetchval("SELECT count(*) FROM rollup_deltas"):
                await asyncio.sleep(0.02)
    assert await db.fetchval("SELECT count(*) FROM rollup_totals") > 0
    await _assert_exact(db)


async def test_one_fold_at_a_time(servers_db: tuple[asyncpg.Connection, asyncpg.Connection]) -> None:
    first, second = servers_db
    insert = f"INSERT INTO rollups ({KEY}, clicks) VALUES (1, current_date, 1, 'DE', '', $1)"
    await second.execute(insert, 5)
    async with first.transaction():
        await first.execute(insert, 2)
        assert await first.fetchval("SELECT cm_fold_rollups()") == 2  # its own delta and the committed one
        assert await second.fetchval("SELECT cm_fold_rollups()") == 0  # the first fold holds the lock: no wait
        await second.execute("SET lock_timeout = '10ms'")
        with pytest.raises(asyncpg.LockNotAvailableError):  # readers and writers wait for the fold to commit
            await second.fetchval("SELECT clicks FROM rollups")
        await second.execute("RESET lock_timeout")
    assert await second.fetchval("SELECT clicks FROM rollups") == 7
    assert await second.fetchval("SELECT count(*) FROM rollup_deltas") == 0
    assert await second.fetchval("SELECT cm_fold_rollups()") == 0  # nothing left to move
    await second.execute(insert, 1)  # inserting into the view appends a delta, counters left out count 0
    row = await second.fetchrow("SELECT clicks, views, sales_minor FROM rollups")
    assert tuple(row) == (8, 0, 0)
    assert await second.fetchval("SELECT cm_fold_rollups()") == 1
    assert tuple(await second.fetchrow("SELECT clicks, views, sales_minor FROM rollups")) == (8, 0, 0)


@pytest.fixture
async def servers_db(db: asyncpg.Connection, settings: Settings) -> AsyncIterator[tuple[Any, Any]]:
    other = await asyncpg.connect(settings.database_url or "")
    try:
        yield db, other
    finally:
        await other.close()
