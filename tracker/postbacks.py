"""Conversion routes: the image pixel /a/{offer}, server-to-server /postback, and TUNE's /aff_lsr.

Postbacks are authenticated per offer (HMAC over timestamp and body with replay refusal, or a
secret token plus an IP allowlist); a refused postback answers 4xx with a code and writes nothing.
A pixel always answers with its GIF; its refusal travels in a header and in a non-billable event.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import Send

from kernel import keys
from kernel.addresses import TrustedProxies, anonymize_ip
from kernel.plans import payout_estimate
from kernel.redis.resp import RedisUnavailable, pack
from tracker import caps, conversions
from tracker.conversions import Refusal
from tracker.endpoints import GIF, Hot
from tracker.ids import uuid7
from tracker.snapshot import Offer
from tracker.spool import SpoolError
from tracker.visit import Visit

MAX_BODY = 64 * 1024
REPLAY_WINDOW_S = 2 * conversions.SIGNATURE_TOLERANCE_S


async def _body(request: Request) -> bytes:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise Refusal("body_too_large", f"the body is larger than {MAX_BODY} bytes", 413)
        chunks.append(chunk)
    return b"".join(chunks)


def _params(request: Request, body: bytes) -> dict[str, Any]:
    """GET: the query; POST: a JSON object or a form."""
    if request.method == "GET":
        raw = request.scope.get("query_string", b"")
    else:
        raw = body
        if request.headers.get("content-type", "").split(";")[0].strip() == "application/json":
            try:
                parsed = orjson.loads(body)
            except orjson.JSONDecodeError:
                raise Refusal("invalid_json", "the body is not valid JSON (UTF-8)") from None
            if not isinstance(parsed, dict):
                raise Refusal("invalid_json", "the body must be a JSON object")
            return parsed
    return _form(raw)


def _query(request: Request) -> dict[str, Any]:
    """The query string's parameters whatever the method (TUNE templates put them there)."""
    return _form(request.scope.get("query_string", b""))


def _form(raw: bytes) -> dict[str, Any]:
    """URL-encoded pairs as a dict (first value wins); refuses oversized, non-UTF-8 or too many fields."""
    if len(raw) > MAX_BODY:
        raise Refusal("body_too_large", "the query is too long", 413)
    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, errors="strict", max_num_fields=64)
    except (UnicodeDecodeError, UnicodeEncodeError):
        raise Refusal("invalid_utf8", "the input is not valid UTF-8") from None
    except ValueError:
        raise Refusal("too_many_fields", "too many fields") from None
    params: dict[str, Any] = {}
    for key, value in pairs:
        params.setdefault(key, value)
    return params


class Conversions:
    """The conversion handlers of one tracker process."""

    def __init__(self, hot: Hot) -> None:
        self.hot = hot

    def _refused(self, code: str) -> None:
        self.hot.metrics.refusals[code] += 1

    async def _record(
        self, event: dict[str, Any], visit_ip: str, now: float, shard: int, offer: Offer | None = None
    ) -> dict[str, Any]:
        event["id"] = uuid7(int(now * 1000))
        event["ts"] = int(now * 1000)
        # a code-only sale has no country: the address is the merchant's server or the buyer's, not a click's
        event["country"] = "" if event.get("credited_by") == "coupon" else self.hot.geo.country(visit_ip)
        event["ip"] = anonymize_ip(visit_ip)
        checks: tuple[bytes, ...] = ()
        if offer is not None and offer.caps and event["type"] in ("action", "purchase") and "refusal" not in event:
            increments = {"conversions": 1, "payout": payout_estimate(offer.fee_plan, event, offer.currency)}
            cap = caps.check_command(self.hot.prefix, offer.id, event["partner"], offer.caps, increments, now)
            if cap is not None:
                checks = (pack(*cap),)
        await self.hot.recorder.record(shard, event, checks, _decide_cap if checks else None)
        return event

    def _shard(self, event: dict[str, Any]) -> int:
        """A conversion goes to its link's shard (its clicks' order); a coupon's without a link to shard 0."""
        link = self.hot.cache.snapshot.links_by_id.get(event.get("link") or 0)
        return link.shard if link is not None else 0

    def _authenticate(
        self, request: Request, offer: Offer, params: dict[str, Any], body: bytes, client_ip: str, now: int
    ) -> str | None:
        """Check the offer's postback security; returns the signature to spend as a nonce (HMAC mode)."""
        if offer.postback_security == "token":
            token = params.get("token") or request.headers.get("x-clickmint-token", "")
            conversions.check_token(offer, str(token), client_ip)
            return None
        signed = body if request.method == "POST" else request.scope.get("query_string", b"")
        return conversions.check_signature(
            offer,
            request.headers.get("x-clickmint-timestamp", ""),
            request.headers.get("x-clickmint-signature", ""),
            signed,
            now,
        )

    async def _spend(self, offer: Offer, nonce: str) -> None:
        """A signed postback is accepted once: the nonce is spent only when everything else was valid."""
        key = keys.seen_key(self.hot.prefix, offer.id, nonce)
        try:
            reply = await self.hot.recorder.command(pack(b"SET", key, b"1", b"NX", b"EX", REPLAY_WINDOW_S))
        except RedisUnavailable:
            raise Refusal("try_again", "cannot check for replays right now; retry", 503) from None
        if reply[0] is None:
            raise Refusal("replayed", "this signed postback was already received", 409)

    async def postback(self, request: Request) -> Response:
        """Server-to-server conversion: JSON or form POST, or GET; authenticated per offer."""
        now = time.time()
        client_ip = _client_ip(request, self.hot.settings.proxies)
        try:
            body = await _body(request) if request.method == "POST" else b""
            params = _params(request, body)
            snapshot = self.hot.cache.snapshot
            offer = conversions.offer_of(snapshot, str(params.get("offer_id", "")))
            nonce = self._authenticate(request, offer, params, body, client_ip, int(now))
            coupon = conversions._text(params, "coupon")
            click_id = conversions._text(params, "click_id", required=not coupon)
            credit = conversions.credit(self.hot.signer, snapshot, offer, click_id, "click", coupon, now)
            event = conversions.build(params, offer, credit, coupon)
            conversions.check_source(offer, "postback", event)
            if nonce is not None:
                await self._spend(offer, nonce)
        except Refusal as refusal:
            self._refused(refusal.code)
            return JSONResponse({"error": refusal.code, "detail": refusal.detail}, status_code=refusal.status)
        event["via"] = "postback"
        event["auth"] = "signature" if nonce is not None else "token"
        try:
            await self._record(event, client_ip, now, self._shard(event), offer)
        except SpoolError:  # nowhere durable: the merchant retries later
            self._refused("not_recorded")
            return JSONResponse(
                {"error": "not_recorded", "detail": "the conversion could not be recorded right now; retry later"},
                status_code=503,
                headers={"retry-after": "30"},
            )
        status = "over_cap" if event.get("over_cap") else "accepted"
        return JSONResponse({"status": status, "event_id": event["id"], "type": event["type"]})

    async def tune(self, request: Request) -> Response:
        """TUNE's /aff_lsr: offer_id (else found from transaction_id), transaction_id, amount, adv_sub,
        security_token -> success=true;"""
        now = time.time()
        client_ip = _client_ip(request, self.hot.settings.proxies)
        try:
            body = await _body(request) if request.method == "POST" else b""
            raw = _params(request, b"") if request.method == "GET" or not body else _params(request, body)
            if request.method == "POST" and request.scope.get("query_string"):  # TUNE posts with the query string
                raw = {**raw, **_query(request)}
            snapshot = self.hot.cache.snapshot
            coupon = conversions._text(raw, "promo_code")
            if raw.get("offer_id") in (None, ""):  # the signed transaction id names its link, hence its offer
                click_id = conversions._text(raw, "transaction_id", required=True)
                offer = conversions.offer_of_click(self.hot.signer, snapshot, click_id, int(now))
            else:
                offer = conversions.offer_of(snapshot, str(raw["offer_id"]))
            conversions.check_tune_token(offer, str(raw.get("security_token", "")), client_ip)
            click_id = conversions._text(raw, "transaction_id", required=not coupon)
            credit = conversions.credit(self.hot.signer, snapshot, offer, click_id, "click", coupon, now)
            params = {  # without goal_name, the action is named as the pixel names it ("lead")
                "order_id": raw.get("adv_sub", ""),
                "amount": raw.get("amount", ""),
                "currency": raw.get("currency", ""),
                "action": raw.get("goal_name", ""),
            }
            event = conversions.build(params, offer, credit, coupon)
            conversions.check_source(offer, "tune", event)
        except Refusal as refusal:
            self._refused(refusal.code)
            return PlainTextResponse(f"success=false; err_msg={refusal.code}: {refusal.detail};")
        event["via"] = "tune"
        event["auth"] = "token"
        try:
            await self._record(event, client_ip, now, self._shard(event), offer)
        except SpoolError:
            self._refused("not_recorded")
            return PlainTextResponse("success=false; err_msg=not_recorded: retry later;", status_code=503)
        return PlainTextResponse("success=true;")

    async def pixel(self, visit: Visit, raw_offer: str, send: Send) -> str:
        """The image pixel: attributed by click id, else by our first-party cookie; always a GIF."""
        now = time.time()
        snapshot = self.hot.cache.snapshot
        headers = [(b"content-type", b"image/gif"), (b"cache-control", b"no-store, max-age=0")]
        refusal: Refusal | None = None
        event: dict[str, Any] | None = None
        shard = 0
        capped: Offer | None = None
        try:
            if visit.query_error:
                raise Refusal(visit.query_error, "the query string is refused")
            offer = conversions.offer_of(snapshot, raw_offer)
            click_id = visit.query.get("click_id") or visit.cookie(f"cm_{offer.id}") or ""
            via = "pixel" if visit.query.get("click_id") else "cookie"
            coupon = visit.query.get("coupon") or ""
            if not click_id and not coupon:
                raise Refusal("missing_click_id", "no click id, tracking cookie or coupon")
            try:
                if visit.method == "HEAD":  # answered, never billed (link checkers, prefetchers)
                    raise Refusal("head_request", "a HEAD request is never a conversion")
                coupon = conversions._text(visit.query, "coupon")
                by = "click" if via == "pixel" else "cookie"
                credit = conversions.credit(self.hot.signer, snapshot, offer, click_id, by, coupon, now)
                event = conversions.build(visit.query, offer, credit, coupon)
                if credit.by == "coupon":
                    via = "pixel"  # the code came in the pixel's query, not from the cookie
                conversions.check_source(offer, via, event)  # a pixel proves nothing about who fired it
                event["via"] = via
                event["auth"] = "none"
                shard, capped = self._shard(event), offer
            except Refusal as inner:
                refusal = inner
                event = {
                    "type": "action",
                    "offer": offer.id,
                    "click_id": click_id[:64] if click_id else "",
                    "refusal": inner.code,
                    "via": via,
                    "auth": "none",
                }
        except Refusal as outer:
            refusal = outer
        if event is not None:
            try:
                await self._record(event, visit.client_ip, now, shard, capped)
            except SpoolError:  # Redis down and the spool full: a pixel still answers with its image
                refusal = Refusal("not_recorded", "the conversion could not be recorded; counted as lost")
            if event.get("over_cap"):
                headers.append((b"x-clickmint-status", b"over_cap"))
        if refusal is not None:  # counted by the dispatcher from the returned outcome
            headers.append((b"x-clickmint-refusal", refusal.code.encode()))
        headers.append((b"content-length", str(len(GIF)).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": GIF})
        return refusal.code if refusal else "ok"


def _decide_cap(event: dict[str, Any], replies: list[Any] | None) -> None:
    """Over cap when the script says 0; recorded, and billing rejects it with that reason."""
    if replies is None or replies[0] not in (0, 1):
        event["degraded"] = True
    elif replies[0] == 0:
        event["over_cap"] = True


def _client_ip(request: Request, proxies: TrustedProxies) -> str:
    peer = request.client.host if request.client else ""
    if not proxies.any:
        return peer
    return proxies.client(peer, request.headers.getlist(proxies.header))
