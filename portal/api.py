"""The JSON API's machinery: a registry of endpoints (the OpenAPI document is drawn from it), and the
one wrapper every endpoint runs in: rate limit, credential, role, scope, CSRF, the tenancy of every id in
the path and the body (portal/tenancy.py), errors as JSON. Public writes (sign-in, sign-out, password reset,
invitations) take only JSON from the portal's own origin: no other site's form can post them."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kernel.addresses import TrustedProxies, anonymize_ip
from portal import auth, tenancy, validate
from portal.auth import Principal
from portal.errors import ApiError

log = logging.getLogger("clickmint.portal")
ROLES = {"partner": ("partner",), "operator": ("operator", "network"), "any": ("partner", "operator", "network")}


@dataclass
class Ctx:
    request: Request
    conn: asyncpg.Connection
    principal: Principal | None
    portal: Any  # the Portal (settings, pool, limiter)

    @property
    def who(self) -> Principal:
        assert self.principal is not None
        return self.principal

    @property
    def partner_id(self) -> int:
        """The partner of the credential: the only partner id a partner-scoped query ever sees."""
        assert self.principal is not None and self.principal.partner_id is not None
        return self.principal.partner_id

    def path_int(self, name: str) -> int:
        raw = self.request.path_params[name]
        if not raw.isdigit() or len(raw) > 18:
            raise ApiError(404, "not_found", f"no such {name.removesuffix('_id')}")
        return int(raw)

    def query(self, name: str, check: validate.Check, default: Any) -> Any:
        raw = self.request.query_params.get(name)
        return default if raw in (None, "") else check(name, raw)

    async def body(self, spec: Mapping[str, tuple[validate.Check, bool]]) -> dict[str, Any]:
        """The request's body checked against `spec`, every reference in it within the caller's tenant."""
        return await tenancy.read(self.conn, self.principal, await validate.body(self.request), spec)

    async def fields(self, form: Mapping[str, Any], spec: Mapping[str, tuple[validate.Check, bool]]) -> dict:
        """A page form checked like an API body (the same specs, the same tenancy)."""
        return await tenancy.read(self.conn, self.principal, form, spec)

    async def ref(self, name: str, kind: str, raw: Any) -> int:
        """One id a page form names on its own (a row's button), checked against the caller's tenant."""
        value = validate.ref(kind)(name, raw)
        await tenancy.check(self.conn, self.who, {name: (kind, value)})
        return value


Handler = Callable[[Ctx], Awaitable[Any]]


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    handler: Handler
    role: str  # partner | operator | any | public
    summary: str
    body: Mapping[str, tuple[validate.Check, bool]] | None = None
    query: Mapping[str, dict[str, Any]] = field(default_factory=dict)  # name -> JSON schema
    produces: str = "application/json"
    tag: str = ""
    status: int = 200  # 201 for endpoints that create


def json_response(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data, default=_default), status_code=status, media_type="application/json")


def _default(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return str(value)


def error_response(exc: ApiError) -> Response:
    body = {"error": exc.code, "detail": exc.detail}
    if exc.pointer is not None:
        body["pointer"] = exc.pointer
    if exc.reason is not None:
        body["reason"] = exc.reason
    response = json_response(body, exc.status)
    if exc.retry_after is not None:
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


def client_key(request: Request, proxies: TrustedProxies) -> str:
    """The client's network, never its full address: /24 for IPv4, /48 for IPv6 (kernel/addresses.py)."""
    host = request.client.host if request.client else ""
    if proxies.any:
        host = proxies.client(host, request.headers.getlist(proxies.header))
    return anonymize_ip(host) or host


def request_scheme(request: Request, proxies: TrustedProxies) -> str:
    """The scheme the client used: the trusted proxy's word for it, else the connection's."""
    peer = request.client.host if request.client else ""
    header = request.headers.getlist(proxies.header) if proxies.any else []
    return proxies.scheme(peer, header, request.headers.get("x-forwarded-proto")) or request.url.scheme


def same_origin_json(request: Request, settings: Any) -> None:
    """A public write must be JSON (a cross-site form cannot send that without the browser asking first) and,
    when a browser says where it comes from, come from the portal itself. Scripts send neither header."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise ApiError(415, "unsupported_media_type", "send this as JSON (Content-Type: application/json)")
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise ApiError(403, "cross_origin", "this request comes from another site")
    origin = request.headers.get("origin")
    if origin is not None and origin.rstrip("/") not in own_origins(request, settings):
        raise ApiError(403, "cross_origin", "this request comes from another site")


def own_origins(request: Request, settings: Any) -> set[str]:
    """The portal's origins: its public URL's, and the one this request was addressed to."""
    from urllib.parse import urlsplit

    public = urlsplit(settings.portal_url)
    scheme = request_scheme(request, settings.proxies)
    found = {f"{public.scheme}://{public.netloc}"}
    host = request.headers.get("host")
    if host:
        found.add(f"{scheme}://{host}")
    return found


def database_error(exc: asyncpg.PostgresError) -> ApiError:
    """A constraint the database enforces, told as a 4xx (the validators should have caught it first)."""
    if isinstance(exc, asyncpg.UniqueViolationError):
        return ApiError(409, "conflict", "that already exists")
    if isinstance(exc, asyncpg.ForeignKeyViolationError):
        return ApiError(400, "invalid_reference", "a referenced object does not exist")
    if isinstance(exc, asyncpg.IntegrityConstraintViolationError | asyncpg.DataError):
        return ApiError(400, "invalid_field", str(exc).split("\n")[0][:300])
    raise exc


def route(endpoint: Endpoint, portal: Any) -> Route:
    async def run(request: Request) -> Response:
        try:
            return await _run(endpoint, portal, request)
        except ApiError as exc:
            return error_response(exc)

    return Route(endpoint.path, run, methods=[endpoint.method], name=f"{endpoint.method} {endpoint.path}")


async def _run(endpoint: Endpoint, portal: Any, request: Request) -> Response:
    settings = portal.settings
    async with portal.pool.acquire() as conn:
        principal = await auth.resolve(request, conn, settings.idle_minutes) if endpoint.role != "public" else None
        if endpoint.role != "public":
            if principal is None:
                raise ApiError(401, "unauthenticated", "sign in or send an API key")
            # Another role's route looks like nothing at all, as another partner's object does.
            if principal.role not in ROLES[endpoint.role]:
                raise ApiError(404, "not_found", "no such route for this credential")
            auth.require_scope(principal, request.method)
            await portal.limiter.hit("api", f"u{principal.user_id}", settings.api_per_minute)
            form_token = None
            if request.method in auth.UNSAFE and principal.via == "session":
                form_token = request.headers.get("x-csrf-token")
            auth.check_csrf(request, principal, form_token)
            await tenancy.check_path(conn, principal, request.path_params)
        else:
            await portal.limiter.hit("public", client_key(request, settings.proxies), settings.api_per_minute)
            if request.method in auth.UNSAFE:
                same_origin_json(request, settings)
        ctx = Ctx(request, conn, principal, portal)
        try:
            result = await endpoint.handler(ctx)
        except asyncpg.PostgresError as exc:
            raise database_error(exc) from exc
    if isinstance(result, Response):
        return result
    return json_response(result, endpoint.status)
