"""The payouts API: partners' payout and tax details (the partner's own, per programme; the operator's view
and edits, audited), the merchant's payout settings, and payout batches (SEPA pain.001 or PayPal CSV).
docs/payouts.md tells the rules."""

from __future__ import annotations

import re
from typing import Any

from starlette.responses import Response

from billing.public import payout_files, payouts
from billing.public.statements import month_bounds
from kernel.sealed import Sealer
from portal import payout_data, validate
from portal.api import Ctx, Endpoint, json_response
from portal.errors import ApiError, invalid, not_found
from portal.operator_data import scope_merchant

DETAILS = {
    "legal_name": (validate.text(1, 200), True),
    "address": (validate.text(1, 500, lines=True), True),
    "country": (validate.text(2, 2), True),
    "entity": (validate.choice("business", "individual"), True),
    "method": (validate.choice("sepa", "paypal"), True),
    "iban": (validate.text(0, 64), False),
    "bic": (validate.text(0, 16), False),
    "paypal_email": (validate.text(0, 254), False),
    "vat_number": (validate.text(0, 32), False),
}
MERCHANT_SETTINGS = {
    "legal_name": (validate.text(1, 200), False),
    "country": (validate.text(2, 2), False),
    "vat_number": (validate.text(0, 32), False),
    "payout_iban": (validate.text(0, 64), False),
    "payout_bic": (validate.text(0, 16), False),
    "self_billing": (validate.boolean, False),
    "vat_rate": (validate.text(1, 8), False),
}


def _period(name: str, value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[0-9]{4}-(0[1-9]|1[0-2])", value.strip()):
        raise invalid(name, "must be a month written YYYY-MM")
    try:
        month_bounds(value.strip())  # year 0 and the like
    except (ValueError, OverflowError) as exc:
        raise invalid(name, "must be a month written YYYY-MM") from exc
    return value.strip()


_period.schema = {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}$"}  # type: ignore[attr-defined]

NEW_BATCH = {
    "merchant_id": (validate.ref("merchant"), False),
    "period": (_period, True),
    "format": (validate.choice(*payouts.FORMATS), True),
    "schema": (validate.choice(*payout_files.SEPA_SCHEMAS), False),
    "currency": (validate.currency, False),
    "execution_date": (validate.date, False),
}


def _sealer(ctx: Ctx) -> Sealer:
    return Sealer(ctx.portal.settings.core.secret_key)


def _actor(ctx: Ctx) -> payouts.Actor:
    return payouts.Actor(ctx.who.email, ctx.who.user_id or None)


def _refused(exc: payouts.PayoutError) -> ApiError:
    status = {"not_found": 404, "conflict": 409}.get(exc.code, 400)
    return ApiError(status, exc.code, exc.detail)


# -- the partner's own ----------------------------------------------------------------------------


async def my_details(ctx: Ctx) -> Any:
    return {"programmes": await payout_data.partner_programmes(ctx.conn, ctx.partner_id)}


async def my_programme_details(ctx: Ctx) -> Any:
    return await payout_data.details(ctx.conn, _sealer(ctx), ctx.path_int("merchant_id"), ctx.partner_id)


async def set_my_details(ctx: Ctx) -> Any:
    values = await ctx.body(DETAILS)
    return await payout_data.save(ctx.conn, _sealer(ctx), ctx.who, ctx.path_int("merchant_id"), ctx.partner_id, values)


# -- the operator's -------------------------------------------------------------------------------


async def _programme(ctx: Ctx) -> tuple[int, int]:
    """The (merchant, partner) an operator names: its own merchant (a network operator: ?merchant_id=), and a
    partner of that programme; else not found."""
    partner_id = ctx.path_int("partner_id")
    merchant_id = scope_merchant(ctx.who, ctx.query("merchant_id", validate.integer(1), None))
    found = await ctx.conn.fetchval(
        "SELECT 1 FROM partner_programmes WHERE partner_id = $1 AND merchant_id = $2", partner_id, merchant_id
    )
    if not found:
        raise not_found("partner")
    return merchant_id, partner_id


async def partner_details(ctx: Ctx) -> Any:
    merchant_id, partner_id = await _programme(ctx)
    return await payout_data.details(ctx.conn, _sealer(ctx), merchant_id, partner_id)


async def set_partner_details(ctx: Ctx) -> Any:
    merchant_id, partner_id = await _programme(ctx)
    values = await ctx.body(DETAILS)
    return await payout_data.save(ctx.conn, _sealer(ctx), ctx.who, merchant_id, partner_id, values)


async def merchant_settings(ctx: Ctx) -> Any:
    return await payout_data.merchant_settings(ctx.conn, ctx.path_int("merchant_id"))


async def set_merchant_settings(ctx: Ctx) -> Any:
    values = await ctx.body(MERCHANT_SETTINGS)
    return await payout_data.save_merchant(ctx.conn, ctx.who, ctx.path_int("merchant_id"), values)


async def list_batches(ctx: Ctx) -> Any:
    return {"batches": await payouts.batches(ctx.conn, ctx.who.merchant_scope())}


async def create_batch(ctx: Ctx) -> Any:
    values = await ctx.body(NEW_BATCH)
    merchant_id = scope_merchant(ctx.who, values.get("merchant_id"))
    if values.get("schema") and values["format"] != "sepa":
        raise invalid("schema", "only a SEPA batch has a schema version")
    try:
        batch = await payouts.export(
            ctx.conn,
            _sealer(ctx),
            merchant_id,
            values["period"],
            values["format"],
            actor=_actor(ctx),
            schema=values.get("schema"),
            currency=values.get("currency"),
            execution=values.get("execution_date"),
        )
    except payouts.PayoutError as exc:
        if exc.code == "nothing_to_pay":  # not an error: the answer says why each statement is not payable
            return json_response({"batch": None, "detail": exc.detail, "left_out": exc.left_out})
        raise _refused(exc) from exc
    return {"batch": batch.summary(), "left_out": batch.left_out}


async def batch_file(ctx: Ctx) -> Response:
    try:
        batch = await payouts.load(
            ctx.conn, _sealer(ctx), ctx.request.path_params["batch_id"], ctx.who.merchant_scope()
        )
    except payouts.PayoutError as exc:
        raise _refused(exc) from exc
    kind, ext = ("application/xml", "xml") if batch.format == "sepa" else ("text/csv; charset=utf-8", "csv")
    return Response(
        batch.data, media_type=kind, headers={"Content-Disposition": f'attachment; filename="{batch.id}.{ext}"'}
    )


async def pay_batch(ctx: Ctx) -> Any:
    batch_id = ctx.request.path_params["batch_id"]
    try:
        paid = await payouts.mark_paid(ctx.conn, batch_id, _actor(ctx), ctx.who.merchant_scope())
    except payouts.PayoutError as exc:
        raise _refused(exc) from exc
    return {"id": batch_id, "status": "paid", "statements": paid}


async def cancel_batch(ctx: Ctx) -> Any:
    batch_id = ctx.request.path_params["batch_id"]
    try:
        await payouts.cancel(ctx.conn, batch_id, _actor(ctx), ctx.who.merchant_scope())
    except payouts.PayoutError as exc:
        raise _refused(exc) from exc
    return {"id": batch_id, "status": "cancelled"}


def _p(method: str, path: str, handler: Any, summary: str, **kw: Any) -> Endpoint:
    return Endpoint(method, "/api/v1" + path, handler, "partner", summary, tag="payouts", **kw)


def _o(method: str, path: str, handler: Any, summary: str, **kw: Any) -> Endpoint:
    return Endpoint(method, "/api/v1/admin" + path, handler, "operator", summary, tag="payouts", **kw)


_MERCHANT_QUERY = {"merchant_id": {"type": "integer", "minimum": 1, "description": "network operators: whose"}}
ENDPOINTS = [
    _p("GET", "/payout-details", my_details, "The partner's payout and tax details in each programme (masked)"),
    _p("GET", "/payout-details/{merchant_id}", my_programme_details, "The partner's details for one programme"),
    _p(
        "PUT",
        "/payout-details/{merchant_id}",
        set_my_details,
        "Set the partner's payout and tax details for one programme: method sepa (iban, optional bic) or paypal"
        " (paypal_email); country ISO 3166 alpha-2; entity business or individual; vat_number checked for the"
        " country. IBAN and VAT number are stored encrypted and answered masked; every change is audited and"
        " mailed to the partner",
        body=DETAILS,
    ),
    _o(
        "GET",
        "/partners/{partner_id}/payout-details",
        partner_details,
        "A programme partner's payout and tax details (masked)",
        query=_MERCHANT_QUERY,
    ),
    _o(
        "PUT",
        "/partners/{partner_id}/payout-details",
        set_partner_details,
        "Set a programme partner's payout and tax details (audited; the partner is mailed)",
        body=DETAILS,
        query=_MERCHANT_QUERY,
    ),
    _o("GET", "/merchants/{merchant_id}/payout-settings", merchant_settings, "The merchant's payout settings"),
    _o(
        "PUT",
        "/merchants/{merchant_id}/payout-settings",
        set_merchant_settings,
        "Set the merchant's legal name, country, VAT number, paying account (payout_iban, payout_bic: the"
        ' debtor of SEPA files), self-billing on or off and domestic VAT rate (a percentage, e.g. "21")',
        body=MERCHANT_SETTINGS,
    ),
    _o("GET", "/payout-batches", list_batches, "Payout batches, newest first"),
    _o(
        "POST",
        "/payout-batches",
        create_batch,
        "Make a payout batch of a month's closed, payable, unpaid statements: format sepa (EUR statements of"
        " partners paid by SEPA; schema pain.001.001.09 by default or pain.001.001.03) or paypal (one currency,"
        " default the merchant's). Answers {batch, left_out}: the batch and every statement left out with its"
        " reason code; when nothing new is payable, the open batch of that month and format again (reused: true),"
        " or batch null",
        body=NEW_BATCH,
    ),
    _o(
        "GET",
        "/payout-batches/{batch_id}/file",
        batch_file,
        "The batch's file (pain.001 XML or PayPal CSV): the same bytes every time",
        produces="application/xml",
    ),
    _o("POST", "/payout-batches/{batch_id}/paid", pay_batch, "Mark every statement of the batch paid, at once"),
    _o("POST", "/payout-batches/{batch_id}/cancel", cancel_batch, "Cancel an open batch: its statements are freed"),
]
