"""The operator's API: merchants, offers, partners, links, creatives, products, rates, reports,
statements and the audit log. Scoped to the operator's merchant (a network operator: all)."""

from __future__ import annotations

import base64
import datetime as dt
import re
from typing import Any

from billing.public import statements as billing_statements
from kernel import sources as tracker_sources
from kernel.sealed import Sealer
from portal import invitations, users, validate
from portal import operator_caps as ocaps
from portal import operator_data as data
from portal import operator_partners as opartners
from portal import operator_reports as oreports
from portal.api import Ctx, Endpoint
from portal.api_partner import detail_response, export_response
from portal.errors import ApiError, invalid

_MERCHANT = (validate.ref("merchant"), False)  # a network operator names one; an operator's own by default
BRANDING = {
    "logo_url": (validate.url, False),
    "primary": (validate.colour, False),
    "accent": (validate.colour, False),
    "tagline": (validate.text(0, 300), False),
}


def _branding(name: str, value: Any) -> dict[str, Any]:
    return validate.fields(validate.json_object(name, value), BRANDING)


_branding.schema = validate.schema_of(BRANDING)  # type: ignore[attr-defined]

NEW_MERCHANT = {
    "slug": (validate.slug, True),
    "name": (validate.text(1, 200), True),
    "currency": (validate.currency, False),
    "rounding": (validate.choice("half_even", "half_up"), False),
    "statement_currency": (validate.choice("own", "partner"), False),
    "branding": (_branding, False),
    "address": (validate.text(0, 500, lines=True), False),
    "payment_terms": (validate.text(0, 500, lines=True), False),
    # Its partners' and operators' language when they chose none (docs/i18n.md), and its statements' when their
    # partner's users chose none (fixed on each statement when it closes).
    "default_locale": (validate.choice("en", "es", "fr", "de", "pl"), False),
}
EDIT_MERCHANT = {
    "name": (validate.text(1, 200), False),
    # The portal's language for its partners and operators without a setting of their own nor a browser's
    # language among these, and the language of statements closed from then on whose partner chose none
    # (docs/i18n.md).
    "default_locale": (validate.choice("en", "es", "fr", "de", "pl"), False),
    "statement_currency": (validate.choice("own", "partner"), False),
    "branding": (_branding, False),
    "address": (validate.text(0, 500, lines=True), False),
    "payment_terms": (validate.text(0, 500, lines=True), False),
}

OFFER = {
    "merchant_id": _MERCHANT,
    "name": (validate.text(1, 200), True),
    "status": (validate.choice("active", "paused", "archived"), False),
    "visibility": (validate.choice("public", "partners", "private"), False),
    "destination_url": (validate.url, True),
    "fallback_url": (validate.url, False),
    "allowed_hosts": (validate.hosts, False),
    "attribution_window_s": (validate.integer(60, 31_536_000), False),
    "hold_days": (validate.integer(0, 365), False),
    "repeat_actions": (validate.boolean, False),
    "currency": (validate.currency, False),
    "fee_plan": (validate.fee_plan, False),
    "caps": (validate.caps, False),
    "postback_security": (validate.choice("hmac", "token"), False),
    "postback_ip_allowlist": (validate.hosts, False),
    "starts_at": (validate.timestamp, False),
    "ends_at": (validate.timestamp, False),
}


def _sources(name: str, value: Any) -> dict[str, Any]:
    """Which channel may create which kind of conversion: {channel: [kinds]} over the safe defaults."""
    raw = validate.json_object(name, value)
    try:
        tracker_sources.parse(raw)
    except tracker_sources.SourceError as exc:
        raise invalid(name, str(exc)) from exc
    return raw


_sources.schema = {  # type: ignore[attr-defined]
    "type": "object",
    "description": "Which channel may create which kind of conversion; a channel left out keeps its default "
    "(pixel and cookie: action; postback: action, purchase, refund; tune: action, purchase). Refunds come only "
    "from postbacks. See docs/conversion-sources.md",
    "additionalProperties": False,
    "properties": {
        channel: {"type": "array", "items": {"enum": sorted(set(tracker_sources.KINDS) - never)}}
        for channel, never in ((c, tracker_sources.NEVER.get(c, frozenset())) for c in tracker_sources.CHANNELS)
    },
}


def _pixel_max(name: str, value: Any) -> str:
    """The most a pixel purchase may claim, as written ("250.00"), or "none" for no maximum."""
    return "none" if value == "none" else validate.decimal_text(name, value)


_pixel_max.schema = {"type": "string", "pattern": "^([0-9]{1,15}(\\.[0-9]{1,4})?|none)$"}  # type: ignore[attr-defined]


def _tune_token(name: str, value: Any) -> str:
    """TUNE's own token for /aff_lsr on an HMAC offer: 24-200 letters, digits, '.', '_' or '-'; "generate" for a
    random one, "none" to turn TUNE off on an HMAC offer. Never the offer's HMAC secret."""
    if value in ("generate", "none"):
        return str(value)
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9._-]{24,200}", value):
        raise invalid(name, 'must be 24-200 letters, digits, ".", "_" or "-", or "generate" or "none"')
    return value


_tune_token.schema = {"type": "string", "pattern": "^([A-Za-z0-9._-]{24,200}|generate|none)$"}  # type: ignore[attr-defined]
OFFER["conversion_sources"] = (_sources, False)
OFFER["pixel_max_amount"] = (_pixel_max, False)
OFFER["tune_token"] = (_tune_token, False)
EDIT_OFFER = {k: (check, False) for k, (check, _) in OFFER.items() if k not in ("merchant_id", "currency")}


def _cidrs(name: str, value: Any) -> list[str]:
    import ipaddress

    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or len(items) > 50:
        raise invalid(name, "must be a list of at most 50 networks")
    out = []
    for item in items:
        try:
            out.append(str(ipaddress.ip_network(str(item).strip(), strict=False)))
        except ValueError as exc:
            raise invalid(name, f"{str(item)[:60]!r} is not an IP network") from exc
    return out


_cidrs.schema = {"type": "array", "items": {"type": "string"}}  # type: ignore[attr-defined]
OFFER["postback_ip_allowlist"] = (_cidrs, False)
EDIT_OFFER["postback_ip_allowlist"] = (_cidrs, False)


async def merchants(ctx: Ctx) -> Any:
    return {"merchants": await data.merchants(ctx.conn, ctx.who)}


async def create_merchant(ctx: Ctx) -> Any:
    return await data.create_merchant(ctx.conn, ctx.who, await ctx.body(NEW_MERCHANT))


async def update_merchant(ctx: Ctx) -> Any:
    return await data.update_merchant(ctx.conn, ctx.who, ctx.path_int("merchant_id"), await ctx.body(EDIT_MERCHANT))


async def offers(ctx: Ctx) -> Any:
    return {"offers": await data.offers(ctx.conn, ctx.who)}


async def offer(ctx: Ctx) -> Any:
    return await data.offer(ctx.conn, ctx.who, ctx.path_int("offer_id"))


async def offer_caps(ctx: Ctx) -> Any:
    core = ctx.portal.settings.core
    return await ocaps.offer_caps(ctx.conn, ctx.portal.redis, core.key_prefix, ctx.who, ctx.path_int("offer_id"))


async def create_offer(ctx: Ctx) -> Any:
    return await data.create_offer(ctx.conn, ctx.who, await ctx.body(OFFER))


async def update_offer(ctx: Ctx) -> Any:
    return await data.update_offer(ctx.conn, ctx.who, ctx.path_int("offer_id"), await ctx.body(EDIT_OFFER))


PARTNER_PLAN = {"partner_id": (validate.ref("partner"), True), "fee_plan": (validate.partner_plan, True)}


async def partner_plan(ctx: Ctx) -> Any:
    values = await ctx.body(PARTNER_PLAN)
    await data.set_partner_plan(ctx.conn, ctx.who, ctx.path_int("offer_id"), values["partner_id"], values["fee_plan"])
    return {"offer_id": ctx.path_int("offer_id"), "partner_id": values["partner_id"], "fee_plan": values["fee_plan"]}


async def partners(ctx: Ctx) -> Any:
    return {"partners": await opartners.partners(ctx.conn, ctx.who)}


NEW_PARTNER = {
    "merchant_id": _MERCHANT,
    "name": (validate.text(1, 200), True),
    "email": (validate.text(3, 254), True),
    "currency": (validate.currency, False),
    "min_payout_minor": (validate.integer(0), False),
}
# The machine owner's direct enrolment (`clickmint admin partner add`) also sets the partner's postal address,
# printed on its statements; an operator's invitation cannot set anything of the partner's own.
ENROL_PARTNER = {**NEW_PARTNER, "address": (validate.text(0, 500, lines=True), False)}


async def create_partner(ctx: Ctx) -> Any:
    """Invite an e-mail address to the programme; the partner joins when it accepts (docs/tenancy.md)."""
    values = await ctx.body(NEW_PARTNER)
    merchant_id = data.scope_merchant(ctx.who, values.pop("merchant_id", None))
    return await invitations.invite(ctx.conn, ctx.portal.settings, ctx.who, merchant_id, values)


async def invitation_list(ctx: Ctx) -> Any:
    return {"invitations": await invitations.listing(ctx.conn, ctx.who)}


async def invitation_withdraw(ctx: Ctx) -> Any:
    return await invitations.withdraw(ctx.conn, ctx.who, ctx.path_int("invitation_id"))


PARTNER_STATUS = {
    "merchant_id": _MERCHANT,
    "status": (validate.choice("applied", "approved", "suspended", "rejected"), True),
}


async def partner_status(ctx: Ctx) -> Any:
    values = await ctx.body(PARTNER_STATUS)
    return await opartners.set_partner_status(
        ctx.conn, ctx.who, ctx.path_int("partner_id"), values.get("merchant_id"), values["status"]
    )


async def links(ctx: Ctx) -> Any:
    return {"links": await opartners.links(ctx.conn, ctx.who)}


NEW_LINK = {
    "offer_id": (validate.ref("offer"), True),
    "partner_id": (validate.ref("partner"), True),
    "creative_id": (validate.ref("creative"), False),  # a banner of this same offer
}
LINK_STATUS = {"status": (validate.choice("active", "paused"), True)}


async def create_link(ctx: Ctx) -> Any:
    return await opartners.create_link(ctx.conn, ctx.who, await ctx.body(NEW_LINK))


async def link_status(ctx: Ctx) -> Any:
    values = await ctx.body(LINK_STATUS)
    return await opartners.set_link_status(ctx.conn, ctx.who, ctx.path_int("link_id"), values["status"])


async def creatives(ctx: Ctx) -> Any:
    return {"creatives": await opartners.creatives(ctx.conn, ctx.who)}


def _base64(name: str, value: Any) -> bytes:
    if not isinstance(value, str) or len(value) > 1_500_000:
        raise invalid(name, "must be base64 of at most 1 MiB")
    try:
        return base64.b64decode(value, validate=True)
    except ValueError as exc:
        raise invalid(name, "is not valid base64") from exc


_base64.schema = {"type": "string", "contentEncoding": "base64"}  # type: ignore[attr-defined]
NEW_CREATIVE = {
    "offer_id": (validate.ref("offer"), True),
    "name": (validate.text(1, 200), True),
    "alt_text": (validate.text(0, 300), False),
    "image_base64": (_base64, True),
}


async def create_creative(ctx: Ctx) -> Any:
    values = await ctx.body(NEW_CREATIVE) if _is_json(ctx) else await _multipart_creative(ctx)
    return await opartners.create_creative(
        ctx.conn, ctx.who, values["offer_id"], values["name"], values.get("alt_text", ""), values["image_base64"]
    )


def _is_json(ctx: Ctx) -> bool:
    return not ctx.request.headers.get("content-type", "").startswith("multipart/form-data")


async def _multipart_creative(ctx: Ctx) -> dict[str, Any]:
    declared = ctx.request.headers.get("content-length", "")
    if not declared.isdigit() or int(declared) > validate.MAX_UPLOAD:
        raise ApiError(413, "too_large", "a banner upload is at most 1 MiB")
    async with ctx.request.form(max_files=1, max_fields=10) as form:
        upload = form.get("image")
        if upload is None or isinstance(upload, str):
            raise invalid("image", "is required (a file)")
        body = await upload.read(validate.MAX_UPLOAD + 1)
        fields = {k: v for k, v in form.items() if isinstance(v, str) and k != "csrf_token"}
    checked = await ctx.fields(fields, {k: v for k, v in NEW_CREATIVE.items() if k != "image_base64"})
    return {**checked, "image_base64": body}


PRODUCT = {
    "merchant_id": _MERCHANT,
    "sku": (validate.sku, True),
    "name": (validate.text(1, 200), True),
    "wholesale": (validate.decimal_text, True),
    "currency": (validate.currency, True),
    "valid_from": (validate.timestamp, False),
}


async def products(ctx: Ctx) -> Any:
    return {"products": await oreports.products(ctx.conn, ctx.who)}


async def set_product(ctx: Ctx) -> Any:
    values = await ctx.body(PRODUCT)
    return await oreports.set_product(ctx.conn, ctx.who, values)


RATE = {
    "merchant_id": _MERCHANT,
    "base": (validate.currency, True),
    "quote": (validate.currency, True),
    "rate": (validate.decimal_rate, True),
    "valid_from": (validate.timestamp, False),
}


async def rates(ctx: Ctx) -> Any:
    return {"rates": await oreports.rates(ctx.conn, ctx.who)}


async def add_rate(ctx: Ctx) -> Any:
    return await oreports.add_rate(ctx.conn, ctx.who, await ctx.body(RATE))


async def report(ctx: Ctx) -> Any:
    days = ctx.query("days", validate.integer(1, 366), 30)
    until = ctx.query("to", validate.date, None) or dt.datetime.now(dt.UTC).date()
    since = ctx.query("from", validate.date, None) or until - dt.timedelta(days=days - 1)
    if since > until or (until - since).days > 365:
        raise invalid("from", "must be on or before to, at most 366 days before it")
    group = ctx.query("group", validate.choice(*oreports.REPORT_GROUPS), "partner_offer")
    rows = await oreports.report(ctx.conn, ctx.who, since, group, until)
    return {"since": since.isoformat(), "until": until.isoformat(), "group": group, "rows": rows}


def _period(name: str, value: Any) -> dt.date:
    try:
        return billing_statements.month_bounds(value)[0]
    except (ValueError, TypeError) as exc:
        raise invalid(name, "must be a month like 2026-11") from exc


_period.schema = {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}$"}  # type: ignore[attr-defined]


async def statements(ctx: Ctx) -> Any:
    period = ctx.query("period", _period, None)
    return {"statements": await oreports.statements(ctx.conn, ctx.who, period)}


async def close_statement(ctx: Ctx) -> Any:
    sealer = Sealer(ctx.portal.settings.core.secret_key)
    return await oreports.finish_statement(ctx.conn, ctx.who, ctx.path_int("statement_id"), "close", sealer)


async def pay_statement(ctx: Ctx) -> Any:
    return await oreports.finish_statement(ctx.conn, ctx.who, ctx.path_int("statement_id"), "paid")


async def _export(ctx: Ctx, kind: str) -> Any:
    statement_id = ctx.path_int("statement_id")
    await oreports.owns_statement(ctx.conn, ctx.who, statement_id)
    return await export_response(ctx, statement_id, kind)


async def statement_csv(ctx: Ctx) -> Any:
    return await _export(ctx, "csv")


async def statement_pdf(ctx: Ctx) -> Any:
    return await _export(ctx, "pdf")


async def statement_detail(ctx: Ctx) -> Any:
    statement_id = ctx.path_int("statement_id")
    await oreports.owns_statement(ctx.conn, ctx.who, statement_id)
    return await detail_response(ctx, statement_id)


# The codes of the trust rules (kernel/sources.py, billing/attribution.py) and billing's own reasons; the
# tracker's input refusals (click_id_*, invalid_*, missing_*, ...) are listed in README "What the tracker does".
REASONS = {
    **tracker_sources.REFUSALS,
    "superseded": "an authenticated conversion for the same order id came later and took its place",
    "duplicate_order": "another billable conversion already holds this order id",
    "duplicate_action": "an action without order id already counted for this click and action name",
    "bot_click": "the click it came from was recorded as a bot",
    "refund_needs_authentication": "a refund from a source that proves nothing (a pixel): not applied",
    "over_cap": "a cap of the offer was reached",
    "unattributed": "no partner could be named",
    "refunded": "refunded in full before its hold ended",
    # docs/attribution.md: coupon codes and the review of held conversions
    "coupon_unknown": "the coupon code is not a code of this offer, and no click was attributed",
    "coupon_expired": "the coupon code's validity ended, and no click was attributed",
    "coupon_not_yet_valid": "the coupon code is not valid yet, and no click was attributed",
    "coupon_inactive": "the coupon code's partner is not approved in the programme, and no click was attributed",
    "coupon_not_credited": "the offer credits a coupon only with its partner's click (policy same_partner)",
    "fraud_rejected": "a fraud rule held it and the operator rejected it (the reason is in review_note)",
    "hold_expired": "a fraud rule held it and nobody decided before the hold expired (offer policy: reject)",
}


async def conversions(ctx: Ctx) -> Any:
    status = ctx.query("status", validate.choice("pending", "held", "approved", "rejected", "reversed"), None)
    reason = ctx.query("reason", validate.text(1, 64), None)
    limit = ctx.query("limit", validate.integer(1, 500), 100)
    return await oreports.conversions(ctx.conn, ctx.who, status, reason, limit)


async def audit_log(ctx: Ctx) -> Any:
    return {"entries": await oreports.audit_log(ctx.conn, ctx.who, ctx.query("limit", validate.integer(1, 1000), 200))}


NEW_USER = {
    "email": (validate.text(3, 254), True),
    "name": (validate.text(0, 200), False),
    "role": (validate.choice("operator", "network"), True),  # never a partner's: partners accept invitations
    "merchant_id": _MERCHANT,
}


async def create_user(ctx: Ctx) -> Any:
    values = await ctx.body(NEW_USER)
    return await users.create_by_operator(ctx.conn, ctx.portal.settings, ctx.who, values)


def _o(method: str, path: str, handler: Any, summary: str, **kw: Any) -> Endpoint:
    return Endpoint(method, "/api/v1/admin" + path, handler, "operator", summary, tag="operator", **kw)


_DAYS = {"type": "integer", "minimum": 1, "maximum": 366}
ENDPOINTS = [
    _o("GET", "/merchants", merchants, "Merchants in the operator's scope"),
    _o("POST", "/merchants", create_merchant, "Create a merchant (network operators)", body=NEW_MERCHANT, status=201),
    _o(
        "PATCH",
        "/merchants/{merchant_id}",
        update_merchant,
        "Rename a merchant or change its branding or default language (default_locale: en, es, fr, de, pl)",
        body=EDIT_MERCHANT,
    ),
    _o("GET", "/offers", offers, "Offers, with fee plans, caps, windows and postback security"),
    _o("POST", "/offers", create_offer, "Create an offer", body=OFFER, status=201),
    _o("GET", "/offers/{offer_id}", offer, "One offer"),
    _o("PATCH", "/offers/{offer_id}", update_offer, "Change an offer", body=EDIT_OFFER),
    _o(
        "GET",
        "/offers/{offer_id}/caps",
        offer_caps,
        "The offer's caps and what has been counted against each today (UTC), per partner where per partner;"
        " payout in minor units of the offer's currency",
    ),
    _o("PUT", "/offers/{offer_id}/partner-plan", partner_plan, "A per-partner fee plan override", body=PARTNER_PLAN),
    _o("GET", "/partners", partners, "Partners of the programme, with status"),
    _o(
        "POST",
        "/partners",
        create_partner,
        "Invite an e-mail address to the programme (the partner joins when it accepts; the answer is the same"
        " whoever the address belongs to)",
        body=NEW_PARTNER,
        status=201,
    ),
    _o("GET", "/invitations", invitation_list, "Invitations sent, with their status"),
    _o("DELETE", "/invitations/{invitation_id}", invitation_withdraw, "Withdraw a pending invitation"),
    _o(
        "POST",
        "/partners/{partner_id}/status",
        partner_status,
        "Approve, suspend or reject a partner",
        body=PARTNER_STATUS,
    ),
    _o("GET", "/links", links, "Tracking links"),
    _o("POST", "/links", create_link, "Create a link for a partner", body=NEW_LINK, status=201),
    _o("POST", "/links/{link_id}/status", link_status, "Pause or resume a link", body=LINK_STATUS),
    _o("GET", "/creatives", creatives, "Banners"),
    _o(
        "POST",
        "/creatives",
        create_creative,
        "Upload a banner (PNG, GIF, JPEG or WebP, at most 1 MiB)",
        body=NEW_CREATIVE,
        status=201,
    ),
    _o("GET", "/products", products, "Products with their wholesale price in force"),
    _o(
        "POST",
        "/products",
        set_product,
        "Create a product or set a new wholesale price version",
        body=PRODUCT,
        status=201,
    ),
    _o("GET", "/rates", rates, "Currency rates"),
    _o("POST", "/rates", add_rate, "Add a currency rate", body=RATE, status=201),
    _o(
        "GET",
        "/reports",
        report,
        "The programme by partner and offer (or by partner, offer, day, sub id, country, statement period): traffic"
        " from the rollups, sales and commission per currency (pending, approved, reversed, paid, rejected) from the"
        " ledger statements are made of",
        query={
            "days": _DAYS,
            "from": {"type": "string", "format": "date"},
            "to": {"type": "string", "format": "date"},
            "group": {"type": "string", "enum": list(oreports.REPORT_GROUPS)},
        },
    ),
    _o(
        "GET",
        "/conversions",
        conversions,
        "The latest conversions with their channel (via), whether the source was authenticated, and why a"
        " refused one was refused; refunds with why one did not count (codes: components.schemas.ConversionReason)",
        query={
            "status": {"type": "string", "enum": ["pending", "held", "approved", "rejected", "reversed"]},
            "reason": {
                "type": "string",
                "maxLength": 64,
                "description": "a code of components.schemas.ConversionReason",
            },
            "limit": {"type": "integer", "minimum": 1, "maximum": 500},
        },
    ),
    _o("GET", "/statements", statements, "Statements", query={"period": _period.schema}),  # type: ignore[attr-defined]  # a check carries its schema
    _o("POST", "/statements/{statement_id}/close", close_statement, "Close a statement (it becomes immutable)"),
    _o("POST", "/statements/{statement_id}/paid", pay_statement, "Mark a closed statement paid"),
    _o("GET", "/statements/{statement_id}/csv", statement_csv, "A statement as CSV", produces="text/csv"),
    _o("GET", "/statements/{statement_id}/pdf", statement_pdf, "A statement as PDF", produces="application/pdf"),
    _o(
        "GET",
        "/statements/{statement_id}/detail",
        statement_detail,
        "The event ids of each line of a statement (or of one line: ?line=ID), as CSV; column titles in the "
        "statement's language (English before layout 3), values machine text",
        query={"line": {"type": "integer", "minimum": 1}},
        produces="text/csv",
    ),
    _o(
        "GET",
        "/audit",
        audit_log,
        "The audit log: every change, who and when",
        query={"limit": {"type": "integer", "minimum": 1, "maximum": 1000}},
    ),
    _o(
        "POST",
        "/users",
        create_user,
        "Invite an operator (or, by a network operator, a network operator) to set a password; the answer is"
        " the same whether or not the address has an account. Partner users are made only by invitations",
        body=NEW_USER,
        status=201,
    ),
]
