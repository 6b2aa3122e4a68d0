"""Loyalty's scheduled run inside `clickmint ingest` (and so `clickmint up`): activation, expiry, tiers.

Every hour (so a purchase's points arrive within the hour its hold ends; expiry and tiers are by date, so
running more often than daily changes nothing), the first a minute after start. Each step is idempotent
(entries are unique on their key), so two ingest processes running it at once write each entry once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

import asyncpg

from billing import loyalty_ledger as ledger
from billing import periodic

log = logging.getLogger("clickmint.billing.loyalty")
FIRST_RUN_DELAY_S = 60.0
INTERVAL_S = 3600.0


async def run_periodically(database_url: str, stop: asyncio.Event, first_delay_s: float = FIRST_RUN_DELAY_S) -> None:
    async def run(conn: asyncpg.Connection) -> None:
        if await conn.fetchval("SELECT to_regclass('loyalty_programmes') IS NOT NULL"):
            done = await ledger.daily(conn, dt.datetime.now(dt.UTC))
            if any(done.values()):
                log.info("loyalty: %s", done)

    await periodic.every(database_url, stop, first_delay_s, INTERVAL_S, run, log, "loyalty run")
