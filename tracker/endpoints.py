"""Hot-path handlers as plain ASGI callables: clicks (302), view pixels (GIF) and banners.

Each handler turns a request into an event, hands it to the recorder, and answers once the event
is durable. Starlette's routing costs ~27 µs a request, so these routes are dispatched by prefix in
app.py and only the cold routes go through Starlette.
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

from kernel import keys
from kernel.addresses import anonymize_ip
from kernel.macros import Template, is_safe_location, safe_deep_link
from tracker.bots import classify
from tracker.clickids import ClickIdError, ClickIdSigner
from tracker.config import ConfigCache
from tracker.crawlers import LIST_VERSION
from tracker.geo import GeoLookup
from tracker.ids import uuid7
from tracker.leases import OVER, Block, CapLeases
from tracker.metrics import Metrics
from tracker.recorder import Recorder
from tracker.settings import TrackerSettings
from tracker.smartlinks import choose
from tracker.snapshot import Link, Snapshot
from tracker.visit import Visit, referrer_host

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
_NO_BODY = (b"content-length", b"0")
_GIF_HEADERS = [(b"content-type", b"image/gif"), (b"content-length", str(len(GIF)).encode()), _NO_STORE]
_PER_CLICK = ("click_id", *SUBS, "source")  # the macros whose values the click's event holds
_NO_SUBS = dict.fromkeys((*SUBS, "source"), "")


class _Plan(NamedTuple):
    """What every click of one link reuses: bytes of its uniqueness key and cookie, its template with ids bound."""

    link: Link
    unique_prefix: bytes  # {prefix}:uniq:{shard}:{link}: then the visitor
    cookie_head: bytes  # cm_{offer}= then the click id
    cookie_tail: bytes  # ; Max-Age=...; Path=/; HttpOnly; SameSite=Lax
    cookie_tail_secure: bytes  # the same and ; Secure
    destination: Template  # the offer's destination with the link's partner, offer and link ids filled in


class _ClickCaps(NamedTuple):
    """A link's click cap block for one UTC day: its keys name the day."""

    day: int  # days since the epoch, UTC
    link: Link  # the link object it was found for: a reload makes a new one
    block: Block | None  # None: none of the offer's caps counts clicks


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
        metrics.info["bot_list_info"] = {"list": "crawler-user-agents", "version": LIST_VERSION}
        self.visitor_key = settings.core.secret_key.encode()
        self.prefix = settings.core.key_prefix
        self.cookie_flags = b"; Path=/; HttpOnly; SameSite=Lax"
        self._plans: dict[int, _Plan] = {}  # link id -> what its clicks reuse, for the snapshot below
        self._plans_of: Snapshot | None = None
        # link id -> the cap lease block its clicks take from: the same all day
        self._click_caps: dict[int, _ClickCaps] = {}
        self.leases = CapLeases(recorder, self.prefix, settings.cap_lease_ms, settings.cap_block_max)
        recorder.leases = self.leases

    def bot_reason(self, visit: Visit) -> str | None:
        """The verdict on the request itself (its method, headers and user agent); bursts are Redis's."""
        reason = classify(visit.method, visit.user_agent, visit.purpose)
        if reason is not None:
            self.metrics.bots[reason] += 1
        return reason

    async def _record_hit(self, link: Link, visit: Visit, event: dict[str, Any]) -> None:
        """Record a view or an inactive link's click: a person's hit is counted towards its address's bursts."""
        burst = visit.address(self.visitor_key).encode() if event["bot"] is None else None
        await self.recorder.record(link.shard, event, burst=burst)
        if burst is not None and event["bot"] == "burst":
            self.metrics.bots["burst"] += 1

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

    def _plan(self, snapshot: Snapshot, link: Link) -> _Plan:
        """The per-link bytes and template a click reuses; rebuilt when the configuration changes."""
        if snapshot is not self._plans_of:
            self._plans, self._plans_of = {}, snapshot
            self._click_caps = {}
        plan = self._plans.get(link.id)
        if plan is None or plan.link is not link:
            offer = link.offer
            tail = f"; Max-Age={offer.window_s}".encode() + self.cookie_flags
            plan = self._plans[link.id] = _Plan(
                link,
                keys.unique_prefix(self.prefix, link.shard, link.id).encode(),
                f"cm_{offer.id}=".encode(),
                tail,
                tail + b"; Secure",
                offer.destination.bind(link.ids),
            )
        return plan

    async def click(self, visit: Visit, code: str, send: Send) -> str:
        """302 to the offer's destination with macros filled, a signed click id and its cookie."""
        snapshot = self.cache.snapshot
        link = snapshot.links.get(code)
        if link is None:
            await _respond(send, 404, [(b"content-type", b"text/html; charset=utf-8"), _NO_STORE], NOT_FOUND_PAGE)
            return "unknown_link"
        if not link.active:
            return await self._inactive_click(visit, link, send)
        # The hot path, written out flat: every call and temporary here costs on each of thousands of clicks a second.
        now = time.time()
        ip = visit.client_ip
        country = self.geo.country(ip)
        smart = link.smart
        smart_id = link.id
        variant = None
        if smart is not None:  # a smart link: its rules pick the destination (tracker/smartlinks.py)
            variant = choose(smart, country, visit.user_agent, visit.accept_language, int(now))
            if variant is not None and variant.link_id is not None:
                target = snapshot.links_by_id.get(variant.link_id)
                if target is not None and target.active:
                    link = target  # another offer: the click is that link's, the smart link named in the event
        plan = self._plan(snapshot, link)
        now_ms = int(now * 1000)
        offer = link.offer
        bot = classify(visit.method, visit.user_agent, visit.purpose)
        if bot is not None:
            self.metrics.bots[bot] += 1
        click_id = self.signer.issue(link.id, int(now))
        query = visit.query
        event: dict[str, Any]
        if visit.query_error is None:
            get = query.get
            event = {
                "id": uuid7(now_ms),
                "ts": now_ms,
                "type": "click",
                "link": link.id,
                "partner": link.partner_id,
                "offer": offer.id,
                "country": country,
                "ip": anonymize_ip(ip),
                "ua": visit.user_agent,
                "bot": bot,
                "sub1": get("sub1", ""),
                "sub2": get("sub2", ""),
                "sub3": get("sub3", ""),
                "sub4": get("sub4", ""),
                "sub5": get("sub5", ""),
                "source": get("source", ""),
                "click_id": click_id,
            }
        else:
            event = self.base_event("click", link, visit, now_ms, bot)
            event["refusal"] = visit.query_error
            event.update(_NO_SUBS)
            event["click_id"] = click_id
            query = {}
        if smart is not None:
            event["smart"] = smart_id
            event["variant"] = variant.name if variant is not None else ""
        if offer.record_referrer and visit.referer:
            event["referrer"] = referrer_host(visit.referer)
        unique: tuple[bytes, int] | None = None
        within: bool | None = None
        burst: bytes | None = None
        block: Block | None = None
        lease: bytes | None = None
        if bot is None:  # Redis decides the rest as it appends the click: burst, uniqueness
            unique = (plan.unique_prefix + visit.visitor(self.visitor_key).encode(), offer.window_s)
            burst = visit.address(self.visitor_key).encode()
            if offer.caps and (block := self._click_block(link, now)) is not None:
                lease = await self.leases.admit(block)  # from this process's block of the caps, in memory
                if lease is None:  # Redis could not say: let it through, flagged
                    event["degraded"] = True
                else:
                    within = lease != OVER
                    if not within:  # over cap: the fallback offer, no click id, no cookie
                        event["over_cap"] = True
                        event["refusal"] = "over_cap"
                        del event["click_id"]
        else:
            event["unique"] = False
        await self.recorder.record(link.shard, event, (), None, unique, within, burst)
        if burst is not None and event["bot"] == "burst":
            self.metrics.bots["burst"] += 1
            if within:  # bursts never use up a cap: the unit goes back to the block
                self.leases.give_back(block, lease)  # type: ignore[arg-type]
        if "over_cap" in event:  # the cap was hit: the fallback offer, no click id, no cookie
            await self._redirect(send, offer.fallback_url or offer.destination.render(link.ids), None, visit)
            return "over_cap"
        values = event
        first = None
        if offer.attribution_model == "first_click" and (first := self._first_click(visit, link)) is not None:
            # first click wins: the landing page and the cookie keep the visitor's first click id in the window
            event["first_click"] = first
            values = {**event, "click_id": first}
        location = None
        checked = False
        if variant is not None and variant.template is not None:  # a URL variant on the offer's allowed hosts
            location = variant.template.render(values)  # macros after the path only: the checked origin stays
            checked = variant.template.fixed_origin
        elif "url" in query:
            location = safe_deep_link(query["url"], offer.allowed_hosts)
            if location is not None and "{" in location:  # a deep link may carry macros too, e.g. ?cid={click_id}
                location = _render_deep_link(location, {**link.ids, **{name: values[name] for name in _PER_CLICK}})
        if location is None:
            location = plan.destination.render(values)  # the link's ids are bound; the rest are the event's
            checked = offer.destination.fixed_origin
        if not checked and not is_safe_location(location):  # a last line of defence: never a foreign Location
            await _respond(send, 404, [(b"content-type", b"text/html; charset=utf-8"), _NO_STORE], NOT_FOUND_PAGE)
            return "unsafe_destination"
        headers = [(b"location", location.encode("ascii", "strict")), _NO_STORE, _NO_BODY]
        if first is None:
            cookie = (
                plan.cookie_head + click_id.encode() + (plan.cookie_tail_secure if visit.https else plan.cookie_tail)
            )
            headers.append((b"set-cookie", cookie))
        await send({"type": "http.response.start", "status": 302, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
        return "ok"

    def _first_click(self, visit: Visit, link: Link) -> str | None:
        """The click id in the visitor's cookie for this offer when it is still valid (signature, window, offer)."""
        offer = link.offer
        token = visit.cookie(f"cm_{offer.id}")
        if not token:
            return None
        try:
            click = self.signer.verify(token, int(time.time()), offer.window_s)
        except ClickIdError:
            return None
        first = self.cache.snapshot.links_by_id.get(click.link_id)
        return token if first is not None and first.offer.id == offer.id else None

    def _click_block(self, link: Link, now: float) -> Block | None:
        """The cap lease block a click of this link takes from; found once a UTC day and per loaded link."""
        day = int(now) // 86400
        cached = self._click_caps.get(link.id)
        if cached is None or cached.day != day or cached.link is not link or (cached.block and cached.block.retired):
            # a new day, a reloaded configuration, or a block given back when it was idle
            block = self.leases.block(link.offer.id, link.partner_id, link.offer.caps, now)
            cached = self._click_caps[link.id] = _ClickCaps(day, link, block)
        return cached.block

    async def _inactive_click(self, visit: Visit, link: Link, send: Send) -> str:
        """An inactive link still redirects (to the fallback or the offer), recorded as refused, never unique."""
        now = time.time()
        offer = link.offer
        event = self.base_event("click", link, visit, int(now * 1000), self.bot_reason(visit))
        if visit.query_error:
            event["refusal"] = visit.query_error
            event.update(_NO_SUBS)
        else:
            get = visit.query.get
            for name in SUBS:
                event[name] = get(name, "")
            event["source"] = get("source", "")
        event["refusal"] = "link_inactive"
        event["unique"] = False
        await self._record_hit(link, visit, event)
        await self._redirect(send, offer.fallback_url or offer.destination.render(link.ids), None, visit)
        return "link_inactive"

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
        event = self.base_event("view", link, visit, int(now * 1000), self.bot_reason(visit))
        if banner and creative is None:
            event["refusal"] = "no_creative"
        elif not link.active:
            event["refusal"] = "link_inactive"
        await self._record_hit(link, visit, event)
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


async def _respond(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
