"""Bursts per address, counted in Redis by the script that appends each hit: the same for every worker and
tracker, over a sliding window with no boundary to slip through; uniqueness per address and user agent."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest

from clickmint.embedded import pick_port
from kernel.settings import Settings
from tests.factories import programme
from tests.http.tracker_client import BROWSER_UA, running
from tracker.spool import parse_lines

FIREFOX, CHROME, SAFARI, EDGE = (
    BROWSER_UA,
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 "
    "Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 "
    "Safari/537.36 Edg/131.0.0.0",
)


def _bots(events: list[dict[str, Any]]) -> list[str | None]:
    return [event["bot"] for event in events]


async def _until_just_before_a_boundary(window_s: int = 10, lead_s: float = 0.15) -> None:
    """Wait until the clock is `lead_s` before a multiple of the window (where a fixed window would reset)."""
    now = time.time()
    boundary = (now // window_s + 1) * window_s
    if boundary - now < lead_s + 0.05:
        boundary += window_s
    await asyncio.sleep(boundary - lead_s - now)


async def test_forty_hits_straddling_a_window_boundary_are_ten_bursts(
    settings: Settings, db: asyncpg.Connection
) -> None:
    """Issue 24 (2): fixed 10 s windows let 40 hits in under a second through when they straddled a boundary."""
    prog = await programme(db)
    async with running(settings) as t:
        await _until_just_before_a_boundary()
        for _ in range(20):
            await t.http.get(f"/v/{prog.code}")
        while time.time() % 10 > 5:  # the second half after the boundary
            await asyncio.sleep(0.01)
        for _ in range(20):
            await t.http.get(f"/v/{prog.code}")
        events = await t.events()
        (burst_list,) = [key async for key in t.redis.scan_iter(match=f"{t.prefix}:burst:*")]
        stamps = [int(stamp) for stamp in await t.redis.lrange(burst_list, 0, -1)]
        expires_ms = await t.redis.pttl(burst_list)
    assert _bots(events) == [None] * 30 + ["burst"] * 10
    entries = [fields for key in await t.stream_keys() for _, fields in await t.redis.xrange(key)]
    assert sorted(fields[b"b"] for fields in entries) == [b"0"] * 30 + [b"1"] * 10  # decided by Redis
    # One list for the address: the times of its last limit + 1 hits, in ms, newest first; gone a window later.
    assert len(stamps) == 31 and stamps == sorted(stamps, reverse=True)
    assert abs(stamps[0] - time.time() * 1000) < 5000 and 0 < expires_ms <= 10_000


async def test_seventy_views_through_two_trackers_are_thirty_views(settings: Settings, db: asyncpg.Connection) -> None:
    """Issue 15 (3): each worker process counted its own hits, so two paid 60 of 70 views instead of 30."""
    prog = await programme(db)
    async with running(settings) as one, running(settings) as two:
        for i in range(70):
            tracker = one if i % 2 else two
            async with tracker.client() as fresh:  # a new connection each time
                assert (await fresh.get(f"/v/{prog.code}")).status_code == 200
        events = await one.events()
    assert _bots(events) == [None] * 30 + ["burst"] * 40


async def test_rotating_user_agents_cannot_hide_a_burst(settings: Settings, db: asyncpg.Connection) -> None:
    """Issue 24 (3): 40 clicks in under a second from one address rotating 4 user agents were never a burst
    and 3-4 unique. Bursts are per address: 10 bursts; uniqueness per address and user agent: 4 unique."""
    prog = await programme(db)
    async with running(settings) as t:
        for i in range(40):
            await t.http.get(f"/c/{prog.code}", headers={"user-agent": (FIREFOX, CHROME, SAFARI, EDGE)[i % 4]})
        events = await t.events()
    assert _bots(events) == [None] * 30 + ["burst"] * 10
    assert [e["unique"] for e in events] == [True] * 4 + [False] * 36


async def test_two_browsers_behind_one_address_are_two_visitors(settings: Settings, db: asyncpg.Connection) -> None:
    prog = await programme(db)
    async with running(settings) as t:
        for agent in (FIREFOX, CHROME, FIREFOX, CHROME):
            await t.http.get(f"/c/{prog.code}", headers={"user-agent": agent})
        async with t.client(ip="198.51.100.9") as neighbour:
            await neighbour.get(f"/c/{prog.code}", headers={"user-agent": FIREFOX})
        events = await t.events()
    assert [e["unique"] for e in events] == [True, True, False, False, True]
    assert _bots(events) == [None] * 5


async def test_an_ipv6_visitor_is_known_by_its_64(settings: Settings, db: asyncpg.Connection) -> None:
    """A phone may change its address inside its /64 at will: the same visitor for uniqueness and bursts."""
    prog = await programme(db)
    async with running(settings, {"CLICKMINT_BURST_LIMIT": "3"}) as t:
        for ip in ("2001:db8:1:2::10", "2001:db8:1:2:aaaa::1", "2001:db8:1:3::10"):
            async with t.client(ip=ip) as phone:
                await phone.get(f"/c/{prog.code}")
        for i in range(3):  # the 2nd and 3rd are the 4th and 5th hits of 2001:db8:1:2::/64: bursts
            async with t.client(ip=f"2001:db8:1:2::{i + 20}") as phone:
                await phone.get(f"/v/{prog.code}")
        events = await t.events()
    assert [e["unique"] for e in events if e["type"] == "click"] == [True, False, True]
    assert _bots(events) == [None] * 4 + ["burst"] * 2


async def test_bots_do_not_count_towards_a_persons_bursts(settings: Settings, db: asyncpg.Connection) -> None:
    prog = await programme(db)
    async with running(settings, {"CLICKMINT_BURST_LIMIT": "3"}) as t:
        for _ in range(5):
            await t.http.get(f"/v/{prog.code}", headers={"user-agent": "curl/8.5.0"})
            await t.http.head(f"/v/{prog.code}")
        for _ in range(4):
            await t.http.get(f"/v/{prog.code}")
        events = await t.events()
    assert _bots(events) == ["http_library", "head_request"] * 5 + [None] * 3 + ["burst"]


async def test_a_burst_is_never_unique_and_uses_up_no_cap(settings: Settings, db: asyncpg.Connection) -> None:
    prog = await programme(db, caps={"clicks": {"daily": 31}}, fallback_url="https://fallback.example.org/")
    async with running(settings) as t:
        for i in range(40):
            response = await t.http.get(f"/c/{prog.code}", headers={"user-agent": f"Mozilla/5.0 visitor-{i}"})
            assert response.headers["location"].startswith("https://shop.example.com/")
        async with t.client(ip="198.51.100.9") as other:  # the 31st click within the cap, the 32nd over it
            first, second = [await other.get(f"/c/{prog.code}", headers={"user-agent": ua}) for ua in (CHROME, EDGE)]
        events = await t.events()
    assert first.headers["location"].startswith("https://shop.example.com/")
    assert second.headers["location"] == "https://fallback.example.org/"
    assert _bots(events) == [None] * 30 + ["burst"] * 10 + [None, None]
    assert [e["unique"] for e in events] == [True] * 30 + [False] * 10 + [True, True]
    assert [e.get("refusal") for e in events][-2:] == [None, "over_cap"]


async def test_burst_metrics_count_what_redis_decided(settings: Settings, db: asyncpg.Connection) -> None:
    prog = await programme(db)
    async with running(settings, {"CLICKMINT_BURST_LIMIT": "2"}) as t:
        for _ in range(5):
            await t.http.get(f"/c/{prog.code}")
        metrics = (await t.http.get("/metrics")).text
    assert 'clickmint_bot_events_total{reason="burst"} 3' in metrics


async def test_without_redis_the_process_counts_bursts_and_flags_them(
    settings: Settings, db: asyncpg.Connection
) -> None:
    """Spooled events have no Redis verdict: the tracker process counts the same rule, marked degraded."""
    prog = await programme(db)
    dead = replace(settings, redis_url=f"redis://127.0.0.1:{pick_port(0)}/0")
    async with running(dead, {"CLICKMINT_BURST_LIMIT": "3"}) as t:
        for _ in range(3):
            await t.http.get(f"/c/{prog.code}")
            await t.http.get(f"/v/{prog.code}")
        assert t.app.recorder.stats.events_spooled == 6
    events = [event for path in sorted((settings.data_dir / "spool").iterdir()) for event in _spooled(path)]
    assert [e["bot"] for e in events] == [None, None, None, "burst", "burst", "burst"]
    assert [e["type"] for e in events] == ["click", "view"] * 3
    assert all(e["degraded"] for e in events)
    assert [e["unique"] for e in events if e["type"] == "click"] == [True, True, False]


def _spooled(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(payload) for _, payload in parse_lines(path.read_bytes())]


@pytest.mark.parametrize("limit", ["1", "30"])
async def test_an_inactive_links_clicks_count_too(settings: Settings, db: asyncpg.Connection, limit: str) -> None:
    prog = await programme(db, partner_status="applied")
    async with running(settings, {"CLICKMINT_BURST_LIMIT": limit}) as t:
        for _ in range(2):
            await t.http.get(f"/c/{prog.code}")
        events: list[dict[str, Any]] = await t.events()
    assert [e["refusal"] for e in events] == ["link_inactive"] * 2
    assert _bots(events) == ([None, "burst"] if limit == "1" else [None, None])
