"""The review and coupon pages: operators decide held conversions (with a reason) and partners' code requests;
partners see their codes, their uses and their held conversions. Same data layer and checks as the API."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from portal import api_attribution, i18n, refusals, words
from portal import attribution_data as data
from portal.api import Ctx
from portal.errors import ApiError
from portal.pages import back, show


async def admin_holds(ctx: Ctx, form: dict[str, Any] | None) -> Response:
    """Held conversions with approve/reject forms; a refused form comes back with its error beside the field."""
    errors: dict[str, str] = {}
    kept: dict[str, Any] = {}
    if form is not None:
        kept = dict(form)
        try:
            if "coupon_id" in form:
                coupon_id = _int(form)  # scoped by decide_coupon: another merchant's code is not found
                values = await ctx.fields(
                    {k: v for k, v in form.items() if k != "coupon_id"}, api_attribution.COUPON_DECISION
                )
                done = await data.decide_coupon(ctx.conn, ctx.who, coupon_id, values["decision"], values.get("note"))
                said = {"code": done["code"], "status": words.word(done["status"])}
                return back("/admin/holds", i18n.gettext_("Coupon %(code)s: %(status)s.") % said)
            event_id = str(form.get("event_id", ""))
            values = await ctx.fields({k: v for k, v in form.items() if k != "event_id"}, api_attribution.HOLD_DECISION)
            if not api_attribution._UUID.match(event_id):
                raise ApiError(404, "not_found", "no such conversion")
            done = await data.decide_hold(ctx.conn, ctx.who, event_id, values["decision"], values["reason"])
            said = {"id": done["event_id"], "status": words.word(done["status"])}
            return back("/admin/holds", i18n.gettext_("Conversion %(id)s: %(status)s.") % said)
        except ApiError as exc:
            if exc.status != 400:  # not found (another merchant's), already decided: the error page
                raise
            field = "reason" if "reason" in exc.detail else "decision"
            errors[field] = refusals.shown(exc.detail)
    holds = await data.holds(ctx.conn, ctx.who, False, 200)
    requests = [c for c in await data.coupons(ctx.conn, ctx.who) if c["status"] == "requested"]
    return await show(
        ctx, "admin_holds.html", holds=holds, requests=requests, errors=errors, kept=kept, status=400 if errors else 200
    )


def _int(form: dict[str, Any]) -> int:
    raw = str(form.get("coupon_id", ""))
    if not raw.isdigit() or len(raw) > 18:
        raise ApiError(404, "not_found", "no such coupon")
    return int(raw)


async def partner_coupons(ctx: Ctx, form: dict[str, Any] | None) -> Response:
    """The partner's codes with their uses, and its held conversions with the rule that held each."""
    return await show(
        ctx,
        "coupons.html",
        coupons=await data.coupons(ctx.conn, ctx.who),
        holds=await data.holds(ctx.conn, ctx.who, True, 100),
    )
