"""The programme manager's offer pages: the list (terms in plain language, caps used today), a new offer and
an offer's page (edit with the fee plan and caps editor, pause, resume, archive, clone, per-partner overrides).
Fee plans and caps are typed as people read them (portal/plan_form.py) and checked by the schemas."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

from starlette.responses import RedirectResponse, Response

from portal import api_operator, i18n, plan_form, validate, words
from portal import operator_caps as ocaps
from portal import operator_data as odata
from portal import operator_partners as opartners
from portal.api import Ctx
from portal.errors import ApiError, invalid
from portal.pages import FAILED, Failed, back, show

_BASICS = (
    "merchant_id",
    "name",
    "destination_url",
    "fallback_url",
    "allowed_hosts",
    "visibility",
    "hold_days",
    "repeat_actions",
    "starts_at",
    "ends_at",
    "postback_security",
    "conversion_sources",
    "pixel_max_amount",
    "tune_token",
    "fee_plan",  # the API's JSON, still taken from a form that sends it (scripts, older pages)
    "caps",
    "attribution_window_s",
)


def offer_values(form: dict[str, Any], currency: str) -> dict[str, Any]:
    """An offer form's fields as the API's offer body: the editor's fields become fee_plan and caps."""
    values = {k: v for k, v in form.items() if k in _BASICS and v != ""}
    days = str(form.get("window_days", "")).strip()
    if days:
        values["attribution_window_s"] = validate.integer(1, 365)("window_days", days) * 86_400
    if "fee_plan" not in form:
        values["fee_plan"], values["caps"] = plan_form.to_plan(form, currency)
    return values


async def _currency(ctx: Ctx, form: dict[str, Any]) -> str:
    merchants = await odata.merchants(ctx.conn, ctx.who)
    wanted = str(form.get("merchant_id", ""))
    for m in merchants:
        if str(m["id"]) == wanted or (not wanted and len(merchants) == 1) or m["id"] == ctx.who.merchant_id:
            return str(m["currency"])
    return "USD"


async def admin_offers(ctx: Ctx, form: Any) -> Response:
    if form is not None:
        values = await ctx.fields(offer_values(form, await _currency(ctx, form)), api_operator.OFFER)
        with _beside_the_editor(form):
            created = await odata.create_offer(ctx.conn, ctx.who, values)
        return back("/admin/offers", i18n.gettext_("Offer %(name)s created.") % {"name": created["name"]})
    offers = await odata.offers(ctx.conn, ctx.who)
    core = ctx.portal.settings.core
    failed = FAILED.get()
    return await show(
        ctx,
        "admin_offers.html",
        offers=offers,
        caps_used=await ocaps.caps_used_today(ctx.conn, ctx.portal.redis, core.key_prefix, offers),
        merchants=await odata.merchants(ctx.conn, ctx.who),
        models=plan_form.models(),
        tiers=plan_form.rows(failed.values if failed else {}, "tier_percent_", plan_form.TIERS),
        actions=plan_form.rows(failed.values if failed else {}, "cpa_action_", plan_form.ACTIONS),
        currency=await _currency(ctx, {}),
        o=None,
    )


async def admin_offer(ctx: Ctx, form: Any) -> Response:
    offer_id = ctx.path_int("offer_id")
    current = await odata.offer(ctx.conn, ctx.who, offer_id)
    here = f"/admin/offers/{offer_id}"
    if form is not None:
        action = form.get("action", "save")
        if action in ("pause", "resume", "archive"):
            status = {"pause": "paused", "resume": "active", "archive": "archived"}[action]
            await odata.update_offer(ctx.conn, ctx.who, offer_id, {"status": status})
            return back(
                here,
                i18n.gettext_("Offer %(name)s is %(status)s.")
                % {"name": current["name"], "status": words.word(status)},
            )
        if action == "clone":
            return await _clone(ctx, current)
        if action == "override":
            return await _override(ctx, current, form)
        values = await ctx.fields(offer_values(form, current["currency"]), api_operator.EDIT_OFFER)
        values.pop("merchant_id", None)
        with _beside_the_editor(form):
            await odata.update_offer(ctx.conn, ctx.who, offer_id, values)
        return back(here, i18n.gettext_("Offer saved."))
    failed = FAILED.get()
    filled = failed.values if failed else plan_form.to_form(current["fee_plan"], current["caps"], current["currency"])
    overrides = await ctx.conn.fetch(
        """SELECT x.partner_id, p.name, x.fee_plan FROM offer_partner_plans x JOIN partners p ON p.id = x.partner_id
           WHERE x.offer_id = $1 ORDER BY p.name""",
        offer_id,
    )
    return await show(
        ctx,
        "admin_offer.html",
        o=current,
        failed=failed or Failed({**_basics_of(current), **filled}),
        models=plan_form.models(),
        tiers=plan_form.rows(filled, "tier_percent_", 1),
        actions=plan_form.rows(filled, "cpa_action_", 2),
        currency=current["currency"],
        partners=[p for p in await opartners.partners(ctx.conn, ctx.who) if p["merchant_id"] == current["merchant_id"]],
        overrides=[{**dict(r), "fee_plan": _json(r["fee_plan"])} for r in overrides],
    )


@contextlib.contextmanager
def _beside_the_editor(form: dict[str, Any]) -> Iterator[None]:
    """A refusal of the fee plan or caps (billing's own checks, past the schema's) on the editor's field."""
    try:
        yield
    except ApiError as exc:
        if "fee_plan" in form or not exc.pointer or not exc.pointer.startswith(("/fee_plan", "/caps")):
            raise
        words = exc.detail.split(": ", 1)[-1]
        if exc.pointer.startswith("/caps"):
            raise invalid(plan_form.cap_field(exc.pointer.removeprefix("/caps")), words) from exc
        raise invalid(plan_form.plan_field(exc.pointer.removeprefix("/fee_plan")), words) from exc


def _json(value: Any) -> Any:
    import orjson

    return orjson.loads(value) if isinstance(value, str | bytes) else value


def _basics_of(o: dict[str, Any]) -> dict[str, str]:
    """A stored offer's basic fields as the form shows them."""
    return {
        "name": o["name"],
        "destination_url": o["destination_url"],
        "fallback_url": o.get("fallback_url") or "",
        "allowed_hosts": ", ".join(o.get("allowed_hosts") or []),
        "visibility": o["visibility"],
        "hold_days": str(o["hold_days"]),
        "window_days": str(o["attribution_window_s"] // 86_400),
        "repeat_actions": "true" if o.get("repeat_actions") else "",
        "starts_at": (o.get("starts_at") or "")[:16],
        "ends_at": (o.get("ends_at") or "")[:16],
        "postback_security": o.get("postback_security") or "hmac",
    }


async def _clone(ctx: Ctx, current: dict[str, Any]) -> Response:
    """A paused copy to edit before it goes live (its own TUNE token, none of the original's secrets)."""
    values = {k: current[k] for k in ("name", "destination_url", "visibility", "hold_days", "fee_plan", "caps")}
    values |= {
        "name": (i18n.gettext_("Copy of %(name)s") % {"name": current["name"]})[:200],
        "status": "paused",
        "merchant_id": current["merchant_id"],
        "attribution_window_s": current["attribution_window_s"],
        "repeat_actions": bool(current.get("repeat_actions")),
    }
    if current.get("fallback_url"):
        values["fallback_url"] = current["fallback_url"]
    if current.get("allowed_hosts"):
        values["allowed_hosts"] = list(current["allowed_hosts"])
    made = await odata.create_offer(ctx.conn, ctx.who, await ctx.fields(values, api_operator.OFFER))
    return back(f"/admin/offers/{made['id']}", i18n.gettext_("Copy made, paused: edit it then resume it."))


async def _override(ctx: Ctx, current: dict[str, Any], form: dict[str, Any]) -> Response:
    """One partner's own fee plan on this offer: the models it sets replace the offer's for that partner."""
    partner_id = await ctx.ref("partner_id", "partner", form.get("partner_id"))
    fields = {k.removeprefix("ov_"): v for k, v in form.items() if k.startswith("ov_")}
    try:
        plan, _ = plan_form.to_plan(fields, current["currency"])
    except ApiError as exc:
        name, _, words = exc.detail.partition(": ")
        raise invalid(f"ov_{name}", words) from exc
    if not plan:
        raise invalid("ov_m_cps", i18n.gettext_("pick at least one model for this partner"))
    await odata.set_partner_plan(ctx.conn, ctx.who, current["id"], partner_id, plan)
    return back(f"/admin/offers/{current['id']}", i18n.gettext_("Partner's own terms saved."))


async def admin_integration(ctx: Ctx, form: Any) -> Response:
    """What a merchant's developer pastes: the pixel, the signed postback (HMAC or token), TUNE; the secret
    hidden until revealed, and a rotate button (the old secret stops working at once; audited)."""
    offer_id = ctx.path_int("offer_id")
    current = await odata.offer(ctx.conn, ctx.who, offer_id)
    here = f"/admin/offers/{offer_id}/integration"
    if form is not None:
        if form.get("action") == "test":
            return back(here, await send_test(ctx.portal.settings.tracker_url, current))
        if form.get("action") != "rotate":
            raise invalid("action", i18n.gettext_("must be rotate or test"))
        await rotate_secret(ctx, current)
        said = quote(i18n.gettext_("New secret made: the old one no longer works."))
        return RedirectResponse(f"{here}?reveal=1&notice={said}", 303)
    tracker = ctx.portal.settings.tracker_url
    return await show(
        ctx,
        "admin_integration.html",
        o=current,
        tracker=tracker,
        reveal=ctx.request.query_params.get("reveal") == "1",
        snippets=snippets(tracker, current),
    )


async def rotate_secret(ctx: Ctx, current: dict[str, Any]) -> None:
    import secrets

    async with ctx.conn.transaction():
        await ctx.conn.execute(
            "UPDATE offers SET postback_secret = $2, updated_at = now() WHERE id = $1",
            current["id"],
            secrets.token_hex(32),
        )
        await odata.audit(ctx.conn, ctx.who, current["merchant_id"], "rotate_secret", "offer", current["id"])


def snippets(tracker: str, o: dict[str, Any]) -> dict[str, str]:
    """The pixel and postback as a developer pastes them (placeholders in capitals)."""
    ccy, oid = o["currency"], o["id"]
    body = (
        f'{{"offer_id": "{oid}", "click_id": "CLICK_ID", "type": "purchase", "order_id": "ORDER_ID", '
        f'"amount": "129.99", "currency": "{ccy}"}}'
    )
    hmac_curl = (
        f"BODY='{body}'\n"
        "TS=$(date +%s)\n"
        'SIG=$(printf \'%s.%s\' "$TS" "$BODY" | openssl dgst -sha256 -hmac "$SECRET" | sed \'s/^.* //\')\n'
        f"curl -X POST {tracker}/postback -H 'Content-Type: application/json' \\\n"
        '  -H "X-Clickmint-Timestamp: $TS" -H "X-Clickmint-Signature: sha256=$SIG" -d "$BODY"'
    )
    token_curl = (
        f"curl -X POST {tracker}/postback -H 'Content-Type: application/json' -H \"X-Clickmint-Token: $SECRET\" "
        f"-d '{body}'"
    )
    return {
        "pixel_action": (
            f'<img src="{tracker}/a/{oid}?action=signup&amp;order_id=ORDER_ID" width="1" height="1" alt="">'
        ),
        "pixel_purchase": (
            f'<img src="{tracker}/a/{oid}?type=purchase&amp;order_id=ORDER_ID&amp;amount=129.99&amp;currency={ccy}" '
            'width="1" height="1" alt="">'
        ),
        "postback": hmac_curl if o["postback_security"] == "hmac" else token_curl,
        "tune": f"{tracker}/aff_lsr?offer_id={oid}&transaction_id=CLICK_ID&amount=129.99&adv_sub=ORDER_ID"
        "&security_token=TUNE_TOKEN",
    }


TEST_CLICK_ID = "clickmint-test"  # never a valid signed click id: the tracker refuses it and records nothing


async def send_test(tracker: str, o: dict[str, Any]) -> str:
    """A postback signed as the merchant's server signs it, sent to the tracker with a click id that can never
    attribute: it proves the address, the secret and the signing (or the token and allowlist) end to end
    without creating a conversion. Only the portal's own configured tracker is called, never a typed URL."""
    import time

    import httpx
    import orjson

    from kernel.signature import sign

    url = f"{tracker}/postback"
    body = orjson.dumps({"offer_id": str(o["id"]), "click_id": TEST_CLICK_ID, "type": "action", "action": "test"})
    headers = {"content-type": "application/json"}
    if o["postback_security"] == "hmac":
        now = int(time.time())
        headers |= {"x-clickmint-timestamp": str(now), "x-clickmint-signature": sign(o["postback_secret"], now, body)}
    else:
        headers["x-clickmint-token"] = o["postback_secret"]
    try:
        async with httpx.AsyncClient(timeout=5.0, follow_redirects=False) as client:
            answer = await client.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        return i18n.gettext_("Test: the tracker at %(url)s could not be reached (%(error)s).") % {
            "url": url,
            "error": type(exc).__name__,
        }
    try:
        code = str(orjson.loads(answer.content).get("error", ""))
    except (orjson.JSONDecodeError, AttributeError):
        code = ""
    if code.startswith("click_id_"):
        said = (
            i18n.gettext_("Test passed: the tracker accepted the signature and refused the test click id (%(code)s).")
            if o["postback_security"] == "hmac"
            else i18n.gettext_("Test passed: the tracker accepted the token and refused the test click id (%(code)s).")
        )
        return said % {"code": code} + " " + i18n.gettext_("Nothing was recorded.")
    return i18n.gettext_("Test failed: the tracker answered %(status)s %(detail)s.") % {
        "status": answer.status_code,
        "detail": code or answer.text[:80],
    }
