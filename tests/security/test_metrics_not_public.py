"""The tracker's /metrics was public on the click port (traffic, refusals, spool and Redis state for anyone).
Tried on a real tracker: the click port answers 404 for it; the metrics answer on the admin address
(CLICKMINT_METRICS_HOST/PORT, loopback by default), or on the click port only with the operator's token."""

from __future__ import annotations

import asyncpg
import httpx

from kernel.settings import Settings
from tests.security.live import live


async def test_metrics_are_not_on_the_click_port(settings: Settings, db: asyncpg.Connection) -> None:
    async with live(settings, ingest=False) as lv, lv.client() as client:
        public = await client.get(f"{lv.tracker_url}/metrics")
        assert public.status_code == 404
        assert "clickmint_" not in public.text
        admin = await client.get(f"http://127.0.0.1:{lv.metrics_port}/metrics")
        assert admin.status_code == 200 and "clickmint_requests_total" in admin.text
        assert 'clickmint_bot_list_info{list="crawler-user-agents",version=' in admin.text  # the bots' list too
        assert (await client.post(f"http://127.0.0.1:{lv.metrics_port}/metrics")).status_code == 405


async def test_metrics_on_the_click_port_need_the_token(settings: Settings, db: asyncpg.Connection) -> None:
    token = "metrics-token-" + "m" * 32
    async with live(settings, ingest=False, tracker_env={"CLICKMINT_METRICS_TOKEN": token}) as lv:
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"{lv.tracker_url}/metrics")).status_code == 404
            wrong = await client.get(f"{lv.tracker_url}/metrics", headers={"authorization": "Bearer nope"})
            assert wrong.status_code == 404
            right = await client.get(f"{lv.tracker_url}/metrics", headers={"authorization": f"Bearer {token}"})
            assert right.status_code == 200 and "clickmint_requests_total" in right.text
