"""The member's own page, opened by the signed link the shop embeds (portal/loyalty_api.member_token):
balance and its value, pending points, tier and progress, next expiry, history; under the shop's branding."""

from __future__ import annotations

import datetime as dt

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from billing import loyalty_ledger as ledger
from billing.loyalty_rules import LoyaltyError
from portal import pages
from portal.api import client_key
from portal.errors import ApiError
from portal.loyalty_api import read_token

KINDS = {"earn": "Earned", "spend": "Spent", "expire": "Expired", "reverse": "Refund", "adjust": "Adjustment"}


async def member_page(request: Request) -> Response:
    portal = request.app.state.portal
    try:
        await portal.limiter.hit(
            "public", client_key(request, portal.settings.trust_forwarded), portal.settings.api_per_minute
        )
        async with portal.pool.acquire() as conn:
            prog, customer = await read_token(conn, request.path_params["token"], dt.datetime.now(dt.UTC))
            summary = await ledger.member_summary(conn, prog, customer)
            brand = await pages.brand_of(conn, prog.merchant_id)
    except LoyaltyError as exc:
        return pages.error_page(ApiError(exc.status, exc.code, exc.detail))
    except ApiError as exc:
        return pages.error_page(exc)
    response = pages.render(
        "loyalty/member.html",
        m=summary,
        kinds=KINDS,
        brand=brand,
        value=_grouped(summary["value_minor"], prog.currency),
    )
    response.headers["Cache-Control"] = "private, no-store"
    return response


def _grouped(minor: int, currency: str) -> str:
    """Money as people read it, with its currency: 124956 USD minor units -> "1,249.56 USD"."""
    whole, _, fraction = pages.format_amount(minor, currency).partition(".")
    sign = "-" if whole.startswith("-") else ""
    return f"{sign}{int(whole.lstrip('-')):,}" + (f".{fraction}" if fraction else "") + f" {currency}"


def routes() -> list[Route]:
    return [Route("/loyalty/m/{token}", member_page, methods=["GET"])]
