"""Builds the portal application: the JSON API under /api/v1 (OpenAPI at /api/v1/openapi.json),
server-rendered pages under /, a public price feed, and the partner postback delivery loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from kernel import limits, logs
from kernel.redis.pyclient import Lazy
from portal import (
    api_attribution,
    api_auth,
    api_operator,
    api_partner,
    i18n,
    openapi,
    pages,
    partner_prices,
    passwords,
    postbacks,
    site,
)
from portal.api import ROLES, Endpoint, error_response, json_response, route
from portal.api_payouts import ENDPOINTS as PAYOUT_ENDPOINTS
from portal.errors import ApiError
from portal.loyalty_admin import ENDPOINTS as LOYALTY_ENDPOINTS
from portal.loyalty_api import routes as loyalty_routes
from portal.loyalty_openapi import extend as loyalty_openapi
from portal.ratelimit import RateLimiter
from portal.settings import PortalSettings

log = logging.getLogger("clickmint.portal")
ENDPOINTS: list[Endpoint] = [
    *api_auth.ENDPOINTS,
    *api_partner.ENDPOINTS,
    *api_operator.ENDPOINTS,
    *PAYOUT_ENDPOINTS,
    *api_attribution.ENDPOINTS,
    *LOYALTY_ENDPOINTS,
]
assert all(ep.role in (*ROLES, "public") for ep in ENDPOINTS)
_REQUEST_ID = re.compile(rb"[A-Za-z0-9._-]{8,64}")
_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' https: data:; style-src 'self' 'unsafe-inline'; script-src 'self'; "
        b"frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    ),
]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("clickmint")
    except PackageNotFoundError:
        return "0"


class Portal:
    def __init__(self, settings: PortalSettings) -> None:
        self.settings = settings
        self.pool: asyncpg.Pool = None
        self.redis: Lazy = None  # type: ignore[assignment]
        self.limiter: RateLimiter = None  # type: ignore[assignment]
        self.openapi = loyalty_openapi(openapi.document(ENDPOINTS, _version()))

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        core = self.settings.core
        self.pool = await asyncpg.create_pool(core.database_url, min_size=1, max_size=8)
        # One server or a cluster, as the tracker and ingest decide (CLICKMINT_REDIS_CLUSTER); connected on first
        # use, so the portal starts and serves its pages while Redis is away.
        self.redis = Lazy(core.redis_url or "", core.redis_cluster, socket_connect_timeout=2, socket_timeout=2)
        self.limiter = RateLimiter(self.redis, core.key_prefix)
        delivery = None
        if self.settings.deliver_postbacks:
            delivery = asyncio.create_task(postbacks.run(self.pool, self.settings.egress))
        try:
            yield
        finally:
            if delivery is not None:
                delivery.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await delivery
            await self.redis.aclose()
            await self.pool.close()

    async def healthz(self, request: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def openapi_json(self, request: Request) -> Response:
        return json_response(self.openapi)

    async def price_feed(self, request: Request) -> Response:
        """Public on purpose: the merchant's store reads it. Its id is an HMAC nobody can guess."""
        found = passwords.check_feed_token(self.settings.core.secret_key, request.path_params["token"])
        if found is None:
            return error_response(ApiError(404, "not_found", "no such feed"))
        async with self.pool.acquire() as conn:
            feed = await partner_prices.price_feed(conn, *found)
        response = json_response(feed)
        response.headers["Cache-Control"] = "public, max-age=60"
        response.headers["Access-Control-Allow-Origin"] = "*"
        return response


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if request.url.path.startswith("/api/") or request.url.path.startswith("/feeds/"):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(ApiError(exc.status_code, code, str(exc.detail)))
    return pages.render("error.html", exc.status_code, error=str(exc.detail), code=str(exc.status_code))


class Edge:
    """Security headers on every answer, and a request id (the caller's X-Request-Id when sane, else a new
    one) in the logs' context and echoed back; too many or too large request headers answer 431."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if limits.too_large(scope["headers"]):
            await limits.refuse(send)
            return
        sent = dict(scope.get("headers", [])).get(b"x-request-id", b"")
        request_id = sent.decode() if _REQUEST_ID.fullmatch(sent) else uuid.uuid4().hex
        token = logs.REQUEST_ID.set(request_id)
        # Pages speak the browser's language until a signed-in page knows the user's (portal/pages.py page());
        # the JSON API, feeds and exports always speak English, whatever the caller's Accept-Language.
        browser = ""
        if not scope.get("path", "").startswith(("/api/", "/feeds/")):
            browser = dict(scope.get("headers", [])).get(b"accept-language", b"").decode("latin-1")[:200]
        i18n.CURRENT.set(i18n.choose(None, browser, None))
        extra = [*_HEADERS, (b"x-request-id", request_id.encode())]

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            logs.REQUEST_ID.reset(token)


def build(settings: PortalSettings) -> Starlette:
    portal = Portal(settings)
    routes = [
        Route("/healthz", portal.healthz, methods=["GET", "HEAD"]),
        Route("/api/v1/openapi.json", portal.openapi_json, methods=["GET"]),
        Route("/feeds/prices/{token}.json", portal.price_feed, methods=["GET"]),
        *(route(ep, portal) for ep in ENDPOINTS),
        *loyalty_routes(),
        *site.routes(),
    ]
    app = Starlette(routes=routes, lifespan=portal.lifespan, exception_handlers={HTTPException: _http_error})
    app.state.portal = portal
    app.add_middleware(Edge)
    return app


def create_app() -> Starlette:
    logs.setup()
    return build(PortalSettings.from_env())
