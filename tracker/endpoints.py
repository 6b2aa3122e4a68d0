"""Hot-path handlers as plain ASGI callables: clicks (302), view pixels (GIF) and banners.

Each handler turns a request into an event, hands it to the recorder, and answers once the event
is durable. Starlette's routing costs ~27 µs a request, so these routes are dispatched by prefix in
app.py and only the cold routes go through Starlette.
"""

from __future__ import annotations

import time
from typing import Any

from tracker import caps
from tracker.bots import BurstDetector, classify
from tracker.clickids import ClickIdSigner
from tracker.config import ConfigCache, Link
from tracker.geo import GeoLookup, anonymize_ip
from tracker.ids import uuid7
from tracker.macros import Template, is_safe_location, safe_deep_link
from tracker.metrics import Metrics
from tracker.recorder import Recorder
from tracker.settings import TrackerSettings
from tracker.streams import pack
from tracker.visit import Visit

Send = Any
SUBS = ("sub1", "sub2", "sub3", "sub4", "sub5")
GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
NOT_FOUND_PAGE = (
    b"<!doctype html><html lang=en><meta charset=utf-8><title>Link not found</title>"
    b"<body style='font-family:sans-serif;margin:4em'><h1>This link does not exist</h1>"
    b"<p>The tracking link you followed is unknown or has been removed.</p></body></html>"
)
_NO_STORE = (b"cache-control", b"no-store, max-age=0")
_GIF_HEADERS = [(b"content-type", b"image/gif"), (b"content-length", str(len(GIF)).encode()), _NO_STORE]


class Hot:
    """The state the hot-path handlers share in one tracker process."""

    def __init__(
        self,
        settings: TrackerSettings,
        cache: ConfigCache,
        recorder: Recorder,
        signer: ClickIdSigner,
        geo: GeoLookup,
        metrics: Metrics,
    ) -> None:
        self.settings = settings
        self.cache = cache
        self.recorder = recorder
        self.signer = signer
        self.geo = geo
        self.metrics = metrics
        self.bursts = BurstDetector(settings.burst_limit, float(settings.burst_window_s))
        self.visitor_key = settings.core.secret_key.encode()
        self.prefix = settings.core.key_prefix
        self.cookie_flags = b"; Path=/; HttpOnly; SameSite=Lax"

    def bot_reason(self, visit: Visit, now: float) -> str | None:
        reason = classify(visit.method, visit.user_agent, visit.purpose)
        if reason is None and self.bursts.hit(visit.visitor(self.visitor_key), now):
            reason = "burst"
        if reason is not None:
            self.metrics.bots[reason] += 1
        return reason

    def base_event(self, kind: str, link: Link, visit: Visit, now_ms: int, bot: str | None) -> dict[str, Any]:
        return {
            "id": uuid7(now_ms),
            "ts": now_ms,
            "type": kind,
            "link": link.id,
            "partner": link.partner_id,
            "offer": link.offer.id,
            "country": self.geo.country(visit.client_ip),
            "ip": anonymize_ip(visit.client_ip),
            "ua": visit.user_agent,
            "bot": bot,
        }

    async def click(self, visit: Visit, code: str, send: Send) -> str:
        """302 to the offer's destination with macros filled, a signed click id and its cookie."""
        link = self.cache.snapshot.links.get(code)
        if link is None:
            await _respond(send, 404, [(b"content-type", b"text/html; charset=utf-8"), _NO_STORE], NOT_FOUND_PAGE)
            return "unknown_link"
        now = time.time()
        now_ms = int(now * 1000)
        offer = link.offer
        bot = self.bot_reason(visit, now)
        event = self.base_event("click", link, visit, now_ms, bot)
        query = visit.query
        if visit.query_error:
            event["refusal"] = visit.query_error
            query = {}
        for name in SUBS:
            event[name] = query.get(name, "")
        event["source"] = query.get("source", "")
        if not link.active:
            event["refusal"] = "link_inactive"
            event["unique"] = False
            await self.recorder.record(link.shard, event)
            await self._redirect(send, offer.fallback_url or offer.destination.render(link.ids), None, visit)
            return "link_inactive"
        click_id = self.signer.issue(link.id, int(now))
        event["click_id"] = click_id
        checks: tuple[bytes, ...] = ()
        unique: tuple[bytes, int] | None = None
        if bot is None:
            visitor = visit.visitor(self.visitor_key)
            unique = (f"{self.prefix}:uniq:{{{link.shard}}}:{link.id}:{visitor}".encode(), offer.window_s)
            if offer.caps:
                cap = caps.check_command(self.prefix, offer.id, link.partner_id, offer.caps, {"clicks": 1}, now)
                if cap is not None:
                    checks = (pack(*cap),)
        else:
            event["unique"] = False
        await self.recorder.record(link.shard, event, checks, _decide_cap if checks else None, unique)
        if event.get("over_cap"):  # the cap was hit: the fallback offer, no click id, no cookie
            await self._redirect(send, offer.fallback_url or offer.destination.render(link.ids), None, visit)
            return "over_cap"
        values = dict(link.ids)
        values["click_id"] = click_id
        for name in SUBS:
            values[name] = event[name]
        values["source"] = event["source"]
        location = safe_deep_link(query.get("url"), offer.allowed_hosts) if "url" in query else None
        if location is not None and "{" in location:  # a deep link may carry macros too, e.g. ?cid={click_id}
            location = _render_deep_link(location, values)
        checked = False
        if location is None:
            location = offer.destination.render(values)
            checked = offer.destination.fixed_origin
        cookie = f"cm_{offer.id}={click_id}; Max-Age={offer.window_s}".encode() + self.cookie_flags
        if visit.https:
            cookie += b"; Secure"
        return await self._redirect(send, location, cookie, visit, checked)

    async def _redirect(
        self, send: Send, location: str, cookie: bytes | None, visit: Visit, checked: bool = False
    ) -> str:
        if not checked and not is_safe_location(location):  # a last line of defence: never a foreign or broken Location
            await _respond(send, 404, [(b"content-type", b"text/html; charset=utf-8"), _NO_STORE], NOT_FOUND_PAGE)
            return "unsafe_destination"
        headers = [(b"location", location.encode("ascii", "strict")), _NO_STORE, (b"content-length", b"0")]
        if cookie is not None:
            headers.append((b"set-cookie", cookie))
        await _respond(send, 302, headers, b"")
        return "ok"

    async def view(self, visit: Visit, code: str, send: Send, banner: bool) -> str:
        """A view pixel or the banner itself; a pixel always answers with its image."""
        link = self.cache.snapshot.links.get(code)
        creative = link.creative if link is not None else None
        if banner and creative is not None:
            headers = [
                (b"content-type", creative.content_type.encode()),
                (b"etag", creative.etag),
                (b"cache-control", b"private, no-cache"),
                (b"content-length", str(len(creative.body)).encode()),
            ]
            body = creative.body
        else:
            headers, body = list(_GIF_HEADERS), GIF
        if link is None:
            headers.append((b"x-clickmint-refusal", b"unknown_link"))
            await _respond(send, 200, headers, body)
            return "unknown_link"
        now = time.time()
        event = self.base_event("view", link, visit, int(now * 1000), self.bot_reason(visit, now))
        if banner and creative is None:
            event["refusal"] = "no_creative"
        elif not link.active:
            event["refusal"] = "link_inactive"
        await self.recorder.record(link.shard, event)
        if "refusal" in event:
            headers.append((b"x-clickmint-refusal", event["refusal"].encode()))
        if banner and creative is not None and visit.if_none_match == creative.etag:
            # The browser revalidates its cached banner: still a view, answered without the bytes.
            await _respond(send, 304, [(b"etag", creative.etag), (b"cache-control", b"private, no-cache")], b"")
        else:
            await _respond(send, 200, headers, body if visit.method != "HEAD" else b"")
        return event.get("refusal", "ok")


def _render_deep_link(url: str, values: dict[str, str]) -> str | None:
    try:
        return Template(url).render(values)
    except ValueError:
        return None


def _decide_cap(event: dict[str, Any], replies: list[Any] | None) -> None:
    """Over cap when the cap script says 0: the click goes to the fallback and carries no click id."""
    if replies is None or replies[0] not in (0, 1):  # Redis could not say: let it through, billing re-checks
        event["degraded"] = True
    elif replies[0] == 0:
        event["over_cap"] = True
        event["refusal"] = "over_cap"
        del event["click_id"]


async def _respond(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
