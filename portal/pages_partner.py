"""The partner's pages: dashboard, orders and customers, offers, links, prices, postbacks, statements."""

from __future__ import annotations

import datetime as dt
from typing import Any

from starlette.responses import Response

from portal import api_partner, charts, passwords, validate
from portal import partner_data as pdata
from portal import postbacks as pb
from portal.api import Ctx
from portal.errors import ApiError
from portal.pages import back, show


async def dashboard(ctx: Ctx, form: Any) -> Response:
    range_ = ctx.query("range", validate.choice(*pdata.RANGES), "7d")
    by_day = await pdata.stats(ctx.conn, ctx.partner_id, range_, "day")
    by = {g: (await pdata.stats(ctx.conn, ctx.partner_id, range_, g))["rows"] for g in ("offer", "sub1", "country")}
    days: dict[str, int] = {}
    for row in by_day["rows"]:
        days[row["key"]] = days.get(row["key"], 0) + row["clicks"]
    since = dt.date.fromisoformat(by_day["since"])
    today = dt.datetime.now(dt.UTC).date()
    series = [
        ((since + dt.timedelta(days=i)).isoformat(), days.get((since + dt.timedelta(days=i)).isoformat(), 0))
        for i in range((today - since).days + 1)
    ]
    chart = charts.bars(series, f"Clicks per day, {range_}")
    return await show(ctx, "dashboard.html", stats=by_day, by=by, chart=chart, range=range_, ranges=list(pdata.RANGES))


async def orders_page(ctx: Ctx, form: Any) -> Response:
    return await show(
        ctx,
        "orders.html",
        orders=await pdata.orders(ctx.conn, ctx.partner_id, 100),
        customers=await pdata.customers(ctx.conn, ctx.partner_id, 100),
    )


async def offers_page(ctx: Ctx, form: Any) -> Response:
    return await show(
        ctx, "offers.html", offers=await pdata.offers(ctx.conn, ctx.partner_id, api_partner.counters(ctx))
    )


async def links_page(ctx: Ctx, form: Any) -> Response:
    tracker = ctx.portal.settings.tracker_url
    if form is not None:
        values = await ctx.fields(form, api_partner.NEW_LINK)
        await pdata.create_link(ctx.conn, ctx.partner_id, values["offer_id"], values.get("creative_id"), tracker)
        return back("/links", "Link created.")
    built = None
    link_id = ctx.query("link", validate.integer(1), None)
    if link_id is not None:
        subs = {f"sub{i}": v for i in range(1, 6) if (v := ctx.request.query_params.get(f"sub{i}", "").strip())}
        for name, value in subs.items():
            validate.text(1, 200)(name, value)
        deep = ctx.query("url", validate.url, None)
        built = await pdata.build_link(ctx.conn, ctx.partner_id, link_id, tracker, subs, deep)
    return await show(
        ctx,
        "links.html",
        links=await pdata.links(ctx.conn, ctx.partner_id, tracker),
        offers=await pdata.offers(ctx.conn, ctx.partner_id, api_partner.counters(ctx)),
        built=built,
        link_id=link_id,
    )


async def prices_page(ctx: Ctx, form: Any) -> Response:
    if form is not None:
        values = await ctx.fields(form, api_partner.SET_PRICE)
        rows = {(r["merchant_id"], r["sku"]): r for r in await pdata.prices(ctx.conn, ctx.partner_id)}
        product = rows.get((values["merchant_id"], values["sku"]))
        if product is None:
            raise ApiError(404, "not_found", "no such product")
        retail = validate.money("retail", values["retail"], product["currency"])
        await pdata.set_price(ctx.conn, ctx.partner_id, values["merchant_id"], values["sku"], retail)
        return back("/prices", f"Price of {values['sku']} set.")
    secret = ctx.portal.settings.core.secret_key
    products = await pdata.prices(ctx.conn, ctx.partner_id)
    feeds = sorted({(p["merchant"], passwords.feed_token(secret, p["merchant_id"], ctx.partner_id)) for p in products})
    return await show(ctx, "prices.html", products=products, feeds=feeds)


async def postbacks_page(ctx: Ctx, form: Any) -> Response:
    if form is not None:
        if form.get("delete"):
            await pb.delete(ctx.conn, ctx.partner_id, await ctx.ref("delete", "postback", form["delete"]))
            return back("/postbacks", "Postback deleted.")
        values = await ctx.fields(form, api_partner.NEW_POSTBACK)
        events = ["action", "purchase"] if values.get("events", "all") == "all" else [values["events"]]
        await pb.create(ctx.conn, ctx.partner_id, values["url"], events, ctx.portal.settings.egress)
        return back("/postbacks", "Postback added.")
    listing = await pb.listing(ctx.conn, ctx.partner_id)
    log = {p["id"]: await pb.deliveries(ctx.conn, ctx.partner_id, p["id"]) for p in listing}
    return await show(ctx, "postbacks.html", postbacks=listing, log=log, macros=pb.MACROS)


async def statements_page(ctx: Ctx, form: Any) -> Response:
    return await show(
        ctx,
        "statements.html",
        statements=await pdata.statements(ctx.conn, ctx.partner_id),
        base="/api/v1/partner/statements",
    )


async def statement_page(ctx: Ctx, form: Any) -> Response:
    statement = await pdata.statement(ctx.conn, ctx.partner_id, ctx.path_int("statement_id"))
    return await show(ctx, "statement.html", s=statement, base="/api/v1/partner/statements")
