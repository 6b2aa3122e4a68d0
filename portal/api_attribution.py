"""The API of coupons, attribution settings and the review of held conversions (docs/attribution.md).

Operators assign coupon codes, decide partners' requests, set an offer's attribution model, coupon policy and
fraud rules, and approve or reject held conversions with a reason (audited). Partners see their codes and their
uses, request a code, and see their held conversions with the rule that held each."""

from __future__ import annotations

import re
from typing import Any

from kernel.crediting import POLICIES, normalize, valid_code
from portal import attribution_data as data
from portal import terms_schema, validate
from portal.api import Ctx, Endpoint
from portal.errors import invalid, not_found

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@validate._schema({"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"})
def coupon_code(name: str, value: Any) -> str:
    """A code as customers type it: letters, digits, '_' and '-', up to 64; stored upper-case."""
    code = normalize(value) if isinstance(value, str) else ""
    if not valid_code(code):
        raise invalid(name, "must be 1 to 64 letters, digits, '_' or '-', starting with a letter or digit")
    return code


@validate._schema({"$ref": "#/components/schemas/FraudRules"})
def fraud_rules(name: str, value: Any) -> dict[str, Any]:
    """An offer's fraud rules, checked against schemas/offers/fraud.schema.json (invalid_fraud_rules)."""
    return terms_schema.check("fraud", name, validate.json_object(name, value))


@validate._schema({"$ref": "#/components/schemas/SmartLinkRules"})
def smart_rules(name: str, value: Any) -> dict[str, Any]:
    """A smart link's rules, checked against schemas/offers/smart_link.schema.json (invalid_smart_link)."""
    return terms_schema.check("smart_link", name, validate.json_object(name, value))


SMART = {"smart_rules": (smart_rules, True)}
NEW_COUPON = {
    "offer_id": (validate.ref("offer"), True),
    "partner_id": (validate.ref("partner"), True),
    "code": (coupon_code, True),
    "valid_from": (validate.timestamp, False),
    "valid_until": (validate.timestamp, False),
}
REQUEST_COUPON = {k: v for k, v in NEW_COUPON.items() if k != "partner_id"}
COUPON_DECISION = {
    "decision": (validate.choice("approve", "reject", "revoke"), True),
    "note": (validate.text(1, 500), False),
}
ATTRIBUTION = {
    "attribution_model": (validate.choice("last_click", "first_click"), False),
    "coupon_policy": (validate.choice(*POLICIES), False),
    "fraud_rules": (fraud_rules, False),
}
CUSTOMER_REF = {
    "merchant_id": (validate.ref("merchant"), False),
    "customer_ref": (validate.text(1, 255), False),
}
HOLD_DECISION = {
    "decision": (validate.choice("approve", "reject"), True),
    "reason": (validate.text(1, 500), True),
}


def _event_id(ctx: Ctx) -> str:
    raw = ctx.request.path_params["event_id"].lower()
    if not _UUID.match(raw):
        raise not_found("conversion")
    return raw


async def admin_coupons(ctx: Ctx) -> Any:
    offer_id = ctx.query("offer_id", validate.integer(1), None)
    return {"coupons": await data.coupons(ctx.conn, ctx.who, offer_id)}


async def admin_create_coupon(ctx: Ctx) -> Any:
    return await data.create_coupon(ctx.conn, ctx.who, await ctx.body(NEW_COUPON), "active")


async def admin_decide_coupon(ctx: Ctx) -> Any:
    coupon_id = ctx.path_int("coupon_id")
    await data.in_scope(ctx.conn, ctx.who, "coupon", coupon_id)  # another merchant's: 404 before anything else
    values = await ctx.body(COUPON_DECISION)
    return await data.decide_coupon(ctx.conn, ctx.who, coupon_id, values["decision"], values.get("note"))


async def offer_attribution(ctx: Ctx) -> Any:
    return await data.attribution(ctx.conn, ctx.path_int("offer_id"))


async def set_offer_attribution(ctx: Ctx) -> Any:
    return await data.set_attribution(ctx.conn, ctx.who, ctx.path_int("offer_id"), await ctx.body(ATTRIBUTION))


async def customer_ref(ctx: Ctx) -> Any:
    values = await ctx.body(CUSTOMER_REF)
    return await data.set_customer_ref(
        ctx.conn, ctx.who, ctx.path_int("partner_id"), values.get("merchant_id"), values.get("customer_ref")
    )


async def admin_holds(ctx: Ctx) -> Any:
    decided = ctx.query("decided", validate.boolean, False)
    limit = ctx.query("limit", validate.integer(1, 500), 100)
    return {"conversions": await data.holds(ctx.conn, ctx.who, decided, limit)}


async def decide_hold(ctx: Ctx) -> Any:
    event_id = _event_id(ctx)
    await data.in_scope(ctx.conn, ctx.who, "conversion", event_id)  # another merchant's: 404 before anything else
    values = await ctx.body(HOLD_DECISION)
    return await data.decide_hold(ctx.conn, ctx.who, event_id, values["decision"], values["reason"])


async def partner_coupons(ctx: Ctx) -> Any:
    return {"coupons": await data.coupons(ctx.conn, ctx.who)}


async def request_coupon(ctx: Ctx) -> Any:
    return await data.create_coupon(ctx.conn, ctx.who, await ctx.body(REQUEST_COUPON), "requested")


async def partner_holds(ctx: Ctx) -> Any:
    limit = ctx.query("limit", validate.integer(1, 500), 100)
    return {"conversions": await data.holds(ctx.conn, ctx.who, True, limit)}


async def link_smart(ctx: Ctx) -> Any:
    days = ctx.query("days", validate.integer(1, 366), 30)
    return await data.smart(ctx.conn, ctx.path_int("link_id"), days)


async def set_link_smart(ctx: Ctx) -> Any:
    values = await ctx.body(SMART)
    return await data.set_smart(ctx.conn, ctx.who, ctx.path_int("link_id"), values["smart_rules"])


async def clear_link_smart(ctx: Ctx) -> Any:
    return await data.set_smart(ctx.conn, ctx.who, ctx.path_int("link_id"), None)


def _o(method: str, path: str, handler: Any, summary: str, **kw: Any) -> Endpoint:
    return Endpoint(method, "/api/v1/admin" + path, handler, "operator", summary, tag="operator", **kw)


def _p(method: str, path: str, handler: Any, summary: str, **kw: Any) -> Endpoint:
    return Endpoint(method, "/api/v1/partner" + path, handler, "partner", summary, tag="partner", **kw)


_LIMIT = {"type": "integer", "minimum": 1, "maximum": 500}
ENDPOINTS = [
    _o(
        "GET",
        "/coupons",
        admin_coupons,
        "Coupon codes of the programme with their status, validity and uses credited to their partner (sales per"
        " currency in minor units)",
        query={"offer_id": {"type": "integer", "minimum": 1}},
    ),
    _o(
        "POST",
        "/coupons",
        admin_create_coupon,
        "Assign a coupon code to a partner approved in the offer's programme, valid from/until (open-ended when"
        " left out); codes are case-insensitive and live once per offer (409 coupon_taken)",
        body=NEW_COUPON,
        status=201,
    ),
    _o(
        "POST",
        "/coupons/{coupon_id}/decision",
        admin_decide_coupon,
        "Approve or reject a partner's requested code, or revoke an active one (audited)",
        body=COUPON_DECISION,
    ),
    _o(
        "GET",
        "/offers/{offer_id}/attribution",
        offer_attribution,
        "The offer's attribution model, coupon policy and fraud rules (as stored, and in effect with defaults)",
    ),
    _o(
        "PUT",
        "/offers/{offer_id}/attribution",
        set_offer_attribution,
        "Set the offer's attribution model (last_click, first_click), coupon policy (always, no_click,"
        " same_partner) and fraud rules (components.schemas.FraudRules; 400 invalid_fraud_rules with a pointer)",
        body=ATTRIBUTION,
    ),
    _o(
        "PUT",
        "/partners/{partner_id}/customer-ref",
        customer_ref,
        "The partner's own customer id at the merchant, for the self-referral rule (left out: cleared)",
        body=CUSTOMER_REF,
    ),
    _o(
        "GET",
        "/holds",
        admin_holds,
        "Conversions a fraud rule held for review (held_reason: too_soon, conversion_rate, self_referral,"
        " multi_partner, datacenter, forbidden_referrer), newest first; decided=true adds those decided since",
        query={"decided": {"type": "boolean"}, "limit": _LIMIT},
    ),
    _o(
        "POST",
        "/holds/{event_id}/decision",
        decide_hold,
        "Approve (it becomes pending and follows the offer's lock period) or reject (reason fraud_rejected) a held"
        " conversion, with the reason; audited. 409 not_held when it was decided already",
        body=HOLD_DECISION,
    ),
    _o(
        "GET",
        "/links/{link_id}/smart",
        link_smart,
        "A smart link's rules and the clicks (and unique clicks) each variant received over the last `days` UTC days",
        query={"days": {"type": "integer", "minimum": 1, "maximum": 366}},
    ),
    _o(
        "PUT",
        "/links/{link_id}/smart",
        set_link_smart,
        "Make the link a smart link: ordered rules on country, device, OS, language, UTC hours and weekdays, each"
        " with weighted variants (a URL on the offer's allowed hosts, or another offer of the merchant), and a"
        " fallback (components.schemas.SmartLinkRules; 400 invalid_smart_link with a pointer). The tracker applies"
        " them within a second",
        body=SMART,
    ),
    _o("DELETE", "/links/{link_id}/smart", clear_link_smart, "Make a smart link a plain link again"),
    _p(
        "GET",
        "/coupons",
        partner_coupons,
        "Its coupon codes (requested, active, rejected, revoked) with their uses credited to it and their sales per"
        " currency in minor units",
    ),
    _p(
        "POST",
        "/coupons",
        request_coupon,
        "Request a coupon code on an offer open to it; the operator approves or rejects it",
        body=REQUEST_COUPON,
        status=201,
    ),
    _p(
        "GET",
        "/holds",
        partner_holds,
        "Its conversions a fraud rule held, with the rule (held_reason), until when, and the decision once made",
        query={"limit": _LIMIT},
    ),
]
