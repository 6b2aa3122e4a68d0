"""The payout pages in a real headless Chromium: a partner adds its payout details, a wrong IBAN comes back on
the same page with the error summary linking to the field, the corrected form saves and shows the IBAN masked;
the merchant's operator makes a SEPA batch and downloads its file."""

from __future__ import annotations

import asyncpg

from clickmint.embedded import pick_port
from kernel.settings import Settings
from portal.app import build
from tests.browser.test_portal_browser import ARGS, CHROMIUM, DESKTOP_UA, pytestmark, serve  # noqa: F401
from tests.portal.kit import PASSWORD, add_user, portal_settings


async def test_partner_details_and_operator_batch_in_chromium(settings: Settings, db: asyncpg.Connection, tmp_path):
    from playwright.async_api import async_playwright

    m = await db.fetchval(
        """INSERT INTO merchants (slug, name, currency, legal_name, country, payout_iban)
           VALUES ('sol', 'Sol Shop', 'EUR', 'Sol SL', 'ES', 'ES9121000418450200051332') RETURNING id"""
    )
    p = await db.fetchval("INSERT INTO partners (name, email) VALUES ('Pat', 'pat@p.example') RETURNING id")
    await db.execute(
        "INSERT INTO partner_programmes (partner_id, merchant_id, status) VALUES ($1, $2, 'approved')", p, m
    )
    await add_user(db, "pat@p.example", "partner", partner_id=p, merchant_id=m)
    await add_user(db, "ops@sol.example", "operator", merchant_id=m)
    sid = await db.fetchval(
        """INSERT INTO statements (number, merchant_id, partner_id, currency, period_start, period_end)
           VALUES ('CM-2026-11-000001', $1, $2, 'EUR', '2026-11-01', '2026-12-01') RETURNING id""",
        m,
        p,
    )
    await db.execute(
        """UPDATE statements SET status = 'closed', total_minor = 12345, payable = true, carried_out_minor = 0,
                                 closed_at = now() WHERE id = $1""",
        sid,
    )
    port = pick_port(0)
    core = Settings(**{**settings.__dict__, "portal_port": port})
    url = f"http://127.0.0.1:{port}"
    async with serve(build(portal_settings(core)), port), async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = await (await browser.new_context(user_agent=DESKTOP_UA)).new_page()
        await page.goto(f"{url}/login")
        await page.fill("input[name=email]", "pat@p.example")
        await page.fill("input[name=password]", PASSWORD)
        await page.click("button[type=submit]")
        await page.wait_for_url(f"{url}/dashboard")
        await page.click("text=Payout details")
        await page.wait_for_url(f"{url}/payout-details")
        await page.click(f"tr[data-merchant='{m}'] a")
        await page.fill("#legal_name", "Pat Media GmbH")
        await page.fill("#address", "Hauptstr. 1, Berlin")
        await page.fill("#country", "DE")
        await page.fill("#iban", "DE89 3704 0044 0532 0130 01")
        await page.click("form.panel button[type=submit]")
        assert "There is a problem" in await page.inner_text("#error-summary")
        assert await page.get_attribute("#iban", "aria-invalid") == "true"
        assert await page.input_value("#legal_name") == "Pat Media GmbH"  # kept
        await page.click("#error-summary a[href='#iban']")
        await page.fill("#iban", "DE89 3704 0044 0532 0130 00")
        await page.click("form.panel button[type=submit]")
        await page.wait_for_url(f"{url}/payout-details?notice=*")
        assert "DE•••3000" in await page.inner_text(f"tr[data-merchant='{m}']")

        ops = await (await browser.new_context(user_agent=DESKTOP_UA, accept_downloads=True)).new_page()
        await ops.goto(f"{url}/login")
        await ops.fill("input[name=email]", "ops@sol.example")
        await ops.fill("input[name=password]", PASSWORD)
        await ops.click("button[type=submit]")
        await ops.wait_for_url(f"{url}/admin")
        await ops.click("text=Payouts")
        await ops.wait_for_url(f"{url}/admin/payouts")
        await ops.fill("#period", "2026-11")
        await ops.click("#new-batch button[type=submit]")
        notice = await ops.inner_text(".notice")
        assert "1 payment, 123.45 EUR" in notice  # ngettext: one payment
        async with ops.expect_download() as info:
            await ops.click(".notice a")
        path = tmp_path / "batch.xml"
        await (await info.value).save_as(path)
        assert b'<InstdAmt Ccy="EUR">123.45</InstdAmt>' in path.read_bytes()
        await browser.close()
