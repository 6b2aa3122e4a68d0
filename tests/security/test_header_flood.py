"""Oversized request headers, tried on the real tracker and portal (uvicorn on loopback): a 200 KB header and
3,000 headers were accepted. Both now answer 431 and record nothing; ordinary requests are unaffected."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from kernel.settings import Settings
from tests.factories import programme
from tests.security.live import live


async def _raw(port: int, path: str, headers: list[tuple[str, str]]) -> int:
    """One request written by hand (no client library trims or refuses it); the status code answered."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", "User-Agent: Mozilla/5.0", *(f"{k}: {v}" for k, v in headers)]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await writer.drain()
    status = await reader.readline()
    writer.close()
    return int(status.split()[1])


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param([("X-Big", "a" * 200_000)], id="one_200KB_header"),
        pytest.param([(f"X-H{i}", "v") for i in range(3000)], id="3000_headers"),
        pytest.param([("Cookie", "c=" + "b" * 40_000)], id="40KB_cookie"),
    ],
)
async def test_oversized_headers_get_431(settings: Settings, db: asyncpg.Connection, headers) -> None:
    prog = await programme(db)
    async with live(settings, ingest=False) as lv:
        for port, path in (
            (lv.core.tracker_port, f"/c/{prog.code}"),
            (lv.core.tracker_port, f"/v/{prog.code}"),
            (lv.core.tracker_port, "/postback"),
            (lv.core.portal_port, "/login"),
            (lv.core.portal_port, "/api/v1/me"),
        ):
            assert await _raw(port, path, headers) == 431, path
        assert await _raw(lv.core.tracker_port, f"/c/{prog.code}", [("X-Ok", "fine")]) == 302
        assert await _raw(lv.core.portal_port, "/login", [(f"X-H{i}", "v") for i in range(50)]) == 200
        written = lv.tracker.recorder.stats.events_redis + lv.tracker.recorder.stats.events_spooled
    assert written == 1
