"""Every tracker route and its outcomes, in-process, with the events read back from the Redis streams."""

from __future__ import annotations

import asyncio
import hashlib
import time
from urllib.parse import parse_qs, urlsplit

import asyncpg
import pytest

from kernel.settings import Settings
from tests.factories import Programme, programme
from tests.http.tracker_client import BROWSER_UA, running
from tracker.crawlers import LIST_VERSION
from tracker.endpoints import GIF

ALL_MACROS = (
    "https://shop.example.com/landing?cid={click_id}&s1={sub1}&s2={sub2}&s3={sub3}&s4={sub4}&s5={sub5}"
    "&src={source}&p={partner_id}&o={offer_id}&l={link_id}"
)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


def _cookie(prog: Programme, click_id: str, window_s: int = 86400) -> str:
    return f"cm_{prog.offer_id}={click_id}; Max-Age={window_s}; Path=/; HttpOnly; SameSite=Lax"


async def test_click_redirects_with_encoded_macros_cookie_and_event(settings: Settings, db: asyncpg.Connection) -> None:
    prog = await programme(db, destination=ALL_MACROS, window_s=7200)
    async with running(settings) as t:
        response = await t.http.get(
            f"/c/{prog.code}",
            params={"sub1": "summer deal & more", "sub2": "é", "sub3": "a/b?c#d", "sub5": "x", "source": "news"},
        )
        events = await t.shard_events(t.shard(prog.code))
        assert await t.written() == (1, 1, 0)
    assert response.status_code == 302
    assert response.content == b""
    assert response.headers["cache-control"] == "no-store, max-age=0"
    raw = response.headers["location"]
    assert raw.startswith("https://shop.example.com/landing?cid=")
    assert "&s1=summer%20deal%20%26%20more&s2=%C3%A9&s3=a%2Fb%3Fc%23d&s4=&s5=x&src=news" in raw
    assert raw.endswith(f"&p={prog.partner_id}&o={prog.offer_id}&l={prog.link_id}")
    query = parse_qs(urlsplit(raw).query, keep_blank_values=True)
    click_id = query["cid"][0]
    assert len(click_id) == 38
    assert response.headers.get_list("set-cookie") == [_cookie(prog, click_id, 7200)]
    assert len(events) == 1
    event = events[0]
    assert {k: event[k] for k in ("type", "link", "partner", "offer", "click_id", "unique", "bot", "ip", "ua")} == {
        "type": "click",
        "link": prog.link_id,
        "partner": prog.partner_id,
        "offer": prog.offer_id,
        "click_id": click_id,
        "unique": True,
        "bot": None,
        "ip": "203.0.113.0",
        "ua": BROWSER_UA,
    }
    assert [event[f"sub{i}"] for i in range(1, 6)] == ["summer deal & more", "é", "a/b?c#d", "", "x"]
    assert event["source"] == "news"
    assert "refusal" not in event
    assert t.signer.verify(click_id, event["ts"] // 1000, 7200).link_id == prog.link_id


@pytest.mark.parametrize(
    ("env", "base_url", "forwarded_proto", "secure"),
    [
        ({}, "http://track.test", None, False),
        ({}, "https://track.test", None, True),
        ({}, "http://track.test", "https", False),  # an untrusted proxy header is ignored
        ({"CLICKMINT_TRUST_FORWARDED": "true"}, "http://track.test", "https", True),
        ({"CLICKMINT_TRUST_FORWARDED": "true"}, "http://track.test", "http", False),
    ],
)
async def test_cookie_is_secure_only_over_https(
    settings: Settings,
    db: asyncpg.Connection,
    env: dict[str, str],
    base_url: str,
    forwarded_proto: str | None,
    secure: bool,
) -> None:
    prog = await programme(db)
    headers = {"x-forwarded-proto": forwarded_proto} if forwarded_proto else {}
    async with running(settings, env) as t, t.client(base_url=base_url) as http:
        response = await http.get(f"/c/{prog.code}", headers=headers)
    assert response.status_code == 302
    click_id = parse_qs(urlsplit(response.headers["location"]).query)["cid"][0]
    expected = _cookie(prog, click_id) + ("; Secure" if secure else "")
    assert response.headers.get_list("set-cookie") == [expected]


@pytest.mark.parametrize(("trusted", "ip"), [(False, "203.0.113.0"), (True, "198.51.100.0")])
async def test_forwarded_for_is_used_only_when_trusted(
    settings: Settings, db: asyncpg.Connection, trusted: bool, ip: str
) -> None:
    prog = await programme(db)
    env = {"CLICKMINT_TRUST_FORWARDED": "true"} if trusted else {}
    async with running(settings, env) as t:
        await t.http.get(f"/c/{prog.code}", headers={"x-forwarded-for": "198.51.100.23, 10.0.0.1"})
        [event] = await t.events()
    assert event["ip"] == ip


async def test_unknown_link_is_a_404_page_with_no_event(settings: Settings, db: asyncpg.Connection) -> None:
    await programme(db)
    async with running(settings) as t:
        response = await t.http.get("/c/no-such-link?sub1=x")
        assert await t.written() == (0, 0, 0)
        assert await t.stream_keys() == []
    assert response.status_code == 404
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert b"This link does not exist" in response.content
    assert "location" not in response.headers and "set-cookie" not in response.headers


@pytest.mark.parametrize("fallback", [None, "https://shop.example.com/sorry"])
@pytest.mark.parametrize("why", ["partner_applied", "link_paused", "offer_paused"])
async def test_inactive_link_redirects_without_click_id(
    settings: Settings, db: asyncpg.Connection, why: str, fallback: str | None
) -> None:
    status = "applied" if why == "partner_applied" else "approved"
    prog = await programme(db, partner_status=status, fallback_url=fallback)
    if why == "link_paused":
        await db.execute("UPDATE links SET status = 'paused' WHERE id = $1", prog.link_id)
    elif why == "offer_paused":
        await db.execute("UPDATE offers SET status = 'paused' WHERE id = $1", prog.offer_id)
    async with running(settings) as t:
        response = await t.http.get(f"/c/{prog.code}?sub1=abc")
        [event] = await t.shard_events(t.shard(prog.code))
    assert response.status_code == 302
    assert response.headers["location"] == (fallback or "https://shop.example.com/landing?cid=&s1=")
    assert "set-cookie" not in response.headers
    assert event["type"] == "click" and event["link"] == prog.link_id
    assert event["refusal"] == "link_inactive"
    assert event["unique"] is False
    assert "click_id" not in event


async def test_inactive_click_is_counted_as_a_refusal(settings: Settings, db: asyncpg.Connection) -> None:
    prog = await programme(db, partner_status="applied")
    async with running(settings) as t:
        await t.http.get(f"/c/{prog.code}")
        await t.http.get(f"/v/{prog.code}")
        lines = set((await t.http.get("/metrics")).text.splitlines())
    # The view of an inactive link is counted as its refusal; the click must be too, like over_cap is.
    assert 'clickmint_requests_total{route="v",outcome="link_inactive"} 1' in lines
    assert 'clickmint_requests_total{route="c",outcome="link_inactive"} 1' in lines
    assert 'clickmint_refusals_total{code="link_inactive"} 2' in lines


@pytest.mark.parametrize(
    ("url", "followed"),
    [
        ("https://shop.example.com/shoes?id=7", True),
        ("https://shop.example.com:8443/x", True),
        ("http://shop.example.com/plain", True),
        ("https://other.example/shoes", False),
        ("ftp://shop.example.com/x", False),
        ("", False),
    ],
)
async def test_deep_link_only_to_allowed_hosts(
    settings: Settings, db: asyncpg.Connection, url: str, followed: bool
) -> None:
    prog = await programme(db)
    async with running(settings) as t:
        response = await t.http.get(f"/c/{prog.code}", params={"url": url})
        [event] = await t.events()
    assert response.status_code == 302
    if followed:
        assert response.headers["location"] == url
    else:
        assert response.headers["location"] == f"https://shop.example.com/landing?cid={event['click_id']}&s1="
    assert response.headers.get_list("set-cookie") == [_cookie(prog, event["click_id"])]


async def test_oversized_sub_id_is_dropped_not_echoed(settings: Settings, db: asyncpg.Connection) -> None:
    prog = await programme(db)
    async with running(settings) as t:
        response = await t.http.get(f"/c/{prog.code}", params={"sub1": "a" * 256})
        [event] = await t.events()
    assert response.status_code == 302
    assert response.headers["location"] == f"https://shop.example.com/landing?cid={event['click_id']}&s1="
    assert event["refusal"] == "field_too_long"
    assert event["sub1"] == ""


async def test_view_pixel_is_a_gif_and_an_event(settings: Settings, db: asyncpg.Connection) -> None:
    prog = await programme(db)
    async with running(settings) as t:
        response = await t.http.get(f"/v/{prog.code}")
        [event] = await t.shard_events(t.shard(prog.code))
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/gif"
    assert response.content == GIF
    assert response.headers["content-length"] == str(len(GIF))
    assert response.headers["cache-control"] == "no-store, max-age=0"
    assert "x-clickmint-refusal" not in response.headers and "set-cookie" not in response.headers
    assert (event["type"], event["link"], event["partner"], event["offer"]) == (
        "view",
        prog.link_id,
        prog.partner_id,
        prog.offer_id,
    )
    assert event["bot"] is None
    assert "click_id" not in event and "refusal" not in event


@pytest.mark.parametrize("route", ["v", "b"])
async def test_unknown_view_or_banner_is_a_gif_with_refusal_and_no_event(
    settings: Settings, db: asyncpg.Connection, route: str
) -> None:
    await programme(db)
    async with running(settings) as t:
        response = await t.http.get(f"/{route}/unknown-link")
        assert await t.written() == (0, 0, 0)
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/gif"
    assert response.content == GIF
    assert response.headers["x-clickmint-refusal"] == "unknown_link"


async def test_view_of_inactive_link_is_refused_in_header_and_event(settings: Settings, db: asyncpg.Connection) -> None:
    prog = await programme(db, partner_status="applied")
    async with running(settings) as t:
        response = await t.http.get(f"/v/{prog.code}")
        [event] = await t.events()
    assert response.content == GIF
    assert response.headers["x-clickmint-refusal"] == "link_inactive"
    assert event["refusal"] == "link_inactive"


async def test_banner_without_creative_is_a_gif_with_no_creative(settings: Settings, db: asyncpg.Connection) -> None:
    prog = await programme(db)
    async with running(settings) as t:
        response = await t.http.get(f"/b/{prog.code}")
        [event] = await t.events()
    assert response.status_code == 200
    assert response.content == GIF
    assert response.headers["x-clickmint-refusal"] == "no_creative"
    assert event["type"] == "view" and event["refusal"] == "no_creative"


async def _with_creative(db: asyncpg.Connection, prog: Programme) -> str:
    digest = hashlib.sha256(PNG).hexdigest()
    creative_id = await db.fetchval(
        """INSERT INTO creatives (offer_id, name, content_type, width, height, body, sha256)
           VALUES ($1, 'banner', 'image/png', 1, 1, $2, $3) RETURNING id""",
        prog.offer_id,
        PNG,
        digest,
    )
    await db.execute("UPDATE links SET creative_id = $1 WHERE id = $2", creative_id, prog.link_id)
    return digest


async def test_banner_serves_its_creative(settings: Settings, db: asyncpg.Connection) -> None:
    prog = await programme(db)
    digest = await _with_creative(db, prog)
    async with running(settings) as t:
        response = await t.http.get(f"/b/{prog.code}")
        [event] = await t.events()
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.content == PNG
    assert response.headers["etag"] == f'"{digest[:32]}"'
    assert "x-clickmint-refusal" not in response.headers
    assert event["type"] == "view" and event["link"] == prog.link_id and "refusal" not in event


@pytest.mark.parametrize(("route", "status"), [("c", 302), ("v", 200), ("b", 200)])
async def test_head_is_answered_but_marked_as_a_bot(
    settings: Settings, db: asyncpg.Connection, route: str, status: int
) -> None:
    prog = await programme(db)
    await _with_creative(db, prog)
    async with running(settings) as t:
        response = await t.http.head(f"/{route}/{prog.code}")
        [event] = await t.events()
    assert response.status_code == status
    assert response.content == b""
    assert event["bot"] == "head_request"
    if route == "c":
        assert event["unique"] is False
        assert response.headers["location"].startswith("https://shop.example.com/landing?cid=")


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"user-agent": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"}, "search_crawler"),
        ({"user-agent": "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)"}, "link_preview"),
        ({"user-agent": "curl/8.5.0"}, "http_library"),
        ({"user-agent": ""}, "empty_user_agent"),
        ({"sec-purpose": "prefetch"}, "prefetch"),
        ({"sec-purpose": "prefetch;prerender"}, "prefetch"),
    ],
)
async def test_bots_are_recorded_with_a_reason_and_never_unique(
    settings: Settings, db: asyncpg.Connection, headers: dict[str, str], reason: str
) -> None:
    prog = await programme(db)
    async with running(settings) as t:
        response = await t.http.get(f"/c/{prog.code}", headers=headers)
        view = await t.http.get(f"/v/{prog.code}", headers=headers)
        # The bot's visit did not use up the unique window of the person behind the same address.
        human = await t.http.get(f"/c/{prog.code}")
        metrics = (await t.http.get("/metrics")).text
        bot_click, bot_view, human_click = await t.shard_events(t.shard(prog.code))
    assert response.status_code == 302 and view.status_code == 200
    assert (bot_click["type"], bot_click["bot"], bot_click["unique"]) == ("click", reason, False)
    assert (bot_view["type"], bot_view["bot"]) == ("view", reason)
    if headers.get("user-agent") is None:  # prefetch from a browser: the same visitor as the human click
        assert human_click["unique"] is True
    assert human.status_code == 302 and human_click["bot"] is None
    assert f'clickmint_bot_events_total{{reason="{reason}"}} 2' in metrics


async def test_unique_click_window(settings: Settings, db: asyncpg.Connection) -> None:
    prog = await programme(db)
    other = await programme(db, merchant_id=prog.merchant_id)
    async with running(settings) as t:
        await t.http.get(f"/c/{prog.code}")
        await t.http.get(f"/c/{prog.code}")
        await t.http.get(f"/c/{prog.code}", headers={"user-agent": BROWSER_UA + " Edg/128.0"})
        async with t.client(ip="198.51.100.9") as elsewhere:
            await elsewhere.get(f"/c/{prog.code}")
        await t.http.get(f"/c/{other.code}")
        mine = [e for e in await t.shard_events(t.shard(prog.code)) if e["link"] == prog.link_id]
        others = [e for e in await t.shard_events(t.shard(other.code)) if e["link"] == other.link_id]
    # Same visitor twice: unique then not; another user agent or another address is another visitor.
    assert [e["unique"] for e in mine] == [True, False, True, True]
    assert [e["unique"] for e in others] == [True]  # the window is per link
    first, second = mine[:2]
    assert first["click_id"] != second["click_id"]


async def test_metrics_show_how_late_the_event_loop_ran(settings: Settings, db: asyncpg.Connection) -> None:
    """A loop busy with its own work shows in clickmint_event_loop_lag_*, the worst reset at each scrape."""
    await programme(db)
    async with running(settings) as t:
        await asyncio.sleep(0.25)  # a few quiet ticks
        time.sleep(0.3)  # noqa: ASYNC251 -- on purpose: the loop is stuck for longer than the monitor's 100 ms tick
        await asyncio.sleep(0.25)
        busy = _samples((await t.http.get("/metrics")).text)
        await asyncio.sleep(0.25)
        quiet = _samples((await t.http.get("/metrics")).text)
    assert busy["clickmint_event_loop_lag_max_seconds"] >= 0.19  # the tick due in the stall ran >= 200 ms late
    late = busy["clickmint_event_loop_lag_seconds_count"] - busy['clickmint_event_loop_lag_seconds_bucket{le="0.02"}']
    assert late >= 1
    assert quiet["clickmint_event_loop_lag_max_seconds"] < 0.15  # reset by the first scrape
    assert quiet["clickmint_event_loop_lag_seconds_count"] > busy["clickmint_event_loop_lag_seconds_count"]


def _samples(text: str) -> dict[str, float]:
    return {
        name: float(value) for name, value in (line.rsplit(" ", 1) for line in text.splitlines() if line[:1] != "#")
    }


async def test_health_readiness_and_metrics(settings: Settings, db: asyncpg.Connection) -> None:
    prog = await programme(db)
    async with running(settings) as t:
        health = await t.http.get("/healthz")
        ready = await t.http.get("/readyz")
        await t.http.get(f"/c/{prog.code}")
        await t.http.get("/c/nope")
        await t.http.get("/v/nope")
        await t.http.get(f"/v/{prog.code}", headers={"user-agent": "curl/8.5.0"})
        metrics = await t.http.get("/metrics")
    assert (health.status_code, health.text) == (200, "ok\n")
    assert ready.status_code == 200
    assert ready.json() == {
        "ready": True,
        "degraded": False,
        "config_loaded": True,
        "redis": True,
        "spool_writable": True,
    }
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    lines = set(metrics.text.splitlines())
    assert {
        "# TYPE clickmint_requests_total counter",
        'clickmint_requests_total{route="c",outcome="ok"} 1',
        'clickmint_requests_total{route="c",outcome="unknown_link"} 1',
        'clickmint_requests_total{route="v",outcome="unknown_link"} 1',
        'clickmint_requests_total{route="v",outcome="ok"} 1',
        'clickmint_refusals_total{code="unknown_link"} 2',
        'clickmint_bot_events_total{reason="http_library"} 1',
        "clickmint_events_redis_total 2.0",
        "clickmint_events_spooled_total 0.0",
        "clickmint_redis_up 1.0",
        "clickmint_degraded 0.0",
        "# TYPE clickmint_bot_list_info gauge",
        f'clickmint_bot_list_info{{list="crawler-user-agents",version="{LIST_VERSION}"}} 1',
    } <= lines
