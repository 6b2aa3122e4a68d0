"""The member's own page, opened by the signed link the shop embeds (portal/loyalty_api.member_token):
balance and its value, pending points, tier and progress, next expiry, history; under the shop's branding."""

from __future__ import annotations

import datetime as dt
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from billing.public import loyalty_ledger as ledger
from kernel.loyalty_rules import LoyaltyError
from portal import formats, pages, refusals, validate
from portal.api import Ctx, client_key
from portal.errors import ApiError
from portal.i18n import N_, gettext_
from portal.loyalty_api import read_token
from portal.operator_data import scope_merchant

# The member's history in its page's language (marked here, translated on display).
KINDS = {
    "earn": N_("Earned"),
    "spend": N_("Spent"),
    "expire": N_("Expired"),
    "reverse": N_("Refund"),
    "adjust": N_("Adjustment"),
}


async def member_page(request: Request) -> Response:
    portal = request.app.state.portal
    try:
        await portal.limiter.hit("public", client_key(request, portal.settings.proxies), portal.settings.api_per_minute)
        async with portal.pool.acquire() as conn:
            prog, customer = await read_token(conn, request.path_params["token"], dt.datetime.now(dt.UTC))
            # The browser's language, else the shop's default (nobody is signed in to have a setting).
            from portal import i18n

            default = await conn.fetchval("SELECT default_locale FROM merchants WHERE id = $1", prog.merchant_id)
            i18n.CURRENT.set(i18n.choose(None, request.headers.get("accept-language"), default))
            summary = await ledger.member_summary(conn, prog, customer)
            brand = await pages.brand_of(conn, prog.merchant_id)
    except LoyaltyError as exc:
        return pages.error_page(ApiError(exc.status, exc.code, exc.detail))
    except ApiError as exc:
        return pages.error_page(exc)
    response = pages.render(
        "loyalty/member.html",
        m=summary,
        kinds={kind: gettext_(label) for kind, label in KINDS.items()},
        brand=brand,
        value=formats.money(summary["value_minor"], prog.currency),
    )
    response.headers["Cache-Control"] = "private, no-store"
    return response


def _grouped(minor: int, currency: str, exponent_of: str | None = None) -> str:
    """Money as people read it, with its currency: 124956 USD minor units -> "1,249.56 USD"."""
    whole, _, fraction = pages.format_amount(minor, exponent_of or currency or "USD").partition(".")
    sign = "-" if whole.startswith("-") else ""
    text = f"{sign}{int(whole.lstrip('-')):,}" + (f".{fraction}" if fraction else "")
    return f"{text} {currency}" if currency else text


_FIELDS = (  # name, label, hint: in English, translated on display (_fields)
    ("customer", N_("Customer id"), N_("as the shop sends it")),
    ("points", N_("Points"), N_("whole points; negative to take some away, e.g. -50")),
    ("reason", N_("Reason"), N_("kept with the entry and in the audit log")),
)


def _fields() -> list[tuple[str, str, str]]:
    return [(name, gettext_(label), gettext_(hint)) for name, label, hint in _FIELDS]


async def admin_page(ctx: Ctx, form: dict[str, Any] | None) -> Response:
    """The operator's loyalty page: liability by month of expiry, member search, a manual adjustment."""
    named = ctx.query("merchant_id", validate.integer(1), None)
    if form is not None and form.get("merchant_id"):  # a network operator's form names its merchant
        named = validate.integer(1)("merchant_id", form["merchant_id"])
    merchant_id = scope_merchant(ctx.who, named)
    found = await ledger.load_programmes(ctx.conn, enabled_only=False)
    prog = found.get(merchant_id)
    errors: dict[str, str] = {}
    values: dict[str, str] = {}
    if form is not None and prog is not None:
        values = {name: str(form.get(name, "")).strip() for name, _, _ in _FIELDS}
        points = 0
        if not values["customer"] or len(values["customer"]) > 255:
            errors["customer"] = gettext_("Enter the customer id (at most 255 characters)")
        try:
            points = int(values["points"].replace(",", "").replace(" ", ""))
        except ValueError:
            errors["points"] = gettext_("Enter whole points, e.g. 50 or -20")
        if not values["reason"]:
            errors["reason"] = gettext_("Enter the reason for the adjustment")
        if not errors:
            try:
                balance = await ledger.adjust(
                    ctx.conn, prog, values["customer"], points, values["reason"], ctx.who.email, ctx.who.user_id or None
                )
                said = gettext_("%(customer)s: %(points)s points; balance %(balance)s") % {
                    "customer": values["customer"],
                    "points": ("+" if points > 0 else "") + formats.number(points),
                    "balance": formats.number(balance),
                }
                return pages.back("/admin/loyalty", said)
            except LoyaltyError as exc:
                errors["customer" if exc.code == "unknown_member" else "points"] = refusals.shown(exc.detail)
    q = ctx.query("q", validate.text(0, 255), "")
    data: dict[str, Any] = {"programme": None, "slug": await _slug(ctx, merchant_id), "q": q, "merchant_param": named}
    if prog is not None:
        rows = await ledger.liability(ctx.conn, prog)
        total = sum(r["points"] for r in rows)
        data |= {
            "programme": {
                "value_points": formats.number(prog.value_points),
                "value_text": formats.money(prog.value_minor, prog.currency),
                "expiry_days": prog.expiry_days,
                "refund_policy": prog.refund_policy,
                "currency": prog.currency,
            },
            "liability": [
                {
                    "label": _month(r["expires"]),
                    "points": r["points"],
                    "value_text": _amount(r["value_minor"], prog.currency),
                }
                for r in rows
            ],
            "total": {"points": total, "value_text": _amount(prog.discount_minor(total), prog.currency)},
            "pending": await ctx.conn.fetchval(
                """SELECT coalesce(sum(points - cancelled), 0)::bigint FROM loyalty_lots
                   WHERE merchant_id = $1 AND status = 'pending'""",
                merchant_id,
            ),
            "members": (await _search(ctx, merchant_id, q)),
        }
    status = 400 if errors else 200
    response = await pages.show(ctx, "loyalty/admin.html", errors=errors, values=values, fields=_fields(), **data)
    response.status_code = status
    return response


async def _slug(ctx: Ctx, merchant_id: int) -> str:
    return str(await ctx.conn.fetchval("SELECT slug FROM merchants WHERE id = $1", merchant_id) or "")


async def _search(ctx: Ctx, merchant_id: int, q: str) -> list[dict[str, Any]]:
    rows = await ctx.conn.fetch(
        """SELECT customer_ref AS customer, balance, tier, enrolled_at,
                  (SELECT coalesce(sum(points - cancelled), 0) FROM loyalty_lots l WHERE l.merchant_id = m.merchant_id
                     AND l.customer_ref = m.customer_ref AND l.status = 'pending')::bigint AS pending
           FROM loyalty_members m
           WHERE merchant_id = $1 AND ($2 = '' OR strpos(lower(customer_ref), lower($2)) > 0)
           ORDER BY customer_ref LIMIT 100""",
        merchant_id,
        q,
    )
    return [dict(r) for r in rows]


def _amount(minor: int, currency: str) -> str:
    """An amount in the page's language without its currency (the column's header names it)."""
    return formats.money(minor, currency).removesuffix(f" {currency}")


def _month(raw: str | None) -> str:
    """ "2027-01" -> "January 2027" in the page's language; None: points that never expire."""
    if raw is None:
        return gettext_("Never")
    first = dt.date(int(raw[:4]), int(raw[5:7]), 1)
    return formats.period(first, (first + dt.timedelta(days=32)).replace(day=1))


def routes() -> list[Route]:
    return [
        Route("/loyalty/m/{token}", member_page, methods=["GET"]),
        pages.page("/admin/loyalty", admin_page, "operator", ("GET", "POST")),
    ]
