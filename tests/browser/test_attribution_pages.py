"""The review page and the partner's coupon page in a real headless Chromium: an operator's reason-less decision
comes back with the error beside the field and writes nothing; with a reason the conversion is approved and
audited; the partner sees its code, its uses and the hold's outcome."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from clickmint.embedded import pick_port
from kernel.settings import Settings
from portal.app import build
from tests.browser.test_portal_browser import ARGS, CHROMIUM, DESKTOP_UA, serve
from tests.portal.kit import PASSWORD, add_user, portal_settings

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")


async def _seed(db: asyncpg.Connection) -> str:
    merchant = await db.fetchval("INSERT INTO merchants (slug, name) VALUES ('sunny-shop', 'Sunny Shop') RETURNING id")
    offer = await db.fetchval(
        """INSERT INTO offers (merchant_id, name, destination_url, currency)
           VALUES ($1, 'Everyday offer', 'https://shop.example/', 'USD') RETURNING id""",
        merchant,
    )
    partner = await db.fetchval("INSERT INTO partners (name, email) VALUES ('Pat', 'pat@p.example') RETURNING id")
    await db.execute(
        "INSERT INTO partner_programmes (partner_id, merchant_id, status) VALUES ($1, $2, 'approved')",
        partner,
        merchant,
    )
    await db.execute("INSERT INTO coupons (offer_id, partner_id, code) VALUES ($1, $2, 'PAT10')", offer, partner)
    event_id = uuid.uuid4()
    await db.execute(
        """INSERT INTO conversions (event_id, ts, kind, merchant_id, offer_id, partner_id, order_id, amount_minor,
                                    currency, status, hold_until, held_reason, held_until, coupon, credited_by)
           VALUES ($1, now(), 'purchase', $2, $3, $4, 'ORDER-77', 12345, 'USD', 'held', now(), 'self_referral',
                   now() + interval '30 days', 'PAT10', 'coupon')""",
        event_id,
        merchant,
        offer,
        partner,
    )
    await add_user(db, "pat@p.example", "partner", partner_id=partner, merchant_id=merchant)
    await add_user(db, "ops@sunny.example", "operator", merchant_id=merchant)
    return str(event_id)


async def test_review_and_coupon_pages(settings: Settings, db: asyncpg.Connection) -> None:
    from playwright.async_api import async_playwright

    event_id = await _seed(db)
    port = pick_port(0)
    core = Settings(**{**settings.__dict__, "portal_port": port})
    portal = build(portal_settings(core))
    url = f"http://127.0.0.1:{port}"
    async with serve(portal, port), async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        ops = await (
            await browser.new_context(user_agent=DESKTOP_UA, viewport={"width": 390, "height": 800})
        ).new_page()
        await ops.goto(f"{url}/login")
        await ops.fill("input[name=email]", "ops@sunny.example")
        await ops.fill("input[name=password]", PASSWORD)
        await ops.click("button[type=submit]")
        await ops.goto(f"{url}/admin/holds")
        row = ops.locator("#holds tbody tr", has_text="ORDER-77")
        assert "self_referral" in await row.inner_text() and "123.45 USD" in await row.inner_text()
        await row.locator("button[value=approve]").click()  # no reason given
        await ops.wait_for_load_state()
        assert "There is a problem" in await ops.inner_text("#error-summary")
        field = ops.locator(f"#reason-{event_id}")
        assert await field.get_attribute("aria-invalid") == "true"
        assert await db.fetchval("SELECT status FROM conversions") == "held"  # nothing written
        # The page does not scroll sideways on a phone: the table scrolls in its own box.
        assert await ops.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        await field.fill("known customer, checked by phone")
        await ops.locator("#holds tbody tr", has_text="ORDER-77").locator("button[value=approve]").click()
        await ops.wait_for_load_state()
        assert "pending" in await ops.inner_text("p.notice")
        assert await db.fetchval("SELECT status FROM conversions") == "pending"
        assert await db.fetchval("SELECT count(*) FROM audit_log WHERE action = 'conversion.approve'") == 1

        pat = await (await browser.new_context(user_agent=DESKTOP_UA)).new_page()
        await pat.goto(f"{url}/login")
        await pat.fill("input[name=email]", "pat@p.example")
        await pat.fill("input[name=password]", PASSWORD)
        await pat.click("button[type=submit]")
        await pat.goto(f"{url}/coupons")
        coupons = await pat.inner_text("#coupons")
        assert "PAT10" in coupons and "123.45 USD" in coupons
        holds = await pat.inner_text("#holds")
        assert "self_referral" in holds and "pending" in holds and "known customer" in holds
        await browser.close()
