"""The page routes of the portal, gathered from the page modules."""

from __future__ import annotations

from pathlib import Path

from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from portal.pages import page
from portal.pages_account import admin_account, creative_image, creatives_page, notifications_page, profile_page
from portal.pages_attribution import admin_holds, partner_coupons
from portal.pages_auth import forgot, home, invitation_page, login_page, login_submit, logout_submit, reset_page
from portal.pages_offers import admin_integration, admin_offer, admin_offers
from portal.pages_operator import (
    admin_audit,
    admin_conversions,
    admin_creatives,
    admin_links,
    admin_partner,
    admin_partners,
    admin_products,
    admin_rates,
    admin_statements,
)
from portal.pages_partner import (
    dashboard,
    links_page,
    offers_page,
    orders_page,
    postbacks_page,
    prices_page,
    statement_page,
    statements_page,
)
from portal.pages_report import admin_home
from portal.payout_pages import admin_payouts, my_details, my_programmes, partner_details

STATIC = Path(__file__).parent / "static"


def routes() -> list[BaseRoute]:
    return [
        Route("/", home),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login_submit, methods=["POST"]),
        Route("/m/{slug}", login_page, methods=["GET"]),
        Route("/logout", logout_submit, methods=["POST"]),
        Route("/forgot", forgot, methods=["GET", "POST"]),
        Route("/reset", reset_page, methods=["GET", "POST"]),
        Route("/invitation", invitation_page, methods=["GET", "POST"]),
        page("/dashboard", dashboard, "partner"),
        page("/orders", orders_page, "partner"),
        page("/offers", offers_page, "partner", ("GET", "POST")),
        page("/links", links_page, "partner", ("GET", "POST")),
        page("/prices", prices_page, "partner", ("GET", "POST")),
        page("/postbacks", postbacks_page, "partner", ("GET", "POST")),
        page("/statements", statements_page, "partner"),
        page("/creatives", creatives_page, "partner"),
        page("/creatives/{creative_id}/image", creative_image, "partner"),
        page("/profile", profile_page, "partner", ("GET", "POST")),
        page("/notifications", notifications_page, "partner", ("GET", "POST")),
        page("/statements/{statement_id}", statement_page, "partner"),
        page("/payout-details", my_programmes, "partner"),
        page("/payout-details/{merchant_id}", my_details, "partner", ("GET", "POST")),
        page("/admin", admin_home, "operator"),
        page("/admin/account", admin_account, "operator", ("GET", "POST")),
        page("/admin/payouts", admin_payouts, "operator", ("GET", "POST")),
        page("/admin/partners/{partner_id}/payout-details", partner_details, "operator", ("GET", "POST")),
        page("/admin/offers", admin_offers, "operator", ("GET", "POST")),
        page("/admin/offers/{offer_id}", admin_offer, "operator", ("GET", "POST")),
        page("/admin/offers/{offer_id}/integration", admin_integration, "operator", ("GET", "POST")),
        page("/admin/partners", admin_partners, "operator", ("GET", "POST")),
        page("/admin/partners/{partner_id}", admin_partner, "operator", ("GET", "POST")),
        page("/admin/statements", admin_statements, "operator", ("GET", "POST")),
        page("/admin/audit", admin_audit, "operator"),
        page("/admin/conversions", admin_conversions, "operator"),
        page("/admin/links", admin_links, "operator", ("GET", "POST")),
        page("/admin/creatives", admin_creatives, "operator", ("GET", "POST")),
        page("/admin/products", admin_products, "operator", ("GET", "POST")),
        page("/admin/rates", admin_rates, "operator", ("GET", "POST")),
        page("/admin/holds", admin_holds, "operator", ("GET", "POST")),
        page("/coupons", partner_coupons, "partner"),
    ]
