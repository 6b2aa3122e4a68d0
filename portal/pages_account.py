"""The users' own account pages: the operator's account (its language, its merchant's default language); the
partner's profile and payout details, password change, the banners gallery (with each
banner's image served to the partners it is open to), and notifications."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from starlette.responses import RedirectResponse, Response

from portal import api_partner, auth, i18n, notifications, users, validate
from portal import operator_data as odata
from portal import partner_data as pdata
from portal.api import Ctx
from portal.api_auth import is_https, session_cookie
from portal.errors import ApiError, invalid
from portal.pages import back, show

PROFILE = {
    "name": (validate.text(1, 200), True),
    "website": (validate.url, False),
}


async def profile_page(ctx: Ctx, form: Any) -> Response:
    """Name and website (payout details have their own, encrypted page); a password change on the same page."""
    if form is not None and form.get("form") == "password":
        return await _change_password(ctx, form)
    if form is not None and form.get("form") == "language":
        return await set_language(ctx, form, "/profile")
    if form is not None:
        form = {k: v.strip() for k, v in form.items() if k != "form" and isinstance(v, str)}
        values = await ctx.fields({k: v for k, v in form.items() if v != "" or k == "name"}, PROFILE)
        await ctx.conn.execute(
            "UPDATE partners SET name = $2, website = $3 WHERE id = $1",
            ctx.partner_id,
            values["name"],
            values.get("website"),
        )
        return back("/profile", i18n.gettext_("Profile saved."))
    row = await ctx.conn.fetchrow(
        "SELECT name, email, website, currency, min_payout_minor FROM partners WHERE id = $1",
        ctx.partner_id,
    )
    chosen = await ctx.conn.fetchval("SELECT locale FROM users WHERE id = $1", ctx.who.user_id)
    return await show(ctx, "profile.html", partner=dict(row), chosen_locale=chosen or "")


async def set_language(ctx: Ctx, form: dict[str, Any], path: str) -> Response:
    """The user's language (one of i18n.SUPPORTED), or "" to follow the browser and then the merchant's default."""
    chosen = str(form.get("locale", "")).strip()
    if chosen and chosen not in i18n.SUPPORTED:
        said = i18n.gettext_("must be one of %(codes)s, or empty for the browser's")
        raise invalid("locale", said % {"codes": ", ".join(i18n.SUPPORTED)})
    await ctx.conn.execute("UPDATE users SET locale = $2 WHERE id = $1", ctx.who.user_id, chosen or None)
    i18n.CURRENT.set(i18n.choose(chosen or None, ctx.request.headers.get("accept-language"), None))
    return back(path, i18n.gettext_("Language saved."))


async def admin_account(ctx: Ctx, form: Any) -> Response:
    """The operator's own account: its language, and the default language of its merchant (a network operator:
    of the merchant it picks), which partners and operators follow when they chose none and their browser asks
    for none of the five. The same checks and audit as PATCH /api/v1/admin/merchants/{id}."""
    if form is not None and form.get("form") == "language":
        return await set_language(ctx, form, "/admin/account")
    if form is not None:
        merchant_id = odata.scope_merchant(ctx.who, validate.integer(1)("merchant_id", form.get("merchant_id")))
        wanted = {"default_locale": str(form.get("default_locale", "")).strip()}
        if wanted["default_locale"] not in i18n.SUPPORTED:
            said = i18n.gettext_("must be one of %(codes)s")
            raise invalid("default_locale", said % {"codes": ", ".join(i18n.SUPPORTED)})
        await odata.update_merchant(ctx.conn, ctx.who, merchant_id, wanted)
        return back("/admin/account", i18n.gettext_("Default language saved."))
    chosen = await ctx.conn.fetchval("SELECT locale FROM users WHERE id = $1", ctx.who.user_id)
    merchants = await odata.merchants(ctx.conn, ctx.who)
    return await show(ctx, "admin_account.html", chosen_locale=chosen or "", merchants=merchants)


async def _change_password(ctx: Ctx, form: dict[str, Any]) -> Response:
    current, new, again = (str(form.get(k, "")) for k in ("current_password", "new_password", "confirm_password"))
    limiter, settings = ctx.portal.limiter, ctx.portal.settings
    await limiter.hit("login", ctx.who.email, settings.login_per_minute)
    if await users.authenticate(ctx.conn, ctx.who.email, current) != ctx.who.user_id:
        raise invalid("current_password", "is not your current password")
    if new != again:
        raise invalid("confirm_password", "does not match the new password")
    try:
        await users.set_password(ctx.conn, ctx.who.user_id, new)
    except ApiError as exc:
        raise invalid("new_password", exc.detail.removeprefix("password: ")) from exc
    # Every session ends with a new password; this browser gets a fresh one.
    token, _ = await auth.start_session(ctx.conn, ctx.who.user_id, settings.session_hours, None)
    notice = i18n.gettext_("Password changed; other sessions were signed out.")
    response = RedirectResponse("/profile?notice=" + quote(notice), 303)
    session_cookie(response, settings, is_https(ctx.request, settings), token)
    return response


async def creatives_page(ctx: Ctx, form: Any) -> Response:
    """Every banner of the offers open to the partner: preview, size, its link's snippet and QR code."""
    tracker = ctx.portal.settings.tracker_url
    banners = await pdata.creatives(ctx.conn, ctx.partner_id)
    links = {(lk["offer_id"], lk.get("creative_id")): lk for lk in await _links_with_creatives(ctx, tracker)}
    offers = {o["id"]: o["name"] for o in await pdata.offers(ctx.conn, ctx.partner_id, api_partner.counters(ctx))}
    for banner in banners:
        banner["offer"] = offers.get(banner["offer_id"], "")
        banner["link"] = links.get((banner["offer_id"], banner["id"]))
    return await show(ctx, "creatives.html", banners=banners)


async def _links_with_creatives(ctx: Ctx, tracker: str) -> list[dict[str, Any]]:
    rows = await ctx.conn.fetch("SELECT id, creative_id FROM links WHERE partner_id = $1", ctx.partner_id)
    creative_of = {r["id"]: r["creative_id"] for r in rows}
    out = []
    for link in await pdata.links(ctx.conn, ctx.partner_id, tracker):
        out.append({**link, "creative_id": creative_of.get(link["id"])})
    return out


async def creative_image(ctx: Ctx, form: Any) -> Response:
    """A banner's image, only for a partner an offer of it is open to (else 404, like another tenant's)."""
    creative_id = ctx.path_int("creative_id")
    open_ids = {c["id"] for c in await pdata.creatives(ctx.conn, ctx.partner_id)}
    if creative_id not in open_ids:
        raise ApiError(404, "not_found", "no such creative")
    row = await ctx.conn.fetchrow("SELECT content_type, body FROM creatives WHERE id = $1", creative_id)
    return Response(
        bytes(row["body"]),
        media_type=row["content_type"],
        headers={
            "Cache-Control": "private, max-age=300",
            # An SVG banner opened on its own runs nothing on the portal's origin.
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; sandbox",
        },
    )


async def notifications_page(ctx: Ctx, form: Any) -> Response:
    if form is not None:
        await notifications.mark_read(ctx.conn, ctx.partner_id)
        return back("/notifications", i18n.gettext_("All marked as read."))
    return await show(ctx, "notifications.html", items=await notifications.latest(ctx.conn, ctx.partner_id, 100))
