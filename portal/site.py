"""The page routes of the portal, gathered from the page modules."""

from __future__ import annotations

from starlette.routing import Route

from portal.pages import page
from portal.pages_attribution import admin_holds, partner_coupons
from portal.pages_auth import forgot, home, invitation_page, login_page, login_submit, logout_submit, reset_page
from portal.pages_operator import (
    admin_audit,
    admin_conversions,
    admin_creatives,
    admin_home,
    admin_links,
    admin_offers,
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


def routes() -> list[Route]:
    return [
        Route("/", home),
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login_submit, methods=["POST"]),
        Route("/m/{slug}", login_page, methods=["GET"]),
        Route("/logout", logout_submit, methods=["POST"]),
        Route("/forgot", forgot, methods=["GET", "POST"]),
        Route("/reset", reset_page, methods=["GET", "POST"]),
        Route("/invitation", invitation_page, methods=["GET", "POST"]),
        page("/dashboard", dashboard, "partner"),
        page("/orders", orders_page, "partner"),
        page("/offers", offers_page, "partner"),
        page("/links", links_page, "partner", ("GET", "POST")),
        page("/prices", prices_page, "partner", ("GET", "POST")),
        page("/postbacks", postbacks_page, "partner", ("GET", "POST")),
        page("/statements", statements_page, "partner"),
        page("/statements/{statement_id}", statement_page, "partner"),
        page("/admin", admin_home, "operator"),
        page("/admin/offers", admin_offers, "operator", ("GET", "POST")),
        page("/admin/partners", admin_partners, "operator", ("GET", "POST")),
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
