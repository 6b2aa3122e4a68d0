"""A job run on a timer inside `clickmint ingest`: the first run after a delay, then every interval, until stop.

Each run has a connection of its own, closed after it; a run that fails (PostgreSQL away, a network error)
is logged and tried again at the next interval, never ending the loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import asyncpg

Job = Callable[[asyncpg.Connection], Awaitable[None]]


async def every(
    database_url: str,
    stop: asyncio.Event,
    first_delay_s: float,
    interval_s: float,
    job: Job,
    log: logging.Logger,
    name: str,
) -> None:
    delay = first_delay_s
    while True:
        try:
            await asyncio.wait_for(stop.wait(), timeout=delay)
            return
        except TimeoutError:
            pass
        delay = interval_s
        try:
            conn = await asyncpg.connect(database_url)
            try:
                await job(conn)
            finally:
                await conn.close()
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("%s failed, next run in %.0f s: %s", name, interval_s, exc)
