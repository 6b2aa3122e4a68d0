"""The operator's pages: partners, statements, audit log, conversions, links, banners, products, rates (the report is
in pages_report, the offers in pages_offers)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from starlette.responses import Response

from kernel.sealed import Sealer
from portal import api_operator, formats, i18n, invitations, partner_admin, validate, words
from portal import operator_data as odata
from portal import operator_partners as opartners
from portal import operator_reports as oreports
from portal.api import Ctx
from portal.errors import invalid
from portal.pages import back, show


async def _names(ctx: Ctx) -> dict[str, dict[int, str]]:
    """Names to show instead of ids ("Winter sale #12"), for the objects in the operator's scope."""
    offers = await odata.offers(ctx.conn, ctx.who)
    partners = await opartners.partners(ctx.conn, ctx.who)
    merchants = await odata.merchants(ctx.conn, ctx.who)
    creatives = await opartners.creatives(ctx.conn, ctx.who)
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
                raise invalid("bulk", i18n.gettext_("tick at least one application to approve"))
            for key in picked[:200]:
                partner_raw, _, merchant_raw = key.removeprefix("pick_").partition("_")
                partner_id = await ctx.ref(key, "partner", partner_raw)
                merchant_id = validate.integer(1)(key, merchant_raw)
                await opartners.set_partner_status(ctx.conn, ctx.who, partner_id, merchant_id, "approved")
            count = len(picked[:200])
            return back(
                "/admin/partners", i18n.ngettext_("%(num)d approved.", "%(num)d approved.", count) % {"num": count}
            )
        if "status" in form and "partner_id" in form:
            partner_id = await ctx.ref("partner_id", "partner", form.pop("partner_id"))
            values = await ctx.fields(form, api_operator.PARTNER_STATUS)
            await opartners.set_partner_status(
                ctx.conn, ctx.who, partner_id, values.get("merchant_id"), values["status"]
            )
            status = {"id": partner_id, "status": words.word(values["status"])}
            return back("/admin/partners", i18n.gettext_("Partner %(id)s is %(status)s.") % status)
        if form.get("action") == "listing":
            merchant_id = odata.scope_merchant(ctx.who, validate.integer(1)("merchant_id", form.get("merchant_id")))
            listed = form.get("listed") == "true"
            await ctx.conn.execute("UPDATE merchants SET listed = $2 WHERE id = $1", merchant_id, listed)
            await odata.audit(ctx.conn, ctx.who, merchant_id, "set_listed", "merchant", merchant_id, {"listed": listed})
            listing = (
                i18n.gettext_("Listed in the marketplace.")
                if listed
                else i18n.gettext_("No longer in the marketplace.")
            )
            return back("/admin/partners", listing)
        if "withdraw" in form:
            invitation_id = await ctx.ref("withdraw", "invitation", form["withdraw"])
            await invitations.withdraw(ctx.conn, ctx.who, invitation_id)
            return back("/admin/partners", i18n.gettext_("Invitation withdrawn."))
        values = await ctx.fields(form, api_operator.NEW_PARTNER)
        merchant_id = odata.scope_merchant(ctx.who, values.pop("merchant_id", None))
        made = await invitations.invite(ctx.conn, ctx.portal.settings, ctx.who, merchant_id, values)
        sent = i18n.gettext_("Invitation sent to %(email)s; the partner joins when it accepts.")
        return back("/admin/partners", sent % {"email": made["email"]})
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
            raise invalid("merchant_id", i18n.gettext_("this partner is not in that programme"))
        await partner_admin.add_note(ctx.conn, ctx.who, partner_id, merchant_id, text)
        return back(f"/admin/partners/{partner_id}", i18n.gettext_("Note added."))
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
        await oreports.finish_statement(ctx.conn, ctx.who, statement_id, action, sealer)
        done = i18n.gettext_("closed") if action == "close" else i18n.gettext_("paid")
        return back(
            "/admin/statements", i18n.gettext_("Statement %(id)s: %(done)s.") % {"id": statement_id, "done": done}
        )
    return await show(
        ctx,
        "statements.html",
        statements=await oreports.statements(ctx.conn, ctx.who, None),
        base="/api/v1/admin/statements",
    )


async def admin_conversions(ctx: Ctx, form: Any) -> Response:
    """The latest conversions with their channel and, for a refused one, why (the codes of ConversionReason)."""
    found = await oreports.conversions(ctx.conn, ctx.who, None, None, 200)
    rows = [
        {
            **c,
            "when": c["ts"][:16].replace("T", " "),
            "source": f"{c['via'] or ''}{' (' + i18n.gettext_('authenticated') + ')' if c['authenticated'] else ''}",
            "kind": words.word(c["kind"]),
            "status": words.word(c["status"]),
            "money": formats.money(c["amount"], c["currency"]) if c["amount"] is not None else None,
        }
        for c in _named(found["conversions"], await _names(ctx))
    ]
    return await show(
        ctx,
        "admin_table.html",
        title=i18n.gettext_("Conversions"),
        table_id="conversions",
        row_actions=None,
        columns=[
            (i18n.gettext_("When (UTC)"), "when"),
            (i18n.gettext_("Offer"), "offer"),
            (i18n.gettext_("Partner"), "partner"),
            (i18n.gettext_("Kind"), "kind"),
            (i18n.gettext_("Order"), "order_id"),
            (i18n.gettext_("Amount"), "money"),
            (i18n.gettext_("Source"), "source"),
            (i18n.gettext_("Status"), "status"),
            (i18n.gettext_("Why"), "reason"),
        ],
        rows=rows,
        form=None,
    )


async def admin_audit(ctx: Ctx, form: Any) -> Response:
    return await show(ctx, "admin_audit.html", entries=await oreports.audit_log(ctx.conn, ctx.who, 300))


def _options(merchants: list[dict[str, Any]], who: Any) -> list[dict[str, Any]]:
    if who.role != "network":
        return []
    return [
        {
            "name": "merchant_id",
            "label": i18n.gettext_("Merchant"),
            "options": [(m["id"], m["name"]) for m in merchants],
        }
    ]


async def admin_links(ctx: Ctx, form: Any) -> Response:
    if form is not None:
        if "link_id" in form:
            link_id = await ctx.ref("link_id", "link", form.pop("link_id"))
            values = await ctx.fields(form, api_operator.LINK_STATUS)
            await opartners.set_link_status(ctx.conn, ctx.who, link_id, values["status"])
            said = {"id": link_id, "status": words.word(values["status"])}
            return back("/admin/links", i18n.gettext_("Link %(id)s is %(status)s.") % said)
        made = await opartners.create_link(ctx.conn, ctx.who, await ctx.fields(form, api_operator.NEW_LINK))
        return back("/admin/links", i18n.gettext_("Link %(code)s created.") % {"code": made["code"]})
    offers = await odata.offers(ctx.conn, ctx.who)
    partners = await opartners.partners(ctx.conn, ctx.who)
    return await show(
        ctx,
        "admin_table.html",
        title=i18n.gettext_("Links"),
        table_id="links",
        columns=[
            ("#", "id"),
            (i18n.gettext_("Code"), "code"),
            (i18n.gettext_("Partner"), "partner"),
            (i18n.gettext_("Offer"), "offer"),
            (i18n.gettext_("Banner"), "creative"),
            (i18n.gettext_("Status"), "status_word"),
        ],
        rows=[
            {**r, "status_word": words.word(r["status"])}
            for r in _named(await opartners.links(ctx.conn, ctx.who), await _names(ctx))
        ],
        row_actions=lambda r: [
            {
                "label": i18n.gettext_("Pause") if r["status"] == "active" else i18n.gettext_("Resume"),
                "fields": {"link_id": r["id"], "status": "paused" if r["status"] == "active" else "active"},
            }
        ],
        form={
            "title": i18n.gettext_("New link"),
            "id": "new-link",
            "button": i18n.gettext_("Create link"),
            "fields": [
                {
                    "name": "offer_id",
                    "label": i18n.gettext_("Offer"),
                    "options": [(o["id"], o["name"]) for o in offers],
                },
                {
                    "name": "partner_id",
                    "label": i18n.gettext_("Partner"),
                    "options": sorted({(p["id"], p["name"]) for p in partners}),
                },
            ],
        },
    )


async def admin_creatives(ctx: Ctx, form: Any) -> Response:
    if form is not None:
        image = form.pop("image", b"")
        values = await ctx.fields(form, {k: v for k, v in api_operator.NEW_CREATIVE.items() if k != "image_base64"})
        await opartners.create_creative(
            ctx.conn, ctx.who, values["offer_id"], values["name"], values.get("alt_text", ""), image
        )
        return back("/admin/creatives", i18n.gettext_("Banner %(name)s uploaded.") % {"name": values["name"]})
    offers = await odata.offers(ctx.conn, ctx.who)
    return await show(
        ctx,
        "admin_table.html",
        title=i18n.gettext_("Banners"),
        table_id="creatives",
        row_actions=None,
        columns=[
            ("#", "id"),
            (i18n.gettext_("Offer"), "offer"),
            (i18n.gettext_("Name"), "name"),
            (i18n.gettext_("Type"), "content_type"),
            (i18n.gettext_("Width"), "width"),
            (i18n.gettext_("Height"), "height"),
            (i18n.gettext_("Bytes"), "bytes"),
        ],
        rows=_named(await opartners.creatives(ctx.conn, ctx.who), await _names(ctx)),
        form={
            "title": i18n.gettext_("Upload a banner (PNG, GIF, JPEG or WebP, at most 1 MiB)"),
            "id": "new-creative",
            "button": i18n.gettext_("Upload"),
            "multipart": True,
            "fields": [
                {
                    "name": "offer_id",
                    "label": i18n.gettext_("Offer"),
                    "options": [(o["id"], o["name"]) for o in offers],
                },
                {"name": "name", "label": i18n.gettext_("Name"), "required": True},
                {"name": "alt_text", "label": i18n.gettext_("Alt text")},
                {
                    "name": "image",
                    "label": i18n.gettext_("Image"),
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
        await oreports.set_product(ctx.conn, ctx.who, values)
        return back("/admin/products", i18n.gettext_("Wholesale price of %(sku)s set.") % {"sku": values["sku"]})
    merchants = await odata.merchants(ctx.conn, ctx.who)
    return await show(
        ctx,
        "admin_table.html",
        title=i18n.gettext_("Products and wholesale prices"),
        table_id="products",
        row_actions=None,
        columns=[
            (i18n.gettext_("Merchant"), "merchant"),
            ("SKU", "sku"),
            (i18n.gettext_("Name"), "name"),
            (i18n.gettext_("Wholesale"), "price"),
            (i18n.gettext_("In force from"), "valid_from"),
        ],
        rows=[
            {**r, "price": formats.money(r["wholesale"], r["currency"]) if r["currency"] else None}
            for r in _named(await oreports.products(ctx.conn, ctx.who), await _names(ctx))
        ],
        form={
            "title": i18n.gettext_("Set a product's wholesale price (a new version from now)"),
            "id": "new-product",
            "button": i18n.gettext_("Save"),
            "fields": [
                *_options(merchants, ctx.who),
                {"name": "sku", "label": "SKU", "required": True},
                {"name": "name", "label": i18n.gettext_("Name"), "required": True},
                {
                    "name": "wholesale",
                    "label": i18n.gettext_("Wholesale price"),
                    "hint": i18n.gettext_("as you write it, e.g. 12.50"),
                    "required": True,
                },
                {"name": "currency", "label": i18n.gettext_("Currency"), "required": True},
            ],
        },
    )


async def admin_rates(ctx: Ctx, form: Any) -> Response:
    if form is not None:
        await oreports.add_rate(ctx.conn, ctx.who, await ctx.fields(form, api_operator.RATE))
        return back("/admin/rates", i18n.gettext_("Rate added."))
    merchants = await odata.merchants(ctx.conn, ctx.who)
    return await show(
        ctx,
        "admin_table.html",
        title=i18n.gettext_("Currency rates"),
        table_id="rates",
        row_actions=None,
        columns=[
            (i18n.gettext_("Merchant"), "merchant"),
            (i18n.gettext_("Base"), "base"),
            (i18n.gettext_("Quote"), "quote"),
            (i18n.gettext_("Rate"), "rate"),
            (i18n.gettext_("From"), "valid_from"),
        ],
        rows=_named(await oreports.rates(ctx.conn, ctx.who), await _names(ctx)),
        form={
            "title": i18n.gettext_("Add a rate: 1 base = rate quote"),
            "id": "new-rate",
            "button": i18n.gettext_("Add"),
            "fields": [
                *_options(merchants, ctx.who),
                {"name": "base", "label": i18n.gettext_("Base currency"), "required": True},
                {"name": "quote", "label": i18n.gettext_("Quote currency"), "required": True},
                {
                    "name": "rate",
                    "label": i18n.gettext_("Rate"),
                    "hint": i18n.gettext_("1 base = this many quote, e.g. 1.0825"),
                    "required": True,
                },
            ],
        },
    )
