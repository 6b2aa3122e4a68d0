"""Pages rendered on the server (Jinja2), readable without JavaScript. Forms carry the session's CSRF
token; every page reads through the same data layer as the API, scoped by the signed-in user."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg
import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from portal import api_operator, api_partner, auth, charts, passwords, users, validate
from portal import operator_data as odata
from portal import partner_data as pdata
from portal import postbacks as pb
from portal.api import Ctx, client_key
from portal.api_auth import is_https, login_user, session_cookie
from portal.errors import ApiError

TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)
DEFAULT_BRAND = {"primary": "#1f4e79", "accent": "#f0a202", "tagline": "", "logo_url": None}


def render(name: str, status: int = 200, **values: Any) -> HTMLResponse:
    values.setdefault("who", None)
    values.setdefault("brand", DEFAULT_BRAND)
    values.setdefault("error", None)
    values.setdefault("notice", None)
    values.setdefault("csrf", None)
    return HTMLResponse(TEMPLATES.get_template(name).render(**values), status_code=status)


def _error_page(exc: ApiError, who: Any = None) -> HTMLResponse:
    return render("error.html", exc.status, error=exc.detail, code=exc.code, who=who)


async def _brand(conn: asyncpg.Connection, merchant_id: int | None) -> dict[str, Any]:
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
                return _error_page(exc, who)
            except asyncpg.PostgresError as exc:
                from portal.api import database_error

                return _error_page(database_error(exc), who)

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


async def _show(ctx: Ctx, name: str, **values: Any) -> HTMLResponse:
    who = ctx.who
    brand = await _brand(ctx.conn, who.home_merchant_id if who.is_partner else who.merchant_id)
    return render(name, who=who, csrf=who.csrf, brand=brand, notice=ctx.request.query_params.get("notice"), **values)


def _back(path: str, notice: str) -> RedirectResponse:
    return RedirectResponse(f"{path}?notice={quote(notice)}", 303)


# -- sign-in --------------------------------------------------------------------------------------


async def login_page(request: Request) -> Response:
    portal = request.app.state.portal
    slug = request.path_params.get("slug")
    brand = DEFAULT_BRAND
    if slug is not None:
        async with portal.pool.acquire() as conn:
            merchant_id = await conn.fetchval("SELECT id FROM merchants WHERE slug = $1", slug)
            if merchant_id is None:
                return render("error.html", 404, error="no such programme", code="not_found")
            brand = await _brand(conn, merchant_id)
    csrf = request.cookies.get(auth.LOGIN_CSRF_COOKIE) or passwords.new_token()
    response = render(
        "login.html",
        brand=brand,
        csrf=csrf,
        next=request.query_params.get("next", ""),
        notice=request.query_params.get("notice"),
    )
    response.set_cookie(
        auth.LOGIN_CSRF_COOKIE,
        csrf,
        max_age=3600,
        httponly=True,
        samesite="strict",
        secure=is_https(request, portal.settings),
    )
    return response


def _login_csrf_ok(request: Request, form: dict[str, Any]) -> bool:
    import hmac

    cookie = request.cookies.get(auth.LOGIN_CSRF_COOKIE, "")
    sent = str(form.get("csrf_token", ""))
    return bool(cookie) and hmac.compare_digest(cookie.encode(), sent.encode())


async def login_submit(request: Request) -> Response:
    portal = request.app.state.portal
    form: dict[str, Any] = {}
    async with portal.pool.acquire() as conn:
        ctx = Ctx(request, conn, None, portal)
        try:
            form = await validate.body(request)
            if not _login_csrf_ok(request, form):
                raise ApiError(403, "csrf", "the sign-in form expired; reload the page and try again")
            _, token, _ = await login_user(ctx, str(form.get("email", "")), str(form.get("password", "")))
        except ApiError as exc:
            brand = DEFAULT_BRAND
            slug = str(form.get("merchant", "") or "")
            if slug:
                merchant_id = await conn.fetchval("SELECT id FROM merchants WHERE slug = $1", slug)
                brand = await _brand(conn, merchant_id)
            response = render(
                "login.html",
                exc.status,
                brand=brand,
                error=exc.detail,
                csrf=request.cookies.get(auth.LOGIN_CSRF_COOKIE, ""),
                next="",
            )
            if exc.retry_after:
                response.headers["Retry-After"] = str(exc.retry_after)
            return response
        who = await auth.from_session(conn, token, portal.settings.idle_minutes)
    target = "/dashboard" if who and who.is_partner else "/admin"
    wanted = str(form.get("next", ""))
    if wanted.startswith("/") and not wanted.startswith("//") and "\\" not in wanted:
        target = wanted
    response = RedirectResponse(target, 303)
    session_cookie(response, portal.settings, is_https(request, portal.settings), token)
    return response


async def logout_submit(request: Request) -> Response:
    portal = request.app.state.portal
    async with portal.pool.acquire() as conn:
        token = request.cookies.get(auth.SESSION_COOKIE)
        who = await auth.from_session(conn, token, portal.settings.idle_minutes) if token else None
        if who is not None:
            form = await validate.body(request)
            try:
                auth.check_csrf(request, who, str(form.get("csrf_token", "")))
            except ApiError as exc:
                return _error_page(exc, who)
            await auth.end_session(conn, token)
    response = RedirectResponse("/login?notice=" + quote("Signed out."), 303)
    session_cookie(response, portal.settings, is_https(request, portal.settings), None)
    return response


async def forgot(request: Request) -> Response:
    portal = request.app.state.portal
    csrf = request.cookies.get(auth.LOGIN_CSRF_COOKIE) or passwords.new_token()
    if request.method == "GET":
        response = render("forgot.html", csrf=csrf)
        response.set_cookie(auth.LOGIN_CSRF_COOKIE, csrf, max_age=3600, httponly=True, samesite="strict")
        return response
    async with portal.pool.acquire() as conn:
        try:
            form = await validate.body(request)
            if not _login_csrf_ok(request, form):
                raise ApiError(403, "csrf", "the form expired; reload the page and try again")
            email = users.check_email(str(form.get("email", "")))
            await portal.limiter.hit("reset", email, 3, 3600)
            await portal.limiter.hit("reset-net", client_key(request, portal.settings.trust_forwarded), 20, 3600)
            await users.send_reset(conn, portal.settings, email)
        except ApiError as exc:
            return render("forgot.html", exc.status, csrf=csrf, error=exc.detail)
    return RedirectResponse("/login?notice=" + quote("If the address has an account, a reset link is on its way."), 303)


async def reset_page(request: Request) -> Response:
    portal = request.app.state.portal
    csrf = request.cookies.get(auth.LOGIN_CSRF_COOKIE) or passwords.new_token()
    token = request.query_params.get("token", "")
    if request.method == "GET":
        response = render("reset.html", csrf=csrf, token=token)
        response.set_cookie(auth.LOGIN_CSRF_COOKIE, csrf, max_age=3600, httponly=True, samesite="strict")
        return response
    form: dict[str, Any] = {}
    async with portal.pool.acquire() as conn:
        try:
            form = await validate.body(request)
            if not _login_csrf_ok(request, form):
                raise ApiError(403, "csrf", "the form expired; reload the page and try again")
            await users.reset(
                conn, portal.settings.core.secret_key, str(form.get("token", "")), str(form.get("password", ""))
            )
        except ApiError as exc:
            return render(
                "reset.html",
                exc.status,
                csrf=csrf,
                token=str(form.get("token", "")),
                error=exc.detail,
            )
    return RedirectResponse("/login?notice=" + quote("Password set; sign in."), 303)


async def home(request: Request) -> Response:
    return RedirectResponse("/dashboard" if request.cookies.get(auth.SESSION_COOKIE) else "/login", 303)


# -- partner pages --------------------------------------------------------------------------------


async def dashboard(ctx: Ctx, form: Any) -> Response:
    range_ = ctx.query("range", validate.choice(*pdata.RANGES), "7d")
    by_day = await pdata.stats(ctx.conn, ctx.partner_id, range_, "day")
    by = {g: (await pdata.stats(ctx.conn, ctx.partner_id, range_, g))["rows"] for g in ("offer", "sub1", "country")}
    days = {}
    for row in by_day["rows"]:
        days[row["key"]] = days.get(row["key"], 0) + row["clicks"]
    since = dt.date.fromisoformat(by_day["since"])
    today = dt.datetime.now(dt.UTC).date()
    series = [
        ((since + dt.timedelta(days=i)).isoformat(), days.get((since + dt.timedelta(days=i)).isoformat(), 0))
        for i in range((today - since).days + 1)
    ]
    chart = charts.bars(series, f"Clicks per day, {range_}")
    return await _show(ctx, "dashboard.html", stats=by_day, by=by, chart=chart, range=range_, ranges=list(pdata.RANGES))


async def orders_page(ctx: Ctx, form: Any) -> Response:
    return await _show(
        ctx,
        "orders.html",
        orders=await pdata.orders(ctx.conn, ctx.partner_id, 100),
        customers=await pdata.customers(ctx.conn, ctx.partner_id, 100),
    )


async def offers_page(ctx: Ctx, form: Any) -> Response:
    return await _show(ctx, "offers.html", offers=await pdata.offers(ctx.conn, ctx.partner_id))


async def links_page(ctx: Ctx, form: Any) -> Response:
    tracker = ctx.portal.settings.tracker_url
    if form is not None:
        values = validate.fields(form, api_partner.NEW_LINK)
        await pdata.create_link(ctx.conn, ctx.partner_id, values["offer_id"], values.get("creative_id"), tracker)
        return _back("/links", "Link created.")
    built = None
    link_id = ctx.query("link", validate.integer(1), None)
    if link_id is not None:
        subs = {f"sub{i}": v for i in range(1, 6) if (v := ctx.request.query_params.get(f"sub{i}", "").strip())}
        for name, value in subs.items():
            validate.text(1, 200)(name, value)
        deep = ctx.query("url", validate.url, None)
        built = await pdata.build_link(ctx.conn, ctx.partner_id, link_id, tracker, subs, deep)
    return await _show(
        ctx,
        "links.html",
        links=await pdata.links(ctx.conn, ctx.partner_id, tracker),
        offers=await pdata.offers(ctx.conn, ctx.partner_id),
        built=built,
        link_id=link_id,
    )


async def prices_page(ctx: Ctx, form: Any) -> Response:
    if form is not None:
        values = validate.fields(form, api_partner.SET_PRICE)
        rows = {(r["merchant_id"], r["sku"]): r for r in await pdata.prices(ctx.conn, ctx.partner_id)}
        product = rows.get((values["merchant_id"], values["sku"]))
        if product is None:
            raise ApiError(404, "not_found", "no such product")
        retail = validate.money("retail", values["retail"], product["currency"])
        await pdata.set_price(ctx.conn, ctx.partner_id, values["merchant_id"], values["sku"], retail)
        return _back("/prices", f"Price of {values['sku']} set.")
    secret = ctx.portal.settings.core.secret_key
    products = await pdata.prices(ctx.conn, ctx.partner_id)
    feeds = sorted({(p["merchant"], passwords.feed_token(secret, p["merchant_id"], ctx.partner_id)) for p in products})
    return await _show(ctx, "prices.html", products=products, feeds=feeds)


async def postbacks_page(ctx: Ctx, form: Any) -> Response:
    if form is not None:
        if form.get("delete"):
            await pb.delete(ctx.conn, ctx.partner_id, validate.integer(1)("delete", form["delete"]))
            return _back("/postbacks", "Postback deleted.")
        values = validate.fields(form, api_partner.NEW_POSTBACK)
        events = ["action", "purchase"] if values.get("events", "all") == "all" else [values["events"]]
        await pb.create(ctx.conn, ctx.partner_id, values["url"], events)
        return _back("/postbacks", "Postback added.")
    listing = await pb.listing(ctx.conn, ctx.partner_id)
    log = {p["id"]: await pb.deliveries(ctx.conn, ctx.partner_id, p["id"]) for p in listing}
    return await _show(ctx, "postbacks.html", postbacks=listing, log=log, macros=pb.MACROS)


async def statements_page(ctx: Ctx, form: Any) -> Response:
    return await _show(
        ctx,
        "statements.html",
        statements=await pdata.statements(ctx.conn, ctx.partner_id),
        base="/api/v1/partner/statements",
    )


async def statement_page(ctx: Ctx, form: Any) -> Response:
    statement = await pdata.statement(ctx.conn, ctx.partner_id, ctx.path_int("statement_id"))
    return await _show(ctx, "statement.html", s=statement, base="/api/v1/partner/statements")


# -- operator pages -------------------------------------------------------------------------------


async def admin_home(ctx: Ctx, form: Any) -> Response:
    days = ctx.query("days", validate.integer(1, 366), 30)
    since = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=days - 1)
    return await _show(ctx, "admin_report.html", rows=await odata.report(ctx.conn, ctx.who, since), days=days)


def _offer_form(form: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in form.items() if v != ""}


async def admin_offers(ctx: Ctx, form: Any) -> Response:
    if form is not None:
        values = validate.fields(_offer_form(form), api_operator.OFFER)
        created = await odata.create_offer(ctx.conn, ctx.who, values)
        return _back("/admin/offers", f"Offer {created['name']} created.")
    return await _show(
        ctx,
        "admin_offers.html",
        offers=await odata.offers(ctx.conn, ctx.who),
        merchants=await odata.merchants(ctx.conn, ctx.who),
    )


async def admin_partners(ctx: Ctx, form: Any) -> Response:
    if form is not None:
        if "status" in form and "partner_id" in form:
            partner_id = validate.integer(1)("partner_id", form.pop("partner_id"))
            values = validate.fields(form, api_operator.PARTNER_STATUS)
            await odata.set_partner_status(ctx.conn, ctx.who, partner_id, values.get("merchant_id"), values["status"])
            return _back("/admin/partners", f"Partner {partner_id} is {values['status']}.")
        values = validate.fields(form, api_operator.NEW_PARTNER)
        values["email"] = users.check_email(values["email"])
        invite = values.pop("invite", "yes") == "yes"
        created = await odata.create_partner(ctx.conn, ctx.who, values)
        if invite:
            await users.invite(
                ctx.conn,
                ctx.portal.settings,
                values["email"],
                values["name"],
                "partner",
                created["id"],
                created["merchant_id"],
            )
        return _back("/admin/partners", "Partner added and invited.")
    return await _show(
        ctx,
        "admin_partners.html",
        partners=await odata.partners(ctx.conn, ctx.who),
        merchants=await odata.merchants(ctx.conn, ctx.who),
    )


async def admin_statements(ctx: Ctx, form: Any) -> Response:
    if form is not None:
        statement_id = validate.integer(1)("statement_id", form.get("statement_id"))
        action = validate.choice("close", "paid")("action", form.get("action"))
        await odata.finish_statement(ctx.conn, ctx.who, statement_id, action)
        return _back("/admin/statements", f"Statement {statement_id}: {action}.")
    return await _show(
        ctx,
        "statements.html",
        statements=await odata.statements(ctx.conn, ctx.who, None),
        base="/api/v1/admin/statements",
    )


async def admin_audit(ctx: Ctx, form: Any) -> Response:
    return await _show(ctx, "admin_audit.html", entries=await odata.audit_log(ctx.conn, ctx.who, 300))


def _options(merchants: list[dict[str, Any]], who: Any) -> list[dict[str, Any]]:
    if who.role != "network":
        return []
    return [{"name": "merchant_id", "label": "Merchant", "options": [(m["id"], m["name"]) for m in merchants]}]


async def admin_links(ctx: Ctx, form: Any) -> Response:
    if form is not None:
        if "link_id" in form:
            link_id = validate.integer(1)("link_id", form.pop("link_id"))
            values = validate.fields(form, api_operator.LINK_STATUS)
            await odata.set_link_status(ctx.conn, ctx.who, link_id, values["status"])
            return _back("/admin/links", f"Link {link_id} is {values['status']}.")
        made = await odata.create_link(ctx.conn, ctx.who, validate.fields(form, api_operator.NEW_LINK))
        return _back("/admin/links", f"Link {made['code']} created.")
    offers = await odata.offers(ctx.conn, ctx.who)
    partners = await odata.partners(ctx.conn, ctx.who)
    return await _show(
        ctx,
        "admin_table.html",
        title="Links",
        table_id="links",
        columns=[
            ("#", "id"),
            ("Code", "code"),
            ("Partner", "partner_id"),
            ("Offer", "offer_id"),
            ("Banner", "creative_id"),
            ("Status", "status"),
        ],
        rows=await odata.links(ctx.conn, ctx.who),
        row_actions=lambda r: [
            {
                "label": "Pause" if r["status"] == "active" else "Resume",
                "fields": {"link_id": r["id"], "status": "paused" if r["status"] == "active" else "active"},
            }
        ],
        form={
            "title": "New link",
            "id": "new-link",
            "button": "Create link",
            "fields": [
                {"name": "offer_id", "label": "Offer", "options": [(o["id"], o["name"]) for o in offers]},
                {"name": "partner_id", "label": "Partner", "options": sorted({(p["id"], p["name"]) for p in partners})},
            ],
        },
    )


async def admin_creatives(ctx: Ctx, form: Any) -> Response:
    if form is not None:
        image = form.pop("image", b"")
        values = validate.fields(form, {k: v for k, v in api_operator.NEW_CREATIVE.items() if k != "image_base64"})
        await odata.create_creative(
            ctx.conn, ctx.who, values["offer_id"], values["name"], values.get("alt_text", ""), image
        )
        return _back("/admin/creatives", f"Banner {values['name']} uploaded.")
    offers = await odata.offers(ctx.conn, ctx.who)
    return await _show(
        ctx,
        "admin_table.html",
        title="Banners",
        table_id="creatives",
        row_actions=None,
        columns=[
            ("#", "id"),
            ("Offer", "offer_id"),
            ("Name", "name"),
            ("Type", "content_type"),
            ("Width", "width"),
            ("Height", "height"),
            ("Bytes", "bytes"),
        ],
        rows=await odata.creatives(ctx.conn, ctx.who),
        form={
            "title": "Upload a banner (PNG, GIF, JPEG or WebP, at most 1 MiB)",
            "id": "new-creative",
            "button": "Upload",
            "multipart": True,
            "fields": [
                {"name": "offer_id", "label": "Offer", "options": [(o["id"], o["name"]) for o in offers]},
                {"name": "name", "label": "Name", "required": True},
                {"name": "alt_text", "label": "Alt text"},
                {
                    "name": "image",
                    "label": "Image",
                    "type": "file",
                    "required": True,
                    "accept": "image/png,image/gif,image/jpeg,image/webp",
                },
            ],
        },
    )


async def admin_products(ctx: Ctx, form: Any) -> Response:
    if form is not None:
        values = validate.fields(form, api_operator.PRODUCT)
        values["wholesale_minor"] = validate.money("wholesale", values.pop("wholesale"), values["currency"])
        await odata.set_product(ctx.conn, ctx.who, values)
        return _back("/admin/products", f"Wholesale price of {values['sku']} set.")
    merchants = await odata.merchants(ctx.conn, ctx.who)
    return await _show(
        ctx,
        "admin_table.html",
        title="Products and wholesale prices",
        table_id="products",
        row_actions=None,
        columns=[
            ("Merchant", "merchant_id"),
            ("SKU", "sku"),
            ("Name", "name"),
            ("Wholesale", "wholesale"),
            ("Currency", "currency"),
            ("In force from", "valid_from"),
        ],
        rows=await odata.products(ctx.conn, ctx.who),
        form={
            "title": "Set a product's wholesale price (a new version from now)",
            "id": "new-product",
            "button": "Save",
            "fields": [
                *_options(merchants, ctx.who),
                {"name": "sku", "label": "SKU", "required": True},
                {"name": "name", "label": "Name", "required": True},
                {"name": "wholesale", "label": "Wholesale price, e.g. 12.50", "required": True},
                {"name": "currency", "label": "Currency", "required": True},
            ],
        },
    )


async def admin_rates(ctx: Ctx, form: Any) -> Response:
    if form is not None:
        await odata.add_rate(ctx.conn, ctx.who, validate.fields(form, api_operator.RATE))
        return _back("/admin/rates", "Rate added.")
    merchants = await odata.merchants(ctx.conn, ctx.who)
    return await _show(
        ctx,
        "admin_table.html",
        title="Currency rates",
        table_id="rates",
        row_actions=None,
        columns=[
            ("Merchant", "merchant_id"),
            ("Base", "base"),
            ("Quote", "quote"),
            ("Rate", "rate"),
            ("From", "valid_from"),
        ],
        rows=await odata.rates(ctx.conn, ctx.who),
        form={
            "title": "Add a rate: 1 base = rate quote",
            "id": "new-rate",
            "button": "Add",
            "fields": [
                *_options(merchants, ctx.who),
                {"name": "base", "label": "Base currency", "required": True},
                {"name": "quote", "label": "Quote currency", "required": True},
                {"name": "rate", "label": "Rate, e.g. 1.0825", "required": True},
            ],
        },
    )


def routes() -> list[Route]:
    return [
        Route("/", home),
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login_submit, methods=["POST"]),
        Route("/m/{slug}", login_page, methods=["GET"]),
        Route("/logout", logout_submit, methods=["POST"]),
        Route("/forgot", forgot, methods=["GET", "POST"]),
        Route("/reset", reset_page, methods=["GET", "POST"]),
        page("/dashboard", dashboard, "partner"),
        page("/orders", orders_page, "partner"),
        page("/offers", offers_page, "partner"),
        page("/links", links_page, "partner", ("GET", "POST")),
        page("/prices", prices_page, "partner", ("GET", "POST")),
        page("/postbacks", postbacks_page, "partner", ("GET", "POST")),
        page("/statements", statements_page, "partner"),
        page("/statements/{statement_id}", statement_page, "partner"),
        page("/admin", admin_home, "operator"),
        page("/admin/offers", admin_offers, "operator", ("GET", "POST")),
        page("/admin/partners", admin_partners, "operator", ("GET", "POST")),
        page("/admin/statements", admin_statements, "operator", ("GET", "POST")),
        page("/admin/audit", admin_audit, "operator"),
        page("/admin/links", admin_links, "operator", ("GET", "POST")),
        page("/admin/creatives", admin_creatives, "operator", ("GET", "POST")),
        page("/admin/products", admin_products, "operator", ("GET", "POST")),
        page("/admin/rates", admin_rates, "operator", ("GET", "POST")),
    ]
