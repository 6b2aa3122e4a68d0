"""`clickmint settle`: says how far ingest is before it settles, reports each step as it goes."""

from __future__ import annotations

import datetime as dt

import asyncpg
import redis.asyncio as aioredis

from kernel.keys import dead_key
from kernel.settings import Settings
from tests.factories import programme
from tests.helpers import cli_env, click_id_of, drain, postback, run_cli, tracker_client


async def test_settle_notes_the_backlog_and_reports_its_steps(settings: Settings, db: asyncpg.Connection) -> None:
    prog = await programme(db, fee_plan={"cps_percent": "10"})
    await db.execute("UPDATE offers SET hold_days = 0")
    secret = await db.fetchval("SELECT postback_secret FROM offers WHERE id = $1", prog.offer_id)
    async with tracker_client(settings) as (_app, client):
        cid = click_id_of(await client.get(f"/c/{prog.code}", headers={"user-agent": "Mozilla/5.0"}))
        await postback(client, secret, {"offer_id": prog.offer_id, "click_id": cid, "order_id": "A1", "amount": "50"})
    await drain(settings, 2, db)
    async with tracker_client(settings) as (_app, client):  # one more click, which ingest has not stored yet
        await client.get(f"/c/{prog.code}", headers={"user-agent": "Mozilla/5.0"})
    redis = aioredis.Redis.from_url(settings.redis_url or "")
    await redis.xadd(dead_key(settings.key_prefix, 0), {"entry": "1-1", "d": b"{", "reason": "payload is not JSON"})
    await redis.aclose()

    period = f"{dt.datetime.now(dt.UTC):%Y-%m}"
    code, out, err = await run_cli(cli_env(settings), "settle", "--period", period, "--no-close")
    assert code == 0, err
    assert "stream entries ingest has not stored yet: 1;" in err
    assert "entries in the dead-letter streams, not settled: 1" in err
    assert "conversions approved: 1, rejected as refunded: 0; commission lines: 1; statements opened: 1" in err
    assert "lines in statements: 1 " in err
    assert f"settled {period}" in out and "1 conversions approved" in out
    assert await db.fetchval("SELECT amount_minor FROM ledger_lines") == 500


async def test_a_malformed_period_is_refused(settings: Settings, db: asyncpg.Connection) -> None:
    code, out, err = await run_cli(cli_env(settings), "settle", "--period", "2026-13")
    assert code != 0 and out == ""
    assert "a period is written YYYY-MM, not '2026-13'" in err
    assert "Traceback" not in err
    assert await db.fetchval("SELECT count(*) FROM job_runs") == 0


async def test_a_statements_detail_lists_the_events_of_its_grouped_lines(settings: Settings, db: asyncpg.Connection):
    prog = await programme(db, fee_plan={"cpc": 25})
    async with tracker_client(settings) as (_app, client):
        for agent in ("Mozilla/5.0 (X11)", "Mozilla/5.0 (Mac)"):
            await client.get(f"/c/{prog.code}", headers={"user-agent": agent})
    await drain(settings, 2, db)
    period = f"{dt.datetime.now(dt.UTC):%Y-%m}"
    code, _out, err = await run_cli(cli_env(settings), "settle", "--period", period, "--no-close")
    assert code == 0, err
    assert "cpc, cpv and cpm lines (one per offer, day and rate): 1" in err
    number = await db.fetchval("SELECT number FROM statements")
    code, out, err = await run_cli(cli_env(settings), "statement", "export", number, "--format", "detail")
    assert code == 0, err
    header, *rows = out.splitlines()
    assert header == "Line,Reference,Kind,Date (UTC),Event"
    clicks = {str(r["id"]) for r in await db.fetch("SELECT id FROM events WHERE type = 'click'")}
    assert {row.split(",")[4] for row in rows} == clicks and len(rows) == 2
