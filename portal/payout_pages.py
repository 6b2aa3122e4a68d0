"""The payout pages: the partner's payout and tax details per programme; the operator's payouts page (batches,
the merchant's payout settings) and its form for a partner's details. A refused form comes back as the same
page with the values kept, a summary of the problems and each message above its field."""

from __future__ import annotations

import datetime as dt
from typing import Any

from starlette.responses import Response

from billing.public import payouts
from kernel.sealed import Sealer
from portal import api_payouts, i18n, payout_data, validate
from portal.api import Ctx
from portal.errors import ApiError
from portal.operator_data import scope_merchant
from portal.pages import back, show


def _field_error(exc: ApiError) -> dict[str, str]:
    """An invalid_field refusal as {field: message}, for the form; anything else is raised on."""
    if exc.code != "invalid_field" or ":" not in exc.detail:
        raise exc
    from portal.refusals import shown

    name, message = (part.strip() for part in exc.detail.split(":", 1))
    label = payout_data.MAIL_LABELS.get(name)
    said = i18n.gettext_(label) if label else name.replace("_", " ").capitalize()
    return {name: f"{said}: {shown(message, exc.reason)}"}


def _sealer(ctx: Ctx) -> Sealer:
    return Sealer(ctx.portal.settings.core.secret_key)


async def _details_form(ctx: Ctx, form: Any, merchant_id: int, partner_id: int, action: str, done: str) -> Response:
    current = await payout_data.details(ctx.conn, _sealer(ctx), merchant_id, partner_id)
    names = await ctx.conn.fetchrow(
        "SELECT m.name AS merchant, p.name AS partner FROM merchants m, partners p WHERE m.id = $1 AND p.id = $2",
        merchant_id,
        partner_id,
    )
    errors: dict[str, str] = {}
    values: dict[str, Any] = {k: v for k, v in current.items() if k not in ("iban", "vat_number")}
    if form is not None:
        values = {k: v for k, v in form.items() if k in api_payouts.DETAILS}
        stored = await payout_data.stored_secrets(ctx.conn, _sealer(ctx), merchant_id, partner_id)
        # A blank IBAN or VAT number keeps the stored one (the page never shows them in full to retype).
        submitted = {k: (v or stored.get(k)) if k in ("iban", "vat_number") else v for k, v in values.items()}
        try:
            checked = validate.fields(submitted, api_payouts.DETAILS)
            await payout_data.save(ctx.conn, _sealer(ctx), ctx.who, merchant_id, partner_id, checked)
            return back(done, i18n.gettext_("Payout details saved. The partner has been e-mailed about the change."))
        except ApiError as exc:
            errors = _field_error(exc)
            page = await _show_details(ctx, current, values, errors, action, names)
            page.status_code = 400
            return page
    return await _show_details(ctx, current, values, errors, action, names)


async def _show_details(ctx: Ctx, current: dict, values: dict, errors: dict, action: str, names: Any) -> Response:
    return await show(
        ctx,
        "payouts/details.html",
        current=current,
        values=values,
        errors=errors,
        action=action,
        merchant_name=names["merchant"],
        partner_name=None if ctx.who.is_partner else names["partner"],
    )


async def my_programmes(ctx: Ctx, form: Any) -> Response:
    return await show(
        ctx, "payouts/programmes.html", programmes=await payout_data.partner_programmes(ctx.conn, ctx.partner_id)
    )


async def my_details(ctx: Ctx, form: Any) -> Response:
    merchant_id = ctx.path_int("merchant_id")  # checked: a programme that approved this partner
    path = f"/payout-details/{merchant_id}"
    return await _details_form(ctx, form, merchant_id, ctx.partner_id, path, "/payout-details")


async def partner_details(ctx: Ctx, form: Any) -> Response:
    merchant_id = scope_merchant(ctx.who, ctx.query("merchant_id", validate.integer(1), None))
    partner_id = ctx.path_int("partner_id")
    if not await ctx.conn.fetchval(
        "SELECT 1 FROM partner_programmes WHERE partner_id = $1 AND merchant_id = $2", partner_id, merchant_id
    ):
        raise ApiError(404, "not_found", "no such partner")
    path = f"/admin/partners/{partner_id}/payout-details?merchant_id={merchant_id}"
    return await _details_form(ctx, form, merchant_id, partner_id, path, "/admin/partners")


async def admin_payouts(ctx: Ctx, form: Any) -> Response:
    merchant_id = ctx.who.merchant_scope()
    if merchant_id is None:  # a network operator: the merchant named, else the first
        merchant_id = ctx.query("merchant_id", validate.integer(1), None) or await ctx.conn.fetchval(
            "SELECT min(id) FROM merchants"
        )
        if merchant_id is None or not await ctx.conn.fetchval("SELECT 1 FROM merchants WHERE id = $1", merchant_id):
            raise ApiError(404, "not_found", "no such merchant")
    action = "/admin/payouts" + ("" if ctx.who.merchant_scope() else f"?merchant_id={merchant_id}")
    errors: dict[str, str] = {}
    values: dict[str, Any] = {"period": f"{(dt.date.today().replace(day=1) - dt.timedelta(days=1)):%Y-%m}"}
    result: Any = None
    actor = payouts.Actor(ctx.who.email, ctx.who.user_id or None)
    if form is not None:
        todo = form.get("do")
        try:
            if todo == "batch":
                values = {k: form.get(k) for k in ("period", "format", "schema")}
                checked = validate.fields(
                    {k: v for k, v in values.items() if v},
                    {k: api_payouts.NEW_BATCH[k] for k in ("period", "format", "schema")},
                )
                try:
                    batch = await payouts.export(
                        ctx.conn,
                        _sealer(ctx),
                        merchant_id,
                        checked["period"],
                        checked["format"],
                        actor=actor,
                        schema=checked.get("schema") if checked["format"] == "sepa" else None,
                    )
                    result = {"batch": batch.summary(), "left_out": batch.left_out}
                except payouts.PayoutError as exc:
                    if exc.code != "nothing_to_pay":
                        raise ApiError(400, exc.code, exc.detail) from exc
                    result = {"batch": None, "left_out": exc.left_out}
            elif todo in ("paid", "cancel"):
                batch_id = str(form.get("batch", ""))
                try:
                    if todo == "paid":
                        await payouts.mark_paid(ctx.conn, batch_id, actor, merchant_id)
                    else:
                        await payouts.cancel(ctx.conn, batch_id, actor, merchant_id)
                except payouts.PayoutError as exc:
                    raise ApiError(404 if exc.code == "not_found" else 409, exc.code, exc.detail) from exc
                said = (
                    i18n.gettext_("Batch %(id)s paid.") if todo == "paid" else i18n.gettext_("Batch %(id)s cancelled.")
                )
                return back(action, said % {"id": batch_id})
            elif todo == "settings":
                raw = {k: v for k, v in form.items() if k in api_payouts.MERCHANT_SETTINGS and v != ""}
                raw["self_billing"] = form.get("self_billing") == "true"
                await payout_data.save_merchant(ctx.conn, ctx.who, merchant_id, raw)
                return back(action, i18n.gettext_("Payout settings saved."))
            else:
                raise ApiError(400, "invalid_field", "do: unknown action")
        except ApiError as exc:
            if exc.status == 404:
                raise  # another merchant's batch looks like none at all
            from portal.refusals import shown

            errors = _field_error(exc) if exc.code == "invalid_field" else {"new-batch": shown(exc.detail)}
            page = await _admin(ctx, merchant_id, action, errors, values, result)
            page.status_code = exc.status
            return page
    return await _admin(ctx, merchant_id, action, errors, values, result)


async def _admin(ctx: Ctx, merchant_id: int, action: str, errors: dict, values: dict, result: Any) -> Response:
    return await show(
        ctx,
        "payouts/admin.html",
        merchant=await ctx.conn.fetchrow("SELECT id, name FROM merchants WHERE id = $1", merchant_id),
        settings=await payout_data.merchant_settings(ctx.conn, merchant_id),
        batches=await payouts.batches(ctx.conn, merchant_id),
        errors=errors,
        values=values,
        result=result,
        action=action,
    )
