"""Loyalty's JSON API: the shop's checkout (member, reserve, confirm, release) and the member's signed view.

Checkout routes take an API key with the `loyalty` scope of one of the merchant's operators (the merchant
comes from the key, never from the request) and an `Idempotency-Key` header on every POST: the first
answer is stored with a hash of the request and replayed for the same key and body; the same key with
another body answers 409 `idempotency_key_reused`. A refused request stores nothing, so it can be retried.
The member's view is public but signed: /api/v1/loyalty/member?token=... (see member_token).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from billing.public import loyalty_ledger as ledger
from billing.public import loyalty_redeem as redeem
from billing.public import loyalty_referral
from kernel.loyalty_rules import LoyaltyError, Programme
from portal import auth
from portal.api import client_key, error_response, json_response
from portal.errors import ApiError

PREFIX = "/api/v1/loyalty"
MAX_BODY = 16_384
_CUSTOMER_MAX = 255


def member_token(secret: str, merchant_id: int, customer: str, expires: dt.datetime) -> str:
    """The signed id of a member's view: merchant, customer (base64url), expiry (unix seconds), HMAC-SHA256
    with the programme's link secret (truncated to 32 hex digits). A shop can make it itself the same way."""
    name = base64.urlsafe_b64encode(customer.encode()).decode().rstrip("=")
    body = f"{merchant_id}.{name}.{int(expires.timestamp())}"
    return f"{body}.{hmac.new(secret.encode(), body.encode(), hashlib.sha256).hexdigest()[:32]}"


async def read_token(conn: asyncpg.Connection, token: str, now: dt.datetime) -> tuple[Programme, str]:
    parts = token.split(".")
    refused = LoyaltyError("invalid_token", "this member link is invalid or has expired", 404)
    if len(parts) != 4 or not parts[0].isdigit() or not parts[2].isdigit() or len(token) > 1000:
        raise refused
    row = await conn.fetchrow(
        "SELECT link_secret FROM loyalty_programmes WHERE merchant_id = $1 AND enabled", int(parts[0])
    )
    if row is None:
        raise refused
    body = ".".join(parts[:3])
    expected = hmac.new(row["link_secret"].encode(), body.encode(), hashlib.sha256).hexdigest()[:32]
    if not hmac.compare_digest(expected, parts[3]) or int(parts[2]) < now.timestamp():
        raise refused
    try:
        customer = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)).decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise refused from exc
    return await ledger.programme_of(conn, int(parts[0])), customer


def _error(exc: LoyaltyError | ApiError) -> Response:
    if isinstance(exc, LoyaltyError):
        exc = ApiError(exc.status, exc.code, exc.detail)
    return error_response(exc)


async def _principal(request: Request, conn: asyncpg.Connection) -> auth.Principal:
    """The checkout key's operator. No credential: 401; another credential (a session, a key without the
    loyalty scope, a partner's): 404, as the portal answers another role's route."""
    elsewhere = ApiError(404, "not_found", "no such route for this credential")
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer":
        if request.cookies.get(auth.SESSION_COOKIE):
            raise elsewhere
        raise ApiError(401, "unauthenticated", "send a checkout API key: Authorization: Bearer <api key>")
    principal = await auth.from_api_key(conn, value.strip())
    if principal is None:
        raise ApiError(401, "unauthenticated", "unknown, revoked or malformed API key")
    if "loyalty" not in principal.scopes or principal.role != "operator" or principal.merchant_id is None:
        raise elsewhere
    return principal


def _customer(raw: Any) -> str:
    if not isinstance(raw, str) or not 1 <= len(raw) <= _CUSTOMER_MAX:
        raise ApiError(
            400, "invalid_field", f"customer must be the shop's customer id (1 to {_CUSTOMER_MAX} characters)"
        )
    return raw


def _only(body: dict[str, Any], names: set[str]) -> None:
    if unknown := sorted(set(body) - names):
        raise ApiError(400, "invalid_field", f"unknown field(s): {', '.join(unknown)}")


def _whole(body: dict[str, Any], name: str, required: bool) -> int | None:
    raw = body.get(name)
    if raw is None and not required:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0 or raw > redeem.MAX_POINTS:
        raise ApiError(400, "invalid_field", f"{name} must be a whole number (minor units for money)")
    return raw


Handler = Callable[[asyncpg.Connection, Programme, Request, dict[str, Any]], Awaitable[tuple[int, Any]]]


def _checkout(handler: Handler, method: str) -> Callable[[Request], Awaitable[Response]]:
    async def run(request: Request) -> Response:
        portal = request.app.state.portal
        try:
            async with portal.pool.acquire() as conn:
                principal = await _principal(request, conn)
                await portal.limiter.hit("api", f"u{principal.user_id}", portal.settings.api_per_minute)
                prog = await ledger.programme_of(conn, principal.merchant_id)  # type: ignore[arg-type]
                if method == "GET":
                    status, answer = await handler(conn, prog, request, {})
                    return json_response(answer, status)
                key = request.headers.get("idempotency-key", "")
                if not 1 <= len(key) <= 200:
                    raise ApiError(
                        400, "idempotency_key_missing", "send an Idempotency-Key header (1 to 200 characters)"
                    )
                raw = await request.body()
                if len(raw) > MAX_BODY:
                    raise ApiError(413, "too_large", "the body is too large")
                try:
                    body = orjson.loads(raw or b"{}")
                except orjson.JSONDecodeError as exc:
                    raise ApiError(400, "invalid_json", "the body is not JSON") from exc
                if not isinstance(body, dict):
                    raise ApiError(400, "invalid_json", "the body must be a JSON object")
                status, answer = await _idempotent(conn, prog, request, key, body, handler)
                return json_response(answer, status)
        except (LoyaltyError, ApiError) as exc:
            return _error(exc)

    return run


async def _idempotent(
    conn: asyncpg.Connection, prog: Programme, request: Request, key: str, body: dict[str, Any], handler: Handler
) -> tuple[int, Any]:
    """The first answer for this key, or a new one stored with it; the key row is inserted first, so a
    concurrent request with the same key waits for this one's commit and then replays its answer."""
    digest = hashlib.sha256(
        request.method.encode()
        + b" "
        + request.url.path.encode()
        + b"\n"
        + orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    ).hexdigest()
    async with conn.transaction():
        fresh = await conn.fetchval(
            """INSERT INTO loyalty_idempotency (merchant_id, key, request_sha256, status, response)
               VALUES ($1, $2, $3, 0, '{}') ON CONFLICT DO NOTHING RETURNING true""",
            prog.merchant_id,
            key,
            digest,
        )
        if not fresh:
            stored = await conn.fetchrow(
                "SELECT request_sha256, status, response FROM loyalty_idempotency WHERE merchant_id = $1 AND key = $2",
                prog.merchant_id,
                key,
            )
            if stored["request_sha256"] != digest:
                raise ApiError(409, "idempotency_key_reused", "this Idempotency-Key was used with another request")
            return stored["status"], orjson.loads(stored["response"])
        status, answer = await handler(conn, prog, request, body)
        await conn.execute(
            "UPDATE loyalty_idempotency SET status = $3, response = $4::jsonb WHERE merchant_id = $1 AND key = $2",
            prog.merchant_id,
            key,
            status,
            orjson.dumps(answer, default=str).decode(),
        )
        return status, orjson.loads(orjson.dumps(answer, default=str))


def _redemption_id(request: Request) -> int:
    raw = request.path_params["redemption_id"]
    if not raw.isdigit() or len(raw) > 18:
        raise ApiError(404, "not_found", "no such redemption")
    return int(raw)


async def _member(conn: asyncpg.Connection, prog: Programme, request: Request, body: dict[str, Any]) -> tuple[int, Any]:
    customer = _customer(request.path_params["customer"])
    summary = await ledger.member_summary(conn, prog, customer)
    secret = await conn.fetchval("SELECT link_secret FROM loyalty_programmes WHERE merchant_id = $1", prog.merchant_id)
    token = member_token(secret, prog.merchant_id, customer, dt.datetime.now(dt.UTC) + dt.timedelta(days=30))
    summary["member_link"] = f"/loyalty/m/{token}"
    summary["member_json"] = f"{PREFIX}/member?token={token}"
    return 200, summary


async def _enroll(conn: asyncpg.Connection, prog: Programme, request: Request, body: dict[str, Any]) -> tuple[int, Any]:
    _only(body, {"customer"})
    customer = _customer(body.get("customer"))
    await ledger.enroll(conn, prog.merchant_id, customer, dt.datetime.now(dt.UTC))
    return 201, await ledger.member_summary(conn, prog, customer)


async def _referral(
    conn: asyncpg.Connection, prog: Programme, request: Request, body: dict[str, Any]
) -> tuple[int, Any]:
    _only(body, {"customer"})
    made = await loyalty_referral.link(conn, prog, _customer(body.get("customer")))
    tracker = request.app.state.portal.settings.tracker_url
    return 201, made | {"url": f"{tracker}/c/{made['code']}"}


async def _reserve(
    conn: asyncpg.Connection, prog: Programme, request: Request, body: dict[str, Any]
) -> tuple[int, Any]:
    _only(body, {"customer", "order_id", "points", "discount_minor", "order_total_minor"})
    customer = _customer(body.get("customer"))
    order_id = body.get("order_id")
    if not isinstance(order_id, str) or not 1 <= len(order_id) <= 200:
        raise ApiError(400, "invalid_field", "order_id must be the shop's order id (1 to 200 characters)")
    points = _whole(body, "points", False)
    discount = _whole(body, "discount_minor", False)
    if (points is None) == (discount is None):
        raise ApiError(400, "invalid_field", "send either points or discount_minor")
    if points is None:
        points = prog.points_for_discount(discount)  # type: ignore[arg-type]
    total = _whole(body, "order_total_minor", False)
    return 201, await redeem.reserve(conn, prog, customer, order_id, points, total)


async def _confirm(
    conn: asyncpg.Connection, prog: Programme, request: Request, body: dict[str, Any]
) -> tuple[int, Any]:
    return 200, await redeem.confirm(conn, prog, _redemption_id(request))


async def _release(
    conn: asyncpg.Connection, prog: Programme, request: Request, body: dict[str, Any]
) -> tuple[int, Any]:
    return 200, await redeem.release(conn, prog, _redemption_id(request))


async def _member_view(request: Request) -> Response:
    """Public, signed: what the shop's own widget shows (balance, value, tier and progress, history)."""
    portal = request.app.state.portal
    try:
        await portal.limiter.hit("public", client_key(request, portal.settings.proxies), portal.settings.api_per_minute)
        async with portal.pool.acquire() as conn:
            prog, customer = await read_token(conn, request.query_params.get("token", ""), dt.datetime.now(dt.UTC))
            return json_response(await ledger.member_summary(conn, prog, customer))
    except (LoyaltyError, ApiError) as exc:
        return _error(exc)


def routes() -> list[Route]:
    from portal.loyalty_pages import routes as pages

    return [
        *pages(),
        Route(f"{PREFIX}/member", _member_view, methods=["GET"]),
        Route(f"{PREFIX}/members/{{customer}}", _checkout(_member, "GET"), methods=["GET"]),
        Route(f"{PREFIX}/members", _checkout(_enroll, "POST"), methods=["POST"]),
        Route(f"{PREFIX}/redemptions", _checkout(_reserve, "POST"), methods=["POST"]),
        Route(f"{PREFIX}/referrals", _checkout(_referral, "POST"), methods=["POST"]),
        Route(f"{PREFIX}/redemptions/{{redemption_id}}/confirm", _checkout(_confirm, "POST"), methods=["POST"]),
        Route(f"{PREFIX}/redemptions/{{redemption_id}}/release", _checkout(_release, "POST"), methods=["POST"]),
    ]
