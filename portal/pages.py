"""What every page shares: Jinja2 rendering, the signed-in page wrapper (session, role, CSRF), branding.
Pages are rendered on the server and readable without JavaScript; they read through the same data layer
as the API, scoped by the signed-in user. The pages themselves: pages_auth, pages_partner, pages_operator."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg
import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from kernel.money import format_amount
from portal import auth, tenancy, validate
from portal.api import Ctx
from portal.errors import ApiError

TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)
TEMPLATES.filters["money"] = format_amount  # minor units -> "12.34" by the currency's exponent
DEFAULT_BRAND = {"primary": "#1f4e79", "accent": "#f0a202", "tagline": "", "logo_url": None}


def render(name: str, status: int = 200, **values: Any) -> HTMLResponse:
    values.setdefault("who", None)
    values.setdefault("brand", DEFAULT_BRAND)
    values.setdefault("error", None)
    values.setdefault("notice", None)
    values.setdefault("csrf", None)
    return HTMLResponse(TEMPLATES.get_template(name).render(**values), status_code=status)


def error_page(exc: ApiError, who: Any = None) -> HTMLResponse:
    return render("error.html", exc.status, error=exc.detail, code=exc.code, who=who)


async def brand_of(conn: asyncpg.Connection, merchant_id: int | None) -> dict[str, Any]:
    if merchant_id is None:
        return DEFAULT_BRAND
    row = await conn.fetchrow("SELECT name, slug, branding FROM merchants WHERE id = $1", merchant_id)
    if row is None:
        return DEFAULT_BRAND
    import orjson

    return {**DEFAULT_BRAND, **orjson.loads(row["branding"]), "name": row["name"], "slug": row["slug"]}


PageHandler = Callable[[Ctx, dict[str, Any] | None], Awaitable[Response]]


def page(path: str, handler: PageHandler, role: str, methods: tuple[str, ...] = ("GET",)) -> Route:
    """A signed-in page: no session is a redirect to sign in; another role's page is a 404."""

    async def run(request: Request) -> Response:
        portal = request.app.state.portal
        async with portal.pool.acquire() as conn:
            token = request.cookies.get(auth.SESSION_COOKIE)
            who = await auth.from_session(conn, token, portal.settings.idle_minutes) if token else None
            if who is None:
                return RedirectResponse("/login?next=" + quote(request.url.path), 303)
            ctx = Ctx(request, conn, who, portal)
            try:
                if who.role not in {"partner": ("partner",), "operator": ("operator", "network")}[role]:
                    raise ApiError(404, "not_found", "no such page")
                await tenancy.check_path(conn, who, request.path_params)
                form = None
                if request.method == "POST" and request.headers.get("content-type", "").startswith("multipart/"):
                    form = await _multipart(request)
                    auth.check_csrf(request, who, str(form.get("csrf_token", "")))
                    form = {k: v for k, v in form.items() if k != "csrf_token"}
                elif request.method == "POST":
                    form = await validate.body(request)
                    auth.check_csrf(request, who, str(form.get("csrf_token", "")))
                    form = {k: v for k, v in form.items() if k != "csrf_token"}
                    await portal.limiter.hit("api", f"u{who.user_id}", portal.settings.api_per_minute)
                return await handler(ctx, form)
            except ApiError as exc:
                return error_page(exc, who)
            except asyncpg.PostgresError as exc:
                from portal.api import database_error

                return error_page(database_error(exc), who)

    return Route(path, run, methods=list(methods))


async def _multipart(request: Request) -> dict[str, Any]:
    declared = request.headers.get("content-length", "")
    if not declared.isdigit() or int(declared) > validate.MAX_UPLOAD:
        raise ApiError(413, "too_large", "an upload is at most 1 MiB")
    out: dict[str, Any] = {}
    async with request.form(max_files=1, max_fields=20) as form:
        for key, value in form.items():
            out[key] = value if isinstance(value, str) else await value.read(validate.MAX_UPLOAD + 1)
    return out


async def show(ctx: Ctx, name: str, **values: Any) -> HTMLResponse:
    who = ctx.who
    brand = await brand_of(ctx.conn, who.home_merchant_id if who.is_partner else who.merchant_id)
    return render(name, who=who, csrf=who.csrf, brand=brand, notice=ctx.request.query_params.get("notice"), **values)


def back(path: str, notice: str) -> RedirectResponse:
    return RedirectResponse(f"{path}?notice={quote(notice)}", 303)
