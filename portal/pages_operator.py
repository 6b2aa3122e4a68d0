"""The operator's pages: report, offers, partners, statements, audit log, links, banners, products, rates."""

from __future__ import annotations

import datetime as dt
from typing import Any

from starlette.responses import Response

from billing.sealed import Sealer
from portal import api_operator, invitations, validate
from portal import operator_data as odata
from portal.api import Ctx
from portal.pages import back, show


async def admin_home(ctx: Ctx, form: Any) -> Response:
    days = ctx.query("days", validate.integer(1, 366), 30)
    since = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=days - 1)
    return await show(ctx, "admin_report.html", rows=await odata.report(ctx.conn, ctx.who, since), days=days)


def _offer_form(form: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in form.items() if v != ""}


async def admin_offers(ctx: Ctx, form: Any) -> Response:
    if form is not None:
        values = await ctx.fields(_offer_form(form), api_operator.OFFER)
        created = await odata.create_offer(ctx.conn, ctx.who, values)
        return back("/admin/offers", f"Offer {created['name']} created.")
    offers = await odata.offers(ctx.conn, ctx.who)
    core = ctx.portal.settings.core
    return await show(
        ctx,
        "admin_offers.html",
        offers=offers,
        caps_used=await odata.caps_used_today(ctx.conn, ctx.portal.redis, core.key_prefix, offers),
        merchants=await odata.merchants(ctx.conn, ctx.who),
    )


async def admin_partners(ctx: Ctx, form: Any) -> Response:
    if form is not None:
        if "status" in form and "partner_id" in form:
            partner_id = await ctx.ref("partner_id", "partner", form.pop("partner_id"))
            values = await ctx.fields(form, api_operator.PARTNER_STATUS)
            await odata.set_partner_status(ctx.conn, ctx.who, partner_id, values.get("merchant_id"), values["status"])
            return back("/admin/partners", f"Partner {partner_id} is {values['status']}.")
        if "withdraw" in form:
            invitation_id = await ctx.ref("withdraw", "invitation", form["withdraw"])
            await invitations.withdraw(ctx.conn, ctx.who, invitation_id)
            return back("/admin/partners", "Invitation withdrawn.")
        values = await ctx.fields(form, api_operator.NEW_PARTNER)
        merchant_id = odata.scope_merchant(ctx.who, values.pop("merchant_id", None))
        made = await invitations.invite(ctx.conn, ctx.portal.settings, ctx.who, merchant_id, values)
        return back("/admin/partners", f"Invitation sent to {made['email']}; the partner joins when it accepts.")
    return await show(
        ctx,
        "admin_partners.html",
        partners=await odata.partners(ctx.conn, ctx.who),
        invitations=await invitations.listing(ctx.conn, ctx.who),
        merchants=await odata.merchants(ctx.conn, ctx.who),
    )


async def admin_statements(ctx: Ctx, form: Any) -> Response:
    if form is not None:
        statement_id = await ctx.ref("statement_id", "statement", form.get("statement_id"))
        action = validate.choice("close", "paid")("action", form.get("action"))
        sealer = Sealer(ctx.portal.settings.core.secret_key)  # self-billed invoices print sealed VAT numbers
        await odata.finish_statement(ctx.conn, ctx.who, statement_id, action, sealer)
        return back("/admin/statements", f"Statement {statement_id}: {action}.")
    return await show(
        ctx,
        "statements.html",
        statements=await odata.statements(ctx.conn, ctx.who, None),
        base="/api/v1/admin/statements",
    )


async def admin_conversions(ctx: Ctx, form: Any) -> Response:
    """The latest conversions with their channel and, for a refused one, why (the codes of ConversionReason)."""
    found = await odata.conversions(ctx.conn, ctx.who, None, None, 200)
    rows = [
        {**c, "when": c["ts"][:19], "source": f"{c['via'] or ''}{' (authenticated)' if c['authenticated'] else ''}"}
        for c in found["conversions"]
    ]
    return await show(
        ctx,
        "admin_table.html",
        title="Conversions",
        table_id="conversions",
        row_actions=None,
        columns=[
            ("When", "when"),
            ("Offer", "offer_id"),
            ("Partner", "partner_id"),
            ("Kind", "kind"),
            ("Order", "order_id"),
            ("Amount", "amount"),
            ("Currency", "currency"),
            ("Source", "source"),
            ("Status", "status"),
            ("Why", "reason"),
        ],
        rows=rows,
        form=None,
    )


async def admin_audit(ctx: Ctx, form: Any) -> Response:
    return await show(ctx, "admin_audit.html", entries=await odata.audit_log(ctx.conn, ctx.who, 300))


def _options(merchants: list[dict[str, Any]], who: Any) -> list[dict[str, Any]]:
    if who.role != "network":
        return []
    return [{"name": "merchant_id", "label": "Merchant", "options": [(m["id"], m["name"]) for m in merchants]}]


async def admin_links(ctx: Ctx, form: Any) -> Response:
    if form is not None:
        if "link_id" in form:
            link_id = await ctx.ref("link_id", "link", form.pop("link_id"))
            values = await ctx.fields(form, api_operator.LINK_STATUS)
            await odata.set_link_status(ctx.conn, ctx.who, link_id, values["status"])
            return back("/admin/links", f"Link {link_id} is {values['status']}.")
        made = await odata.create_link(ctx.conn, ctx.who, await ctx.fields(form, api_operator.NEW_LINK))
        return back("/admin/links", f"Link {made['code']} created.")
    offers = await odata.offers(ctx.conn, ctx.who)
    partners = await odata.partners(ctx.conn, ctx.who)
    return await show(
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
        values = await ctx.fields(form, {k: v for k, v in api_operator.NEW_CREATIVE.items() if k != "image_base64"})
        await odata.create_creative(
            ctx.conn, ctx.who, values["offer_id"], values["name"], values.get("alt_text", ""), image
        )
        return back("/admin/creatives", f"Banner {values['name']} uploaded.")
    offers = await odata.offers(ctx.conn, ctx.who)
    return await show(
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
        values = await ctx.fields(form, api_operator.PRODUCT)
        await odata.set_product(ctx.conn, ctx.who, values)
        return back("/admin/products", f"Wholesale price of {values['sku']} set.")
    merchants = await odata.merchants(ctx.conn, ctx.who)
    return await show(
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
        await odata.add_rate(ctx.conn, ctx.who, await ctx.fields(form, api_operator.RATE))
        return back("/admin/rates", "Rate added.")
    merchants = await odata.merchants(ctx.conn, ctx.who)
    return await show(
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
