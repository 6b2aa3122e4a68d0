"""No open redirect and no header injection: whatever a visitor puts in ?url=, sub1..sub5 or source, the click
goes to the offer's host, and the only header it can influence is nowhere."""

from __future__ import annotations

from urllib.parse import parse_qs, quote, urlsplit

import asyncpg
import httpx
import pytest

from kernel.settings import Settings
from tests.factories import Programme, programme
from tests.http.tracker_client import Tracker, no_header_injection, running

DESTINATION = (
    "https://shop.example.com/landing?cid={click_id}&s1={sub1}&s2={sub2}&s3={sub3}&s4={sub4}&s5={sub5}&src={source}"
)
PARAMS = {"sub1": "s1", "sub2": "s2", "sub3": "s3", "sub4": "s4", "sub5": "s5", "source": "src"}

# Decoded values: what the visitor means; each goes in the query percent-encoded as a browser would send it.
PAYLOADS = [
    "//evil.example",
    "\\\\evil.example",
    "/\\evil.example",
    "%2F%2Fevil.example",
    "javascript:alert(1)",
    "JaVaScRiPt:alert(document.cookie)",
    "data:text/html,<script>alert(1)</script>",
    "https://evil.example",
    "http://evil.example/",
    "HTTPS://EVIL.EXAMPLE/",
    "https:evil.example",
    "https:/evil.example",
    "https:\\\\evil.example",
    "https://shop.example.com.evil.example",
    "https://shop.example.com@evil.example",
    "https://shop.example.com:443@evil.example/",
    "https://user:pass@evil.example/",
    "https://evil.example#@shop.example.com",
    "https://evil.example?@shop.example.com",
    "https://evil.example\\@shop.example.com",
    "https://evil.example/https://shop.example.com/",
    "https://evilshop.example.com/",
    "https://shop.example.com\t.evil.example/",
    "https://shop.example.com\x00.evil.example/",
    "https://sh\u043ep.example.com/",  # a Cyrillic o: another host under IDNA
    "https://shop\u3002example\u3002com.evil.example/",
    "https://[::1]/",
    "https://127.0.0.1/",
    "\r\nSet-Cookie:x=1",
    "https://shop.example.com/\r\nSet-Cookie:x=1",
    "https://shop.example.com/%0d%0aSet-Cookie:x=1\r\nLocation: https://evil.example",
    "x&cid=forged&s1=evil&url=https://evil.example",
    "{click_id}",
    "\u00e9\u65e5\U0001f600",
]

# Query strings sent exactly as written, for what a browser or a hand-made link may carry without encoding.
RAW_QUERIES = [
    "url=//evil.example",
    "url=%2F%2Fevil.example",
    "url=%252F%252Fevil.example",
    "url=\\\\evil.example",
    "url=/\\evil.example",
    "url=javascript:alert(1)",
    "url=https://evil.example",
    "url=https://shop.example.com.evil.example",
    "url=https://shop.example.com@evil.example",
    "url=https://shop.example.com%40evil.example",
    "url=%0d%0aSet-Cookie:x=1",
    "url=https://shop.example.com/%0d%0aSet-Cookie:x=1",
    "url=https://evil.example&url=https://shop.example.com/ok",
    "sub1=%0d%0aSet-Cookie:x=1",
    "sub1=%0D%0ALocation:%20https://evil.example",
    "source=%0d%0aSet-Cookie:x=1&sub5=%0aX-Evil:%201",
    "sub1=//evil.example&sub2=https://evil.example&sub3=javascript:alert(1)",
    "sub1=%E0%A4%A&sub2=%ff",  # not UTF-8: refused as a whole, never echoed
    "sub1=" + "%0d%0a" * 80,
]

# Deep links that stay on the offer's host: followed as the URI a browser would visit.
KEPT = [
    ("https://shop.example.com/p/1?ref=https://evil.example", "https://shop.example.com/p/1?ref=https://evil.example"),
    ("https://shop.example.com/%0d%0aSet-Cookie:x=1", "https://shop.example.com/%0d%0aSet-Cookie:x=1"),
    ("https://SHOP.example.com/case", "https://SHOP.example.com/case"),
    ("https://shop.example.com/@evil.example", "https://shop.example.com/@evil.example"),
    ("https://shop.example.com/\u00fcber", "https://shop.example.com/%C3%BCber"),
]


@pytest.fixture
async def prog(db: asyncpg.Connection) -> Programme:
    return await programme(db, destination=DESTINATION)


async def _click(t: Tracker, prog: Programme, query: str) -> tuple[httpx.Response, dict[str, list[str]], str]:
    response = await t.http.get(f"/c/{prog.code}?{query}")
    [event] = await t.shard_events(t.shard(prog.code))
    assert response.status_code == 302, response.text
    no_header_injection(response, prog.offer_id)
    location = response.headers["location"]
    parts = urlsplit(location)
    assert (parts.scheme, parts.netloc, parts.hostname) == ("https", "shop.example.com", "shop.example.com"), location
    assert parts.path == "/landing"
    assert all(32 < ord(c) < 127 for c in location), location
    click_id = event["click_id"]
    assert response.headers.get_list("set-cookie")[0].startswith(f"cm_{prog.offer_id}={click_id};")
    return response, parse_qs(parts.query, keep_blank_values=True), click_id


@pytest.mark.parametrize("payload", PAYLOADS)
async def test_deep_link_payloads_land_on_the_offer(settings: Settings, prog: Programme, payload: str) -> None:
    async with running(settings) as t:
        _, query, click_id = await _click(t, prog, "url=" + quote(payload, safe=""))
    assert query == {"cid": [click_id], "s1": [""], "s2": [""], "s3": [""], "s4": [""], "s5": [""], "src": [""]}


@pytest.mark.parametrize("payload", PAYLOADS)
async def test_sub_id_payloads_are_encoded_into_the_query(settings: Settings, prog: Programme, payload: str) -> None:
    encoded = quote(payload, safe="")
    async with running(settings) as t:
        _, query, click_id = await _click(t, prog, "&".join(f"{param}={encoded}" for param in PARAMS))
    assert query["cid"] == [click_id]  # a value cannot add or override a parameter
    assert {name: query[name] for name in PARAMS.values()} == {name: [payload] for name in PARAMS.values()}
    assert len(query) == 7 and all(len(values) == 1 for values in query.values())


@pytest.mark.parametrize("raw", RAW_QUERIES)
async def test_raw_query_payloads(settings: Settings, prog: Programme, raw: str) -> None:
    async with running(settings) as t:
        response, query, click_id = await _click(t, prog, raw)
    assert query["cid"] == [click_id]
    assert response.headers["location"].startswith(f"https://shop.example.com/landing?cid={click_id}&")


@pytest.mark.parametrize(("url", "location"), KEPT)
async def test_deep_links_on_the_offer_host_are_followed_safely(
    settings: Settings, prog: Programme, url: str, location: str
) -> None:
    async with running(settings) as t:
        response = await t.http.get(f"/c/{prog.code}?url=" + quote(url, safe=""))
    assert response.status_code == 302
    no_header_injection(response, prog.offer_id)
    assert response.headers["location"] == location
    assert urlsplit(location).hostname == "shop.example.com"


@pytest.mark.parametrize(
    "fallback",
    ["https://shop.example.com/sorry", "https://shop.example.com/sorry?x=1"],
)
@pytest.mark.parametrize("raw", ["url=https://evil.example", "sub1=%0d%0aSet-Cookie:x=1", "source=//evil.example"])
async def test_inactive_link_goes_to_the_stored_fallback_only(
    settings: Settings, db: asyncpg.Connection, fallback: str, raw: str
) -> None:
    inactive = await programme(db, destination=DESTINATION, partner_status="applied", fallback_url=fallback)
    async with running(settings) as t:
        response = await t.http.get(f"/c/{inactive.code}?{raw}")
    assert response.status_code == 302
    assert response.headers["location"] == fallback
    assert "set-cookie" not in response.headers
    no_header_injection(response, inactive.offer_id)
