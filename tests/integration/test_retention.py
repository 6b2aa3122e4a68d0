"""Retention: old raw event days of closed months go, open or unfinished ones stay; money and rollups stay."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
import redis.asyncio as aioredis

from billing.retention import apply_retention
from billing.settings import GROUP, BillingSettings
from billing.settle import settle
from kernel.env import Env
from kernel.keys import stream_key
from kernel.settings import Settings
from tests.conftest import Servers
from tests.factories import Programme, programme
from tests.helpers import cli_env, run_cli


def _months_ago(months: int) -> dt.date:
    first = dt.date.today().replace(day=1)
    year, month = divmod(first.year * 12 + first.month - 1 - months, 12)
    return dt.date(year, month + 1, 1)


def _next_month(day: dt.date) -> dt.date:
    return (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


def _noon(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(12), dt.UTC)


def _name(day: dt.date) -> str:
    return f"events_{day:%Y%m%d}"


@pytest.fixture
async def old_days(db: asyncpg.Connection) -> AsyncIterator[tuple[dt.date, dt.date]]:
    """Two old months with two day partitions each; the partitions are gone again after the test."""
    closed, still_open = _months_ago(26), _months_ago(25)
    for month in (closed, still_open):
        await db.execute("SELECT cm_ensure_event_partitions($1, 2)", month)
    yield closed, still_open
    for month in (closed, still_open):
        for offset in (0, 1):
            await db.execute(f'DROP TABLE IF EXISTS "{_name(month + dt.timedelta(days=offset))}"')


async def _clicks(db: asyncpg.Connection, prog: Programme, day: dt.date, n: int) -> None:
    for i in range(n):
        await db.execute(
            """INSERT INTO events (id, ts, type, link_id, offer_id, partner_id, click_id, is_unique, payload)
               VALUES ($1, $2, 'click', $3, $4, $5, $6, true, '{}')""",
            uuid.uuid4(),
            _noon(day) + dt.timedelta(minutes=i),
            prog.link_id,
            prog.offer_id,
            prog.partner_id,
            f"c-{day}-{i}",
        )


async def _money(db: asyncpg.Connection) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    lines = [tuple(r) for r in await db.fetch("SELECT source, kind, amount_minor, statement_id FROM ledger_lines")]
    sheets = [
        tuple(r)
        for r in await db.fetch(
            "SELECT number, status, total_minor, carried_in_minor, csv_sha256 FROM statements ORDER BY number"
        )
    ]
    return sorted(lines, key=str), sheets


async def _exists(db: asyncpg.Connection, name: str) -> bool:
    return bool(await db.fetchval("SELECT to_regclass($1) IS NOT NULL", name))


async def test_closed_months_days_are_dropped_open_ones_kept(
    settings: Settings, db: asyncpg.Connection, old_days: tuple[dt.date, dt.date]
) -> None:
    closed, still_open = old_days
    prog = await programme(db, fee_plan={"cpc": 7})
    for day in (closed, closed + dt.timedelta(days=1), still_open):
        await _clicks(db, prog, day, 3)
    await db.execute(
        "INSERT INTO rollups (day, partner_id, offer_id, country, sub1, clicks) VALUES ($1, $2, $3, '', '', 3)",
        closed,
        prog.partner_id,
        prog.offer_id,
    )
    closing = dt.datetime.combine(_next_month(closed), dt.time(1), dt.UTC)
    await settle(db, f"{closed:%Y-%m}", now=closing, close=True)
    await settle(db, f"{still_open:%Y-%m}", now=closing + dt.timedelta(days=40), close=False)
    statuses = dict(await db.fetch("SELECT period_start, status FROM statements"))
    assert statuses == {closed: "closed", still_open: "open"}
    money_before = await _money(db)
    assert sum(line[2] for line in money_before[0]) == 9 * 7  # every click paid, the test sees real lines

    billing = BillingSettings.from_env(Env({}), core=settings)
    assert billing.retention_days == 400

    # A dry run decides and drops nothing.
    dry = await apply_retention(db, billing, dry_run=True)
    verdicts = {d.partition: d for d in dry.decisions}
    assert verdicts[_name(closed)].drop and verdicts[_name(closed + dt.timedelta(days=1))].drop
    assert not verdicts[_name(still_open)].drop
    assert any("still open" in reason for reason in verdicts[_name(still_open)].reasons)
    today = dt.datetime.now(dt.UTC).date()
    assert any("younger than 400 days" in r for r in verdicts[_name(today)].reasons)
    assert await _exists(db, _name(closed)) and dry.dropped == []
    assert any(line.startswith(f"would drop {_name(closed)}") for line in dry.lines())

    # Ingest still holds an entry from that day: nothing of it or after it may go.
    client = aioredis.Redis.from_url(settings.redis_url or "")
    key = stream_key(settings.key_prefix, 1)
    try:
        await client.xgroup_create(key, GROUP, id="0", mkstream=True)
        entry = f"{int(_noon(closed).timestamp() * 1000)}-0"
        await client.xadd(key, {"d": b"{}"}, id=entry)
        await client.xreadgroup(GROUP, "test-consumer", {key: ">"}, count=10)
        held = await apply_retention(db, billing)
        assert held.dropped == []
        reasons = {d.partition: d.reasons for d in held.decisions}
        assert any("ingest has entries pending" in r and "shard 1" in r for r in reasons[_name(closed)])
        await client.xack(key, GROUP, entry)
    finally:
        await client.aclose()

    report = await apply_retention(db, billing)
    assert sorted(report.dropped) == [_name(closed), _name(closed + dt.timedelta(days=1))]
    assert not await _exists(db, _name(closed)) and not await _exists(db, _name(closed + dt.timedelta(days=1)))
    assert await _exists(db, _name(still_open)) and await _exists(db, _name(today))
    assert await db.fetchval("SELECT count(*) FROM events WHERE ts < $1", _noon(still_open)) == 0
    assert (
        await db.fetchval("SELECT count(*) FROM events WHERE ts >= $1", _noon(still_open) - dt.timedelta(hours=1)) == 3
    )
    # Money, statements and rollups are exactly as they were.
    assert await _money(db) == money_before
    assert await db.fetchval("SELECT clicks FROM rollups WHERE day = $1", closed) == 3
    run = await db.fetchrow("SELECT seconds, detail FROM job_runs WHERE job = 'retention'")
    assert run is not None and run["seconds"] >= 0

    # Once the open month is closed too, its days go on the next run.
    await settle(db, f"{still_open:%Y-%m}", now=closing + dt.timedelta(days=41), close=True)
    again = await apply_retention(db, billing)
    assert _name(still_open) in again.dropped


async def test_off_and_unsettled_keep_everything(
    settings: Settings, db: asyncpg.Connection, old_days: tuple[dt.date, dt.date]
) -> None:
    closed, _ = old_days
    prog = await programme(db, fee_plan={"cpc": 7})
    await _clicks(db, prog, closed, 1)
    billing = BillingSettings.from_env(Env({}), core=settings)
    report = await apply_retention(db, billing)  # nothing was ever closed
    reasons = {d.partition: d.reasons for d in report.decisions}
    assert report.dropped == []
    assert any("settle has not closed" in r for r in reasons[_name(closed)])
    off = BillingSettings.from_env(Env({"CLICKMINT_RETENTION_DAYS": "0"}), core=settings)
    report = await apply_retention(db, off)
    assert report.dropped == [] and all("retention is off" in d.reasons[0] for d in report.decisions)


async def test_cli_dry_run_prints_decisions(
    servers: Servers, settings: Settings, db: asyncpg.Connection, old_days: tuple[dt.date, dt.date]
) -> None:
    closed, _ = old_days
    code, text, _ = await run_cli(cli_env(settings), "retention", "--dry-run")
    assert code == 0
    assert f"keep {_name(closed)}: " in text and "settle has not closed" in text
    assert "dry run: 0 partition(s) would drop" in text
    assert await _exists(db, _name(closed))
