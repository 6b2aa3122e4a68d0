"""The truth test (issue 24): seeded traffic whose every verdict is known by construction, sent over real HTTP
to a tracker of three uvicorn workers, through ingest and settle, and every counter compared exactly: the
events, the rollups, the partner API and the paid cpc and cpv amounts.

The rules it holds the system to (docs/VISITORS.md): a visitor is an address (IPv4, or an IPv6 /64) and a
user agent; a click is unique per visitor and link within the offer's window; a hit is a burst when its
address already made CLICKMINT_BURST_LIMIT (30) hits in the CLICKMINT_BURST_WINDOW_S (10) seconds before
it, whatever its user agent, connection or worker; HEAD, prefetch and the list's crawlers and tools are bots
with their reason; bots and bursts are never paid.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import pytest

from billing.settle import settle
from kernel.settings import Settings
from loadtests.user_agents import BOTS, PEOPLE
from tests.factories import programme
from tests.faults.test_tracker_kill import start_tracker, stop_tracker, tracker_env
from tests.helpers import drain
from tests.portal.kit import add_user, api_key, portal_client

pytestmark = pytest.mark.timeout(150)
WINDOW_S = 3  # the offer's uniqueness (attribution) window: shorter than the schema allows, see short_window
CPC, CPV = 7, 3  # minor units per unique click, per view
LIMIT, BURST_WINDOW_S = 30, 10  # the defaults
WORKERS = 3
Verdict = tuple[str, str | None, bool | None]  # (type, bot reason, unique): one stored event


def _people(n: int, start: int = 0) -> list[str]:
    return [PEOPLE[(start + i) % len(PEOPLE)][1] for i in range(n)]


@dataclass
class Traffic:
    """The requests sent and, built alongside, the events they must become."""

    base: str
    code: str
    truth: Counter[Verdict] = field(default_factory=Counter)

    def url(self, kind: str) -> str:
        return f"{self.base}/{kind}/{self.code}"

    async def hit(
        self, client: httpx.AsyncClient, kind: str, address: str, ua: str, method: str = "GET", **headers: str
    ) -> None:
        response = await client.request(
            method, self.url(kind), headers={"user-agent": ua, "x-forwarded-for": address, **headers}
        )
        assert response.status_code == (302 if kind == "c" else 200), response.text

    def expect(self, verdict: Verdict, n: int = 1) -> None:
        self.truth[verdict] += n


def _one_connection() -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_connections=1))


def _new_connections() -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_keepalive_connections=0))


async def _people_and_bots(t: Traffic) -> None:
    async with _new_connections() as client:
        # Distinct visitors, IPv4 and IPv6: a view and a unique click each.
        visitors = [f"10.1.0.{i}" for i in range(30)] + [f"2001:db8:{i}::1" for i in range(1, 11)]
        for address, ua in zip(visitors, _people(len(visitors)), strict=True):
            await t.hit(client, "v", address, ua)
            await t.hit(client, "c", address, ua)
        t.expect(("view", None, None), 40)
        t.expect(("click", None, True), 40)
        # Two browsers behind one address are two people; the second click of each is a repeat.
        for i, (first, second) in enumerate(zip(_people(5, 3), _people(5, 9), strict=True)):
            for ua in (first, second, first, second):
                await t.hit(client, "c", f"10.2.0.{i}", ua)
        t.expect(("click", None, True), 10)
        t.expect(("click", None, False), 10)
        # An IPv6 phone changing its address inside its /64 is the same visitor.
        await t.hit(client, "c", "2001:db8:99:1::a", PEOPLE[0][1])
        await t.hit(client, "c", "2001:db8:99:1:ffff::b", PEOPLE[0][1])
        t.expect(("click", None, True))
        t.expect(("click", None, False))
        # The list's crawlers and tools, each from an address of its own: a view and a click, never unique.
        for i, (_, ua, reason) in enumerate(BOTS):
            await t.hit(client, "v", f"10.4.0.{i}", ua)
            await t.hit(client, "c", f"10.4.0.{i}", ua)
            t.expect(("view", reason, None))
            t.expect(("click", reason, False))
        # HEAD and prefetch: a browser's user agent, still not a visit.
        for i, ua in enumerate(_people(5, 20)):
            await t.hit(client, "c", f"10.5.0.{i}", ua, method="HEAD")
            await t.hit(client, "v", f"10.5.0.{i}", ua, method="HEAD")
            await t.hit(client, "c", f"10.5.1.{i}", ua, **{"sec-purpose": "prefetch"})
            await t.hit(client, "v", f"10.5.1.{i}", ua, purpose="prefetch")
        t.expect(("click", "head_request", False), 5)
        t.expect(("view", "head_request", None), 5)
        t.expect(("click", "prefetch", False), 5)
        t.expect(("view", "prefetch", None), 5)


async def _bursts(t: Traffic) -> None:
    ua = PEOPLE[1][1]
    # 40 clicks of one address on one keep-alive connection: 30 clicks (the first unique) and 10 bursts.
    async with _one_connection() as client:
        for _ in range(40):
            await t.hit(client, "c", "10.6.0.1", ua)
    t.expect(("click", None, True))
    t.expect(("click", None, False), 29)
    t.expect(("click", "burst", False), 10)
    # 40 views at once, each on a new connection, spread over the workers.
    async with _new_connections() as client:
        await asyncio.gather(*(t.hit(client, "v", "10.6.0.2", ua) for _ in range(40)))
    t.expect(("view", None, None), 30)
    t.expect(("view", "burst", None), 10)
    # 40 clicks rotating four user agents: still one address's burst; four visitors, four unique clicks.
    async with _one_connection() as client:
        for agent in _people(4, 30) * 10:
            await t.hit(client, "c", "10.6.0.3", agent)
    t.expect(("click", None, True), 4)
    t.expect(("click", None, False), 26)
    t.expect(("click", "burst", False), 10)
    # Exactly the limit within the window is no burst.
    async with _new_connections() as client:
        await asyncio.gather(*(t.hit(client, "v", "10.6.0.4", ua) for _ in range(LIMIT)))
    t.expect(("view", None, None), LIMIT)


async def _burst_across_a_boundary(t: Traffic) -> None:
    """40 views in under a second, half before and half after a multiple of the burst window on the clock."""
    now = time.time()
    boundary = (now // BURST_WINDOW_S + 1) * BURST_WINDOW_S
    await asyncio.sleep(max(0.0, boundary - 0.3 - now))
    ua = PEOPLE[2][1]
    async with _new_connections() as client:
        await asyncio.gather(*(t.hit(client, "v", "10.7.0.1", ua) for _ in range(20)))
        await asyncio.sleep(max(0.0, boundary + 0.05 - time.time()))
        await asyncio.gather(*(t.hit(client, "v", "10.7.0.1", ua) for _ in range(20)))
    t.expect(("view", None, None), 30)
    t.expect(("view", "burst", None), 10)


async def _repeats_around_the_window(t: Traffic, after: Callable[[], Awaitable[None]]) -> None:
    """Eight visitors click twice now (a unique and a repeat), then again once the window has passed."""
    visitors = [(f"10.3.0.{i}", ua) for i, ua in enumerate(_people(8, 40))]
    async with _one_connection() as client:
        for address, ua in visitors:
            await t.hit(client, "c", address, ua)
            await t.hit(client, "c", address, ua)
    passed = time.monotonic() + WINDOW_S + 0.5
    await after()  # the rest of the traffic meanwhile
    await asyncio.sleep(max(0.0, passed - time.monotonic()))
    async with _one_connection() as client:
        for address, ua in visitors:
            await t.hit(client, "c", address, ua)
    t.expect(("click", None, True), 16)
    t.expect(("click", None, False), 8)


@pytest.fixture
async def short_window(db: asyncpg.Connection) -> AsyncIterator[None]:
    """Offers take a window of 60 s or more; repeats after the window within this test's minute need less, so
    the check is lifted for this test and put back after it (the offer then gets the shortest legal window)."""
    check = "offers_attribution_window_s_check"
    await db.execute(f"ALTER TABLE offers DROP CONSTRAINT {check}")
    try:
        yield
    finally:
        await db.execute("UPDATE offers SET attribution_window_s = 60 WHERE attribution_window_s < 60")
        await db.execute(
            f"ALTER TABLE offers ADD CONSTRAINT {check} CHECK (attribution_window_s BETWEEN 60 AND 31536000)"
        )


@pytest.mark.usefixtures("short_window")
async def test_every_counter_equals_the_truth(settings: Settings, db: asyncpg.Connection, tmp_path: Path) -> None:
    prog = await programme(db, window_s=WINDOW_S, fee_plan={"cpc": CPC, "cpv": CPV})
    env = tracker_env(settings, CLICKMINT_TRUST_FORWARDED="true", CLICKMINT_REDIS_BUDGET_MS="5000")
    proc, base = start_tracker(env, WORKERS, tmp_path / "tracker.log")
    try:
        t = Traffic(base, prog.code)

        async def the_rest() -> None:
            await _people_and_bots(t)
            await _bursts(t)
            await _burst_across_a_boundary(t)

        await _repeats_around_the_window(t, the_rest)
    finally:
        stop_tracker(proc)
    sent = sum(t.truth.values())
    await drain(settings, sent, db, timeout=30)

    # The events, one by one.
    rows = await db.fetch("SELECT type, bot_reason, is_unique, payload FROM events")
    assert len(rows) == sent
    assert Counter((r["type"], r["bot_reason"], r["is_unique"]) for r in rows) == t.truth
    assert not any('"degraded"' in r["payload"] for r in rows)  # every verdict came from Redis, none was spooled

    views = sum(n for (kind, bot, _), n in t.truth.items() if kind == "view" and bot is None)
    clicks = sum(n for (kind, bot, _), n in t.truth.items() if kind == "click" and bot is None)
    unique = t.truth["click", None, True]
    bots: Counter[str] = Counter()
    for (_, bot, _), n in t.truth.items():
        if bot is not None:
            bots[bot] += n
    assert (views, clicks, unique, bots["burst"]) == (130, 146, 72, 40)  # the scenario, counted by hand

    # The rollups and the partner API read from them.
    rollup = await db.fetchrow(
        "SELECT sum(views) AS views, sum(clicks) AS clicks, sum(unique_clicks) AS uniq, sum(bots) AS bots FROM rollups"
    )
    assert (rollup["views"], rollup["clicks"], rollup["uniq"], rollup["bots"]) == (views, clicks, unique, bots.total())
    by_reason = await db.fetch("SELECT reason, sum(events)::bigint AS n FROM rollup_bots GROUP BY reason")
    assert {r["reason"]: r["n"] for r in by_reason} == bots
    user = await add_user(db, "truth@p.example", "partner", partner_id=prog.partner_id, merchant_id=prog.merchant_id)
    key = await api_key(db, user, ("read",))
    async with portal_client(settings) as portal:
        stats = (
            await portal.get("/api/v1/partner/stats?range=today", headers={"authorization": f"Bearer {key}"})
        ).json()
    total = stats["totals"]  # traffic counts once, not per currency (issue 15's stats)
    assert (total["views"], total["clicks"], total["unique_clicks"], total["bots"]) == (
        views,
        clicks,
        unique,
        bots.total(),
    )
    assert {r["reason"]: r["events"] for r in stats["bots_by_reason"]} == bots

    # Paid after settle: every unique click of a person at the cpc rate, every view of a person at the cpv rate.
    now = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    await settle(db, f"{now:%Y-%m}", now=now, close=False)
    paid = await db.fetch("SELECT kind, sum(amount_minor)::bigint AS amount FROM ledger_lines GROUP BY kind")
    assert {r["kind"]: r["amount"] for r in paid} == {"cpc": CPC * unique, "cpv": CPV * views}
