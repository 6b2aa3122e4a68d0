"""What every page shares: Jinja2 rendering, the signed-in page wrapper (session, role, CSRF), branding.
Pages are rendered on the server and readable without JavaScript; they read through the same data layer
as the API, scoped by the signed-in user. The pages themselves: pages_auth, pages_partner, pages_operator."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg
import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from kernel.money import format_amount
from portal import auth, formats, i18n, notifications, qr, tenancy, terms, validate, words
from portal.api import Ctx
from portal.errors import ApiError

TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    extensions=["jinja2.ext.i18n"],
)
# The i18n extension adds install_gettext_callables to the environment at run time; jinja2's types omit it.
TEMPLATES.install_gettext_callables(  # type: ignore[attr-defined]  # {% trans %} and _() in the page's locale
    i18n.gettext_, i18n.ngettext_, newstyle=True, pgettext=i18n.pgettext_, npgettext=i18n.npgettext_
)
TEMPLATES.globals["locale"] = lambda: i18n.CURRENT.get()
TEMPLATES.globals["languages"] = lambda: list(i18n.NAMES.items())  # [(code, name in that language)]
TEMPLATES.filters["number"] = formats.number  # 12345 -> "12,345" (en), "12.345" (de)
TEMPLATES.filters["money"] = format_amount  # minor units -> "12.34" by the currency's exponent
TEMPLATES.filters["amount"] = formats.money  # minor units or "12.34" -> "1,234.00 USD"
TEMPLATES.filters["period"] = formats.period  # [start, end) -> "December 2026", "1-7 Dec 2026"
TEMPLATES.filters["day"] = formats.day  # a date -> "7 Dec 2026", "7. Dez. 2026"
TEMPLATES.globals["word"] = words.word  # a stored status or kind in the page's language
TEMPLATES.filters["first_upper"] = lambda text: text[:1].upper() + text[1:]
TEMPLATES.globals["describe_terms"] = terms.describe
TEMPLATES.filters["combine_plan"] = lambda plan, over: {k: v for k, v in {**plan, **over}.items() if v is not None}
TEMPLATES.globals["limits_of"] = terms.limits_of
TEMPLATES.globals["qr"] = qr.svg
DEFAULT_BRAND = {"primary": "#1f4e79", "accent": "#f0a202", "tagline": "", "logo_url": None}
# Refusals shown beside the form's fields (GOV.UK's pattern) rather than on an error page.
FORM_STATUSES = frozenset({400, 404, 409, 413, 422})


@dataclass
class Failed:
    """A refused form: what was typed (kept in the fields) and each message by field name."""

    values: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)
    general: str | None = None  # a refusal that names no field of the form

    @property
    def refused(self) -> bool:
        return bool(self.errors or self.general)

    def value(self, name: str, default: Any = "") -> Any:
        return self.values.get(name, default)


# Refusals whose code names the field they are about (the others name it in their detail or pointer).
CODE_FIELDS = {"below_wholesale": "retail", "url_not_allowed": "url", "invalid_image": "image"}
FAILED: ContextVar[Failed | None] = ContextVar("failed_form", default=None)


def failed_form(exc: ApiError, form: dict[str, Any]) -> Failed:
    """Which field a refusal is about: its JSON pointer's first step, or the field an invalid_field names. The
    message is in the page's language where portal/refusals.py knows it."""
    from portal.refusals import shown

    values = {k: v for k, v in form.items() if isinstance(v, str)}
    name, message = None, exc.detail
    if exc.pointer:
        name = exc.pointer.strip("/").split("/")[0]
    elif exc.code == "invalid_field" and ": " in exc.detail:
        name, message = exc.detail.split(": ", 1)
    elif exc.code in CODE_FIELDS:
        name = CODE_FIELDS[exc.code]
    if name and name in form:
        return Failed(values, {name: shown(message)})
    return Failed(values, {}, shown(exc.detail))


def render(name: str, status: int = 200, **values: Any) -> HTMLResponse:
    values.setdefault("who", None)
    values.setdefault("brand", DEFAULT_BRAND)
    values.setdefault("error", None)
    values.setdefault("notice", None)
    values.setdefault("csrf", None)
    values.setdefault("failed", FAILED.get())
    values.setdefault("request_path", "")
    values.setdefault("unread", 0)
    return HTMLResponse(TEMPLATES.get_template(name).render(**values), status_code=status)


def error_page(exc: ApiError, who: Any = None, brand: dict[str, Any] | None = None) -> HTMLResponse:
    from portal.refusals import shown

    return render(
        "error.html",
        exc.status,
        error=shown(exc.detail),
        code=exc.code,
        who=who,
        brand=brand or DEFAULT_BRAND,
        csrf=who.csrf if who else None,
    )


async def brand_for(conn: asyncpg.Connection, who: Any) -> dict[str, Any]:
    """The branding a signed-in user sees: its merchant's (a partner's home programme's)."""
    return await brand_of(conn, who.home_merchant_id if who.is_partner else who.merchant_id)


async def brand_of(conn: asyncpg.Connection, merchant_id: int | None) -> dict[str, Any]:
    if merchant_id is None:
        return DEFAULT_BRAND
    row = await conn.fetchrow("SELECT name, slug, branding FROM merchants WHERE id = $1", merchant_id)
    if row is None:
        return DEFAULT_BRAND
    import orjson

    return {**DEFAULT_BRAND, **orjson.loads(row["branding"]), "name": row["name"], "slug": row["slug"]}


async def use_locale(conn: asyncpg.Connection, who: Any, accept_language: str | None) -> str:
    """The page's language: the user's setting, else the browser's, else its merchant's default (i18n.choose)."""
    merchant_id = who.home_merchant_id if who.is_partner else who.merchant_id
    row = await conn.fetchrow(
        """SELECT u.locale,
                  (SELECT default_locale FROM merchants WHERE id = COALESCE($2, u.merchant_id)) AS merchant_locale
           FROM users u WHERE u.id = $1""",
        who.user_id,
        merchant_id,
    )
    lang = i18n.choose(row["locale"] if row else None, accept_language, row["merchant_locale"] if row else None)
    i18n.CURRENT.set(lang)
    return lang


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
            await use_locale(conn, who, request.headers.get("accept-language"))
            form: dict[str, Any] | None = None
            try:
                if who.role not in {"partner": ("partner",), "operator": ("operator", "network")}[role]:
                    raise ApiError(404, "not_found", "no such page")
                await tenancy.check_path(conn, who, request.path_params)
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
                return await _refused(ctx, handler, form, exc)
            except asyncpg.PostgresError as exc:
                from portal.api import database_error

                return await _refused(ctx, handler, form, database_error(exc))

    return Route(path, run, methods=list(methods))


async def _refused(ctx: Ctx, handler: PageHandler, form: dict[str, Any] | None, exc: ApiError) -> Response:
    """A refused form comes back as the same page with what was typed and the message beside its field;
    anything else (a page that is not there, a stale CSRF token, too many requests) is the error page."""
    brand = await brand_for(ctx.conn, ctx.who)
    if form is None or exc.status not in FORM_STATUSES:
        return error_page(exc, ctx.who, brand)
    token = FAILED.set(failed_form(exc, form))
    try:
        response = await handler(ctx, None)
    except ApiError:
        return error_page(exc, ctx.who, brand)
    finally:
        FAILED.reset(token)
    response.status_code = exc.status
    return response


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
    brand = await brand_for(ctx.conn, who)
    if who.is_partner:
        values.setdefault("unread", await notifications.unread(ctx.conn, ctx.partner_id))
    return render(
        name,
        who=who,
        csrf=who.csrf,
        brand=brand,
        notice=ctx.request.query_params.get("notice"),
        request_path=ctx.request.url.path,
        **values,
    )


def back(path: str, notice: str) -> RedirectResponse:
    return RedirectResponse(f"{path}?notice={quote(notice)}", 303)
