"""The partner's API: its stats, orders, customers, offers, links, prices, postbacks and statements.
Every handler passes ctx.partner_id (from the credential) to the data layer, nothing else."""

from __future__ import annotations

import datetime as dt
from typing import Any

from starlette.responses import Response

from billing.public import statements as billing_statements
from portal import invitations, passwords, postbacks, validate
from portal import partner_data as data
from portal import partner_prices as pprices
from portal import partner_statements as pstatements
from portal.api import Ctx, Endpoint
from portal.errors import ApiError, invalid

_RANGE = {"type": "string", "enum": list(data.RANGES)}
_GROUP = {"type": "string", "enum": list(data.GROUPS)}
_LIMIT = {"type": "integer", "minimum": 1, "maximum": 500}
_DAY = {"type": "string", "format": "date", "description": "a UTC day, YYYY-MM-DD; overrides range"}
_SUBS = {f"sub{i}": {"type": "string", "maxLength": 200} for i in range(1, 6)}


def stats_window(ctx: Ctx) -> tuple[str, Any, Any]:
    """range (today, 7d, 30d), or from/to (UTC days, both included, at most 366 days)."""
    range_ = ctx.query("range", validate.choice(*data.RANGES), "7d")
    since, until = ctx.query("from", validate.date, None), ctx.query("to", validate.date, None)
    if since is not None or until is not None:
        until = until or dt.datetime.now(dt.UTC).date()
        since = since or until
        if since > until or (until - since).days > 365:
            raise invalid("from", "must be on or before to, at most 366 days before it")
    return range_, since, until


async def stats(ctx: Ctx) -> Any:
    range_, since, until = stats_window(ctx)
    group = ctx.query("group", validate.choice(*data.GROUPS), "day")
    return await data.stats(ctx.conn, ctx.partner_id, range_, group, since, until)


async def orders(ctx: Ctx) -> Any:
    return {"orders": await data.orders(ctx.conn, ctx.partner_id, ctx.query("limit", validate.integer(1, 500), 50))}


async def customers(ctx: Ctx) -> Any:
    limit = ctx.query("limit", validate.integer(1, 500), 100)
    return {"customers": await data.customers(ctx.conn, ctx.partner_id, limit)}


def counters(ctx: Ctx) -> data.Counters:
    return ctx.portal.redis, ctx.portal.settings.core.key_prefix


async def offers(ctx: Ctx) -> Any:
    return {"offers": await data.offers(ctx.conn, ctx.partner_id, counters(ctx))}


async def offer(ctx: Ctx) -> Any:
    return await data.offer(ctx.conn, ctx.partner_id, ctx.path_int("offer_id"), counters(ctx))


async def creatives(ctx: Ctx) -> Any:
    return {"creatives": await data.creatives(ctx.conn, ctx.partner_id)}


async def links(ctx: Ctx) -> Any:
    return {"links": await data.links(ctx.conn, ctx.partner_id, ctx.portal.settings.tracker_url)}


async def link(ctx: Ctx) -> Any:
    return await data.link(ctx.conn, ctx.partner_id, ctx.path_int("link_id"), ctx.portal.settings.tracker_url)


NEW_LINK = {"offer_id": (validate.ref("offer"), True), "creative_id": (validate.ref("creative"), False)}


async def create_link(ctx: Ctx) -> Any:
    values = await ctx.body(NEW_LINK)
    return await data.create_link(
        ctx.conn, ctx.partner_id, values["offer_id"], values.get("creative_id"), ctx.portal.settings.tracker_url
    )


async def build_link(ctx: Ctx) -> Any:
    subs = {}
    for i in range(1, 6):
        value = ctx.query(f"sub{i}", validate.text(1, 200), None)
        if value:
            subs[f"sub{i}"] = value
    deep = ctx.query("url", validate.url, None)
    return await data.build_link(
        ctx.conn, ctx.partner_id, ctx.path_int("link_id"), ctx.portal.settings.tracker_url, subs, deep
    )


async def prices(ctx: Ctx) -> Any:
    rows = await pprices.prices(ctx.conn, ctx.partner_id)
    secret = ctx.portal.settings.core.secret_key
    feeds = {
        r["merchant_id"]: f"/feeds/prices/{passwords.feed_token(secret, r['merchant_id'], ctx.partner_id)}.json"
        for r in rows
    }
    return {"products": rows, "feeds": [{"merchant_id": m, "url": u} for m, u in sorted(feeds.items())]}


SET_PRICE = {
    "merchant_id": (validate.ref("merchant"), True),  # a programme that approved the partner
    "sku": (validate.sku, True),
    "retail": (validate.decimal_text, True),
}


async def set_price(ctx: Ctx) -> Any:
    values = await ctx.body(SET_PRICE)
    # The product as the partner sees it (its approved programmes only): another merchant's SKU is not there.
    currency = await pprices.product_currency(ctx.conn, ctx.partner_id, values["merchant_id"], values["sku"])
    retail = validate.money("retail", values["retail"], currency)
    return await pprices.set_price(ctx.conn, ctx.partner_id, values["merchant_id"], values["sku"], retail)


async def statements(ctx: Ctx) -> Any:
    return {"statements": await pstatements.statements(ctx.conn, ctx.partner_id)}


async def statement(ctx: Ctx) -> Any:
    return await pstatements.statement(ctx.conn, ctx.partner_id, ctx.path_int("statement_id"))


async def _export(ctx: Ctx, kind: str) -> Response:
    statement_id = ctx.path_int("statement_id")
    await pstatements.owns_statement(ctx.conn, ctx.partner_id, statement_id)
    return await export_response(ctx, statement_id, kind)


async def export_response(ctx: Ctx, statement_id: int, kind: str) -> Response:
    number = await ctx.conn.fetchval("SELECT number FROM statements WHERE id = $1", statement_id)
    body = await billing_statements.export(ctx.conn, statement_id, kind)
    media = "application/pdf" if kind == "pdf" else "text/csv; charset=utf-8"
    return Response(
        body,
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="statement-{number}.{kind}"'},
    )


async def statement_csv(ctx: Ctx) -> Response:
    return await _export(ctx, "csv")


async def statement_detail(ctx: Ctx) -> Response:
    statement_id = ctx.path_int("statement_id")
    await pstatements.owns_statement(ctx.conn, ctx.partner_id, statement_id)
    return await detail_response(ctx, statement_id)


async def detail_response(ctx: Ctx, statement_id: int) -> Response:
    """The events of each line (or of line `line`) as CSV: a grouped line traces to every event it pays."""
    line_id = ctx.query("line", validate.integer(1), None)
    number = await ctx.conn.fetchval("SELECT number FROM statements WHERE id = $1", statement_id)
    body = await billing_statements.detail(ctx.conn, statement_id, line_id)
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="statement-{number}-events.csv"'},
    )


async def statement_pdf(ctx: Ctx) -> Response:
    return await _export(ctx, "pdf")


async def programmes(ctx: Ctx) -> Any:
    rows = await ctx.conn.fetch(
        """SELECT m.id AS merchant_id, m.slug, m.name, pp.status FROM partner_programmes pp
           JOIN merchants m ON m.id = pp.merchant_id WHERE pp.partner_id = $1 ORDER BY m.name""",
        ctx.partner_id,
    )
    invited = await invitations.pending_for(ctx.conn, ctx.partner_id)
    return {
        "programmes": [dict(r) for r in rows if r["merchant_id"] not in {i["merchant_id"] for i in invited}] + invited
    }


APPLY = {
    "merchant": (validate.slug, True),
    "site_url": (validate.url, False),  # where the partner will promote the programme
    "promotion": (validate.text(1, 1000), False),  # how: coupons, newsletter, reviews, social...
}


async def apply(ctx: Ctx) -> Any:
    """Apply to another merchant's programme (its operators approve or reject), or accept its invitation."""
    values = await ctx.body(APPLY)
    return await join(ctx.conn, ctx.partner_id, values["merchant"], values.get("site_url"), values.get("promotion"))


async def join(
    conn: Any, partner_id: int, slug: str, site_url: str | None = None, promotion: str | None = None
) -> dict[str, Any]:
    """The partner applies to the programme of merchant `slug` (or accepts its invitation): its new status.
    Its site and promotion methods go with the application for the merchant's operators to read."""
    merchant_id = await conn.fetchval("SELECT id FROM merchants WHERE slug = $1", slug)
    if merchant_id is None:
        raise ApiError(404, "not_found", "no such merchant")
    if await invitations.accept_as_partner(conn, partner_id, merchant_id):
        return {"merchant_id": merchant_id, "status": "approved"}
    await conn.execute(
        """INSERT INTO partner_programmes (partner_id, merchant_id, status, site_url, promotion, applied_at)
           VALUES ($1, $2, 'applied', $3, $4, now())
           ON CONFLICT (partner_id, merchant_id) DO NOTHING""",
        partner_id,
        merchant_id,
        site_url,
        promotion,
    )
    status = await conn.fetchval(
        "SELECT status FROM partner_programmes WHERE partner_id = $1 AND merchant_id = $2", partner_id, merchant_id
    )
    return {"merchant_id": merchant_id, "status": status}


async def postback_list(ctx: Ctx) -> Any:
    return {"postbacks": await postbacks.listing(ctx.conn, ctx.partner_id)}


NEW_POSTBACK = {
    "url": (validate.url, True),
    "events": (validate.choice("action", "purchase", "all"), False),
}


async def postback_create(ctx: Ctx) -> Any:
    values = await ctx.body(NEW_POSTBACK)
    events = ["action", "purchase"] if values.get("events", "all") == "all" else [values["events"]]
    return await postbacks.create(ctx.conn, ctx.partner_id, values["url"], events, ctx.portal.settings.egress)


async def postback_delete(ctx: Ctx) -> Any:
    await postbacks.delete(ctx.conn, ctx.partner_id, ctx.path_int("postback_id"))
    return {"deleted": True}


async def postback_deliveries(ctx: Ctx) -> Any:
    return {"deliveries": await postbacks.deliveries(ctx.conn, ctx.partner_id, ctx.path_int("postback_id"))}


def _p(method: str, path: str, handler: Any, summary: str, **kw: Any) -> Endpoint:
    return Endpoint(method, "/api/v1/partner" + path, handler, "partner", summary, tag="partner", **kw)


ENDPOINTS = [
    _p(
        "GET",
        "/stats",
        stats,
        "Traffic (views, clicks, bots, actions) from the live rollups; sales and commission per currency (pending,"
        " approved, reversed, paid, rejected) from the ledger statements are made of",
        query={"range": _RANGE, "group": _GROUP, "from": _DAY, "to": _DAY},
    ),
    _p("GET", "/orders", orders, "Recent orders and actions of its customers, with status", query={"limit": _LIMIT}),
    _p(
        "GET",
        "/customers",
        customers,
        "The customers it referred, with first order and totals",
        query={"limit": _LIMIT},
    ),
    _p("GET", "/offers", offers, "Offers open to the partner, partner-only upcoming sales included"),
    _p("GET", "/offers/{offer_id}", offer, "One offer open to the partner"),
    _p("GET", "/creatives", creatives, "Banners of the offers open to the partner"),
    _p("GET", "/programmes", programmes, "The merchants' programmes it belongs to or applied to"),
    _p(
        "POST",
        "/programmes",
        apply,
        "Apply to a merchant's programme, or accept its invitation to the partner's own address",
        body=APPLY,
        status=201,
    ),
    _p("GET", "/links", links, "Its tracking links with ready-to-paste snippets"),
    _p("POST", "/links", create_link, "Create a tracking link on an open offer", body=NEW_LINK, status=201),
    _p("GET", "/links/{link_id}", link, "One tracking link with its snippets"),
    _p(
        "GET",
        "/links/{link_id}/build",
        build_link,
        "Link builder: sub ids and a deep link on an allowed host",
        query={**_SUBS, "url": {"type": "string", "format": "uri"}},
    ),
    _p("GET", "/prices", prices, "Its retail prices for markup offers, beside the wholesale price, and its feeds"),
    _p("POST", "/prices", set_price, "Set a retail price version (never below wholesale)", body=SET_PRICE, status=201),
    _p("GET", "/postbacks", postback_list, "Its outbound server-to-server postbacks"),
    _p(
        "POST",
        "/postbacks",
        postback_create,
        "Add an outbound postback URL (macros, signed)",
        body=NEW_POSTBACK,
        status=201,
    ),
    _p("DELETE", "/postbacks/{postback_id}", postback_delete, "Delete an outbound postback"),
    _p("GET", "/postbacks/{postback_id}/deliveries", postback_deliveries, "The delivery log of a postback"),
    _p("GET", "/statements", statements, "Its statements"),
    _p("GET", "/statements/{statement_id}", statement, "One statement with its lines"),
    _p("GET", "/statements/{statement_id}/csv", statement_csv, "The statement as CSV", produces="text/csv"),
    _p("GET", "/statements/{statement_id}/pdf", statement_pdf, "The statement as PDF", produces="application/pdf"),
    _p(
        "GET",
        "/statements/{statement_id}/detail",
        statement_detail,
        "The event ids of each line of the statement (or of one line: ?line=ID), as CSV; column titles in the "
        "statement's language (English before layout 3), values machine text",
        query={"line": {"type": "integer", "minimum": 1}},
        produces="text/csv",
    ),
]
