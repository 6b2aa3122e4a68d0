"""After real traffic, no full client address is anywhere in the database or in the logs."""

from __future__ import annotations

import logging

import asyncpg
import pytest

from kernel.env import Env
from kernel.settings import Settings
from tests.factories import programme
from tests.helpers import click_id_of, drain, postback
from tracker.app import TrackerApp
from tracker.settings import TrackerSettings

ADDRESSES = ("203.0.113.77", "198.51.100.201", "2001:db8:1234:5678:9abc:def0:1234:5678")


async def test_no_full_address_is_stored_or_logged(
    settings: Settings, db: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    import httpx

    caplog.set_level(logging.DEBUG)
    prog = await programme(db, fee_plan={"cps_percent": "10"})
    secret = await db.fetchval("SELECT postback_secret FROM offers WHERE id = $1", prog.offer_id)
    app = TrackerApp(TrackerSettings.from_env(Env({"CLICKMINT_METRICS_PORT": "0"}), core=settings))
    async with app.lifespan(app.cold):
        for address in ADDRESSES:
            transport = httpx.ASGITransport(app=app, client=(address, 5000))
            async with httpx.AsyncClient(transport=transport, base_url="http://track.test") as client:
                headers = {"user-agent": "Mozilla/5.0"}
                click = await client.get(f"/c/{prog.code}?sub1=x", headers=headers)
                await client.get(f"/v/{prog.code}", headers=headers)
                await client.get(f"/a/{prog.offer_id}?click_id={click_id_of(click)}&action=lead", headers=headers)
                order = f"order-{len(address)}"
                payload = {"offer_id": prog.offer_id, "click_id": click_id_of(click), "order_id": order, "amount": "10"}
                await postback(client, secret, payload)
    await drain(settings, 4 * len(ADDRESSES), db)
    dump = []
    tables = [r["tablename"] for r in await db.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
    for table in tables:
        dump += [r[0] for r in await db.fetch(f'SELECT t::text FROM "{table}" t')]
    text = "\n".join(dump) + "\n".join(record.getMessage() for record in caplog.records)
    assert "203.0.113.0" in text  # the /24 is kept, so the check below looks at real rows
    for address in ADDRESSES:
        assert address not in text, f"{address} found in the database or the logs"
