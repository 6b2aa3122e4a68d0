"""The partner's pages: dashboard, orders and customers, offers, links, prices, postbacks, statements."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import quote

from starlette.responses import RedirectResponse, Response

from portal import api_partner, charts, formats, i18n, passwords, programmes, validate
from portal import dashboard as board
from portal import partner_data as pdata
from portal import partner_prices as pprices
from portal import partner_statements as pstatements
from portal import postbacks as pb
from portal.api import Ctx
from portal.errors import ApiError, invalid
from portal.pages import FAILED, Failed, back, failed_form, show

SUBS = tuple(f"sub{i}" for i in range(1, 6))


async def dashboard(ctx: Ctx, form: Any) -> Response:
    """One date range for the whole page (in the URL), balance, KPIs against the previous period, trend, tables."""
    today = dt.datetime.now(dt.UTC).date()
    preset = ctx.request.query_params.get("range") or "7d"
    metric = ctx.request.query_params.get("metric") or "clicks"
    raw = {k: ctx.request.query_params.get(k, "") for k in ("range", "from", "to", "metric")}
    failed = None
    try:
        if metric not in board.METRICS:
            raise invalid("metric", f"must be one of {', '.join(board.METRICS)}")
        since = ctx.query("from", validate.date, None)
        until = ctx.query("to", validate.date, None)
        win = board.window(preset, since, until, today)
    except ApiError as exc:
        failed = failed_form(exc, raw)
        metric, win = "clicks", board.window("7d", None, None, today)
    shown = await board.figures(ctx.conn, ctx.partner_id, win, metric)
    ccy = shown["trend_currency"]
    chart = charts.bars(
        shown["trend"],
        i18n.gettext_("%(metric)s per day, %(period)s")
        % {"metric": i18n.gettext_(board.METRICS[metric]), "period": win.label}
        + (f", {ccy}" if metric == "commission" else ""),
        label=(lambda v: formats.money(v, ccy).removesuffix(f" {ccy}")) if metric == "commission" and ccy else str,
        unit=ccy or "" if metric == "commission" else i18n.gettext_(board.METRICS[metric]).lower(),
    )
    by = {
        g: (await pdata.stats(ctx.conn, ctx.partner_id, "7d", g, win.since, win.until))["rows"]
        for g in ("offer", "sub1", "country")
    }
    return await show(
        ctx,
        "dashboard.html",
        failed=failed,
        win=win,
        presets={k: i18n.gettext_(v) for k, v in board.PRESETS.items()},
        metrics={k: i18n.gettext_(v) for k, v in board.METRICS.items()},
        metric=metric,
        chart=chart,
        by=by,
        balance=await board.balance(ctx.conn, ctx.partner_id, today),
        **shown,
    )


async def orders_page(ctx: Ctx, form: Any) -> Response:
    return await show(
        ctx,
        "orders.html",
        orders=await pdata.orders(ctx.conn, ctx.partner_id, 100),
        customers=await pdata.customers(ctx.conn, ctx.partner_id, 100),
    )


async def offers_page(ctx: Ctx, form: Any) -> Response:
    """Offer cards in plain language, and the marketplace of open programmes with an apply button."""
    if form is not None:
        values = await ctx.fields({k: v for k, v in form.items() if v != ""}, api_partner.APPLY)
        joined = await api_partner.join(
            ctx.conn, ctx.partner_id, values["merchant"], values.get("site_url"), values.get("promotion")
        )
        words = {
            "approved": i18n.gettext_("You are in: its offers are below."),
            "applied": i18n.gettext_("Applied: the merchant reviews it."),
            "rejected": i18n.gettext_("The merchant did not accept your application."),
            "suspended": i18n.gettext_("The merchant suspended you from this programme."),
        }
        return back("/offers", words.get(joined["status"], joined["status"]))
    return await show(
        ctx,
        "offers.html",
        offers=await pdata.offers(ctx.conn, ctx.partner_id, api_partner.counters(ctx)),
        market=await programmes.marketplace(ctx.conn, ctx.partner_id),
        linked={r["offer_id"] for r in await pdata.links(ctx.conn, ctx.partner_id, "")},
    )


async def links_page(ctx: Ctx, form: Any) -> Response:
    """One link per offer (and banner): "Get a link" on an offer that has one goes to it. The builder is a GET
    form: its inputs stay in the URL and in the fields, and the built link shows on top."""
    tracker = ctx.portal.settings.tracker_url
    if form is not None:
        values = await ctx.fields(form, api_partner.NEW_LINK)
        existing = await ctx.conn.fetchval(
            """SELECT id FROM links WHERE partner_id = $1 AND offer_id = $2 AND creative_id IS NOT DISTINCT FROM $3
               ORDER BY id LIMIT 1""",
            ctx.partner_id,
            values["offer_id"],
            values.get("creative_id"),
        )
        if existing is not None:
            notice = quote(i18n.gettext_("You already have this link."))
            return RedirectResponse(f"/links?notice={notice}#link-{existing}", 303)
        made = await pdata.create_link(ctx.conn, ctx.partner_id, values["offer_id"], values.get("creative_id"), tracker)
        return RedirectResponse(f"/links?notice={quote(i18n.gettext_('Link created.'))}#link-{made['id']}", 303)
    built, kept = None, {k: ctx.request.query_params.get(k, "") for k in ("link", "url", *SUBS)}
    link_id = None
    failed = None
    if kept["link"]:
        try:
            link_id = validate.integer(1)("link", kept["link"])
            subs = {name: v for name in SUBS if (v := kept[name].strip())}
            for name, value in subs.items():
                validate.text(1, 200)(name, value)
            deep = validate.url("url", kept["url"]) if kept["url"].strip() else None
            built = await pdata.build_link(ctx.conn, ctx.partner_id, link_id, tracker, subs, deep)
        except ApiError as exc:
            if exc.status not in (400, 404):
                raise
            failed = failed_form(exc, kept)
    return await show(
        ctx,
        "links.html",
        failed=failed or FAILED.get() or (Failed(kept) if kept["link"] else None),
        links=await pdata.links(ctx.conn, ctx.partner_id, tracker),
        built=built,
        link_id=link_id,
        subs=SUBS,
    )


async def prices_page(ctx: Ctx, form: Any) -> Response:
    if form is not None:
        values = await ctx.fields(form, api_partner.SET_PRICE)
        rows = {(r["merchant_id"], r["sku"]): r for r in await pprices.prices(ctx.conn, ctx.partner_id)}
        product = rows.get((values["merchant_id"], values["sku"]))
        if product is None:
            raise ApiError(404, "not_found", "no such product")
        retail = validate.money("retail", values["retail"], product["currency"])
        await pprices.set_price(ctx.conn, ctx.partner_id, values["merchant_id"], values["sku"], retail)
        return back("/prices", i18n.gettext_("Price of %(sku)s set.") % {"sku": values["sku"]})
    secret = ctx.portal.settings.core.secret_key
    products = await pprices.prices(ctx.conn, ctx.partner_id)
    feeds = sorted({(p["merchant"], passwords.feed_token(secret, p["merchant_id"], ctx.partner_id)) for p in products})
    return await show(ctx, "prices.html", products=products, feeds=feeds)


async def postbacks_page(ctx: Ctx, form: Any) -> Response:
    if form is not None:
        if form.get("delete"):
            await pb.delete(ctx.conn, ctx.partner_id, await ctx.ref("delete", "postback", form["delete"]))
            return back("/postbacks", i18n.gettext_("Postback deleted."))
        values = await ctx.fields(form, api_partner.NEW_POSTBACK)
        events = ["action", "purchase"] if values.get("events", "all") == "all" else [values["events"]]
        await pb.create(ctx.conn, ctx.partner_id, values["url"], events, ctx.portal.settings.egress)
        return back("/postbacks", i18n.gettext_("Postback added."))
    listing = await pb.listing(ctx.conn, ctx.partner_id)
    log = {p["id"]: await pb.deliveries(ctx.conn, ctx.partner_id, p["id"]) for p in listing}
    return await show(ctx, "postbacks.html", postbacks=listing, log=log, macros=pb.MACROS)


async def statements_page(ctx: Ctx, form: Any) -> Response:
    return await show(
        ctx,
        "statements.html",
        statements=await pstatements.statements(ctx.conn, ctx.partner_id),
        base="/api/v1/partner/statements",
    )


async def statement_page(ctx: Ctx, form: Any) -> Response:
    statement = await pstatements.statement(ctx.conn, ctx.partner_id, ctx.path_int("statement_id"), page=True)
    return await show(ctx, "statement.html", s=statement, base="/api/v1/partner/statements")
