"""The tracker in-process over httpx.ASGITransport, with real Redis and PostgreSQL, and readers of what it wrote."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import redis.asyncio as aioredis

from kernel.env import Env
from kernel.events import decode
from kernel.settings import Settings
from kernel.signature import sign
from tests.contract import check_entry
from tests.helpers import METRICS_AUTH, TRACKER_TEST_ENV
from tracker.app import TrackerApp, signer_for
from tracker.clickids import ClickIdSigner, derive_key
from tracker.settings import TrackerSettings

BROWSER_UA = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
CLIENT_IP = "203.0.113.77"
BASE_URL = "http://track.test"
# A generous batch budget: a slow test machine must not divert events to the spool, where XRANGE cannot see them.
_ENV = {"CLICKMINT_REDIS_BUDGET_MS": "5000", **TRACKER_TEST_ENV}


class Tracker:
    """A started TrackerApp, an HTTP client on it, and a Redis client to read its streams back."""

    def __init__(self, app: TrackerApp, settings: Settings, redis: aioredis.Redis, http: httpx.AsyncClient) -> None:
        self.app = app
        self.settings = settings
        self.redis = redis
        self.http = http
        self.prefix = settings.key_prefix

    @property
    def signer(self) -> ClickIdSigner:
        """A signer with the tracker's own key: click ids as /c/ issues them."""
        return signer_for(self.settings.secret_key)

    def shard(self, code: str) -> int:
        return self.app.cache.snapshot.links[code].shard

    def client(self, ip: str = CLIENT_IP, base_url: str = BASE_URL, **headers: str) -> httpx.AsyncClient:
        """Another client on the same app: another peer address, scheme or default headers."""
        transport = httpx.ASGITransport(app=self.app, client=(ip, 5000))
        return httpx.AsyncClient(
            transport=transport, base_url=base_url, headers={"user-agent": BROWSER_UA, **METRICS_AUTH, **headers}
        )

    async def stream_keys(self) -> list[bytes]:
        return sorted([key async for key in self.redis.scan_iter(match=f"{self.prefix}:events:*", count=1000)])

    async def written(self) -> tuple[int, int, int]:
        """(entries in every event stream of the prefix, events the recorder put in Redis, events it spooled)."""
        total = 0
        for key in await self.stream_keys():
            total += await self.redis.xlen(key)
        stats = self.app.recorder.stats
        return total, stats.events_redis, stats.events_spooled

    async def events(self) -> list[dict[str, Any]]:
        """Every event in every stream of the prefix, oldest first; each checked against the stream contract."""
        found: list[tuple[tuple[int, int], dict[str, Any]]] = []
        for key in await self.stream_keys():
            for entry_id, fields in await self.redis.xrange(key):
                check_entry(fields)
                ms, seq = entry_id.split(b"-")
                found.append(((int(ms), int(seq)), decode(fields)))
        return [event for _, event in sorted(found, key=lambda pair: pair[0])]

    async def shard_events(self, shard: int) -> list[dict[str, Any]]:
        """The events of one shard's stream, in stream order."""
        key = f"{self.prefix}:events:{{{shard}}}"
        entries = [fields for _, fields in await self.redis.xrange(key)]
        for fields in entries:
            check_entry(fields)
        return [decode(fields) for fields in entries]


@contextlib.asynccontextmanager
async def running(settings: Settings, env: dict[str, str] | None = None) -> AsyncIterator[Tracker]:
    """Start a tracker (lifespan included) on the session's servers; `env` adds CLICKMINT_* settings."""
    assert settings.redis_url is not None
    app = TrackerApp(TrackerSettings.from_env(Env({**_ENV, **(env or {})}), core=settings))
    async with app.lifespan(app.cold):
        redis = aioredis.Redis.from_url(settings.redis_url)
        transport = httpx.ASGITransport(app=app, client=(CLIENT_IP, 5000))
        try:
            async with httpx.AsyncClient(
                transport=transport, base_url=BASE_URL, headers={"user-agent": BROWSER_UA, **METRICS_AUTH}
            ) as http:
                yield Tracker(app, settings, redis, http)
        finally:
            await redis.aclose()


def no_header_injection(response: httpx.Response, offer_id: int) -> None:
    """No header carries CR or LF, and the only Set-Cookie (if any) is our click cookie."""
    for name, value in response.headers.raw:
        assert b"\r" not in name + value and b"\n" not in name + value, (name, value)
    cookies = response.headers.get_list("set-cookie")
    assert len(cookies) <= 1, cookies
    for cookie in cookies:
        assert cookie.startswith(f"cm_{offer_id}="), cookie


@dataclass
class Req:
    """One request to replay exactly: a signed body must go out byte for byte."""

    method: str
    url: str
    content: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


async def send(http: httpx.AsyncClient, req: Req) -> httpx.Response:
    return await http.request(req.method, req.url, content=req.content or None, headers=req.headers)


async def assert_refused(t: Tracker, http: httpx.AsyncClient, req: Req, status: int, code: str) -> None:
    """The refusal contract: status, a JSON body {"error": code, "detail": words}, nothing in any stream or spool."""
    before = await t.written()
    response = await send(http, req)
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "detail"} and body["error"] == code, body
    assert isinstance(body["detail"], str) and body["detail"]
    assert await t.written() == before


def signed_headers(secret: str, body: bytes, skew: int = 0) -> dict[str, str]:
    """The HMAC headers a merchant sends, with its clock `skew` seconds off ours."""
    ts = int(time.time()) + skew
    return {"x-clickmint-timestamp": str(ts), "x-clickmint-signature": sign(secret, ts, body)}


def flip(click_id: str) -> str:
    """The click id with one character of its body changed: well-formed, but the signature no longer matches."""
    middle = len(click_id) // 2
    return click_id[:middle] + ("B" if click_id[middle] != "B" else "C") + click_id[middle + 1 :]


def forge(link_id: int) -> str:
    """A well-formed click id signed with a key the tracker does not hold."""
    return ClickIdSigner({1: derive_key("another-secret-" + "y" * 40, 1)}, 1).issue(link_id, int(time.time()))
