"""The operator's pages: partners, statements, audit log, conversions, links, banners, products, rates (the report is
in pages_report, the offers in pages_offers)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from starlette.responses import Response

from kernel.sealed import Sealer
from portal import api_operator, formats, invitations, partner_admin, validate
from portal import operator_data as odata
from portal.api import Ctx
from portal.errors import invalid
from portal.pages import back, show


async def _names(ctx: Ctx) -> dict[str, dict[int, str]]:
    """Names to show instead of ids ("Winter sale #12"), for the objects in the operator's scope."""
    offers = await odata.offers(ctx.conn, ctx.who)
    partners = await odata.partners(ctx.conn, ctx.who)
    merchants = await odata.merchants(ctx.conn, ctx.who)
    creatives = await odata.creatives(ctx.conn, ctx.who)
    return {
        "offer_id": {o["id"]: o["name"] for o in offers},
        "partner_id": {p["id"]: p["name"] for p in partners},
        "merchant_id": {m["id"]: m["name"] for m in merchants},
        "creative_id": {c["id"]: c["name"] for c in creatives},
    }


def _named(rows: list[dict[str, Any]], names: dict[str, dict[int, str]]) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        item = dict(row)
        for key, table in names.items():
            if key in item:
                value = item[key]
                item[key.removesuffix("_id")] = None if value is None else f"{table.get(value, '?')} #{value}"
        out.append(item)
    return out


async def admin_partners(ctx: Ctx, form: Any) -> Response:
    """Partners and applications (site, promotion methods), one status button per row, bulk approve, invitations."""
    if form is not None:
        picked = [k for k in form if k.startswith("pick_")]
        if form.get("bulk") == "approved":
            if not picked:
                raise invalid("bulk", "tick at least one application to approve")
            for key in picked[:200]:
                partner_raw, _, merchant_raw = key.removeprefix("pick_").partition("_")
                partner_id = await ctx.ref(key, "partner", partner_raw)
                merchant_id = validate.integer(1)(key, merchant_raw)
                await odata.set_partner_status(ctx.conn, ctx.who, partner_id, merchant_id, "approved")
            return back("/admin/partners", f"{len(picked[:200])} approved.")
        if "status" in form and "partner_id" in form:
            partner_id = await ctx.ref("partner_id", "partner", form.pop("partner_id"))
            values = await ctx.fields(form, api_operator.PARTNER_STATUS)
            await odata.set_partner_status(ctx.conn, ctx.who, partner_id, values.get("merchant_id"), values["status"])
            return back("/admin/partners", f"Partner {partner_id} is {values['status']}.")
        if form.get("action") == "listing":
            merchant_id = odata.scope_merchant(ctx.who, validate.integer(1)("merchant_id", form.get("merchant_id")))
            listed = form.get("listed") == "true"
            await ctx.conn.execute("UPDATE merchants SET listed = $2 WHERE id = $1", merchant_id, listed)
            await odata.audit(ctx.conn, ctx.who, merchant_id, "set_listed", "merchant", merchant_id, {"listed": listed})
            return back("/admin/partners", "Listed in the marketplace." if listed else "No longer in the marketplace.")
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
        partners=await partner_admin.listing(ctx.conn, ctx.who),
        invitations=await invitations.listing(ctx.conn, ctx.who),
        merchants=await odata.merchants(ctx.conn, ctx.who),
        listed=await partner_admin.listed(ctx.conn, ctx.who),
    )


async def admin_partner(ctx: Ctx, form: Any) -> Response:
    """One partner: figures this month and last, its links and statements."""
    partner_id = ctx.path_int("partner_id")
    if form is not None:
        merchant_id = odata.scope_merchant(ctx.who, validate.integer(1)("merchant_id", form.get("merchant_id")))
        text = validate.text(1, 2000)("note", str(form.get("note", "")).strip())
        await partner_admin.detail(ctx.conn, ctx.who, partner_id, dt.datetime.now(dt.UTC).date())  # in scope
        member = await ctx.conn.fetchval(
            "SELECT 1 FROM partner_programmes WHERE partner_id = $1 AND merchant_id = $2", partner_id, merchant_id
        )
        if not member:
            raise invalid("merchant_id", "this partner is not in that programme")
        await partner_admin.add_note(ctx.conn, ctx.who, partner_id, merchant_id, text)
        return back(f"/admin/partners/{partner_id}", "Note added.")
    today = dt.datetime.now(dt.UTC).date()
    found = await partner_admin.detail(ctx.conn, ctx.who, partner_id, today)
    names = await _names(ctx)
    found["links"] = _named(found["links"], names)
    return await show(ctx, "admin_partner.html", **found)


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
        {
            **c,
            "when": c["ts"][:16].replace("T", " "),
            "source": f"{c['via'] or ''}{' (authenticated)' if c['authenticated'] else ''}",
            "money": formats.money(c["amount"], c["currency"]) if c["amount"] is not None else None,
        }
        for c in _named(found["conversions"], await _names(ctx))
    ]
    return await show(
        ctx,
        "admin_table.html",
        title="Conversions",
        table_id="conversions",
        row_actions=None,
        columns=[
            ("When (UTC)", "when"),
            ("Offer", "offer"),
            ("Partner", "partner"),
            ("Kind", "kind"),
            ("Order", "order_id"),
            ("Amount", "money"),
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
            ("Partner", "partner"),
            ("Offer", "offer"),
            ("Banner", "creative"),
            ("Status", "status"),
        ],
        rows=_named(await odata.links(ctx.conn, ctx.who), await _names(ctx)),
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
            ("Offer", "offer"),
            ("Name", "name"),
            ("Type", "content_type"),
            ("Width", "width"),
            ("Height", "height"),
            ("Bytes", "bytes"),
        ],
        rows=_named(await odata.creatives(ctx.conn, ctx.who), await _names(ctx)),
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
            ("Merchant", "merchant"),
            ("SKU", "sku"),
            ("Name", "name"),
            ("Wholesale", "price"),
            ("In force from", "valid_from"),
        ],
        rows=[
            {**r, "price": formats.money(r["wholesale"], r["currency"]) if r["currency"] else None}
            for r in _named(await odata.products(ctx.conn, ctx.who), await _names(ctx))
        ],
        form={
            "title": "Set a product's wholesale price (a new version from now)",
            "id": "new-product",
            "button": "Save",
            "fields": [
                *_options(merchants, ctx.who),
                {"name": "sku", "label": "SKU", "required": True},
                {"name": "name", "label": "Name", "required": True},
                {
                    "name": "wholesale",
                    "label": "Wholesale price",
                    "hint": "as you write it, e.g. 12.50",
                    "required": True,
                },
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
            ("Merchant", "merchant"),
            ("Base", "base"),
            ("Quote", "quote"),
            ("Rate", "rate"),
            ("From", "valid_from"),
        ],
        rows=_named(await odata.rates(ctx.conn, ctx.who), await _names(ctx)),
        form={
            "title": "Add a rate: 1 base = rate quote",
            "id": "new-rate",
            "button": "Add",
            "fields": [
                *_options(merchants, ctx.who),
                {"name": "base", "label": "Base currency", "required": True},
                {"name": "quote", "label": "Quote currency", "required": True},
                {"name": "rate", "label": "Rate", "hint": "1 base = this many quote, e.g. 1.0825", "required": True},
            ],
        },
    )
