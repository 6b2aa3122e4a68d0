"""The loyalty member's page in a real headless Chromium at a phone's width: under the shop's branding, one h1,
the balance with its value, the history as a table, no sideways scroll; a forged link is a 404 page."""

from __future__ import annotations

import datetime as dt

import asyncpg

from billing import loyalty_ledger as ledger
from billing.derive import Deriver
from clickmint.embedded import pick_port
from kernel.settings import Settings
from portal.app import build
from portal.loyalty_api import member_token
from tests.browser.test_portal_browser import ARGS, CHROMIUM, pytestmark, serve  # noqa: F401
from tests.loyalty_kit import action, ingest, shop
from tests.portal.kit import portal_settings


async def test_member_page_on_a_phone(settings: Settings, db: asyncpg.Connection) -> None:
    from playwright.async_api import async_playwright

    prog = await shop(db)
    await db.execute(
        "UPDATE merchants SET name = 'Sunny Shop', branding = '{\"primary\": \"#0b6e4f\"}' WHERE id = $1",
        prog.merchant_id,
    )
    await ingest(db, Deriver(), *(action(prog, "ann@example.com", "signup") for _ in range(30)))
    loyalty = await ledger.programme_of(db, prog.merchant_id)
    await ledger.adjust(db, loyalty, "ann@example.com", 123_456, "a very long reason " * 5, "ops")
    secret = await db.fetchval("SELECT link_secret FROM loyalty_programmes WHERE merchant_id = $1", prog.merchant_id)
    token = member_token(secret, prog.merchant_id, "ann@example.com", dt.datetime.now(dt.UTC) + dt.timedelta(days=1))
    port = pick_port(0)
    core = Settings(**{**settings.__dict__, "portal_port": port})
    async with serve(build(portal_settings(core)), port), async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = await browser.new_page(viewport={"width": 390, "height": 844})
        response = await page.goto(f"http://127.0.0.1:{port}/loyalty/m/{token}")
        assert response is not None and response.status == 200
        assert await page.locator("h1").count() == 1
        body = await page.inner_text("main")
        assert "124,956 points" in body  # 30 x 50 + 123,456
        assert "1,249.56" in body  # 100 points = 1.00 USD
        assert await page.locator("table tbody tr").count() == 31
        assert "Sunny Shop" in await page.title()
        wide = await page.evaluate("document.documentElement.scrollWidth > document.documentElement.clientWidth")
        assert not wide, "the page scrolls sideways at 390 px"
        forged = await page.goto(f"http://127.0.0.1:{port}/loyalty/m/{token[:-2]}00")
        assert forged is not None and forged.status == 404
        await browser.close()
