"""The portal in a real headless Chromium (Debian's chromium, driven by Playwright): a partner signs in
on its merchant's branded page, sees the click it made a moment ago, sets a retail price and downloads a
statement; an operator creates an offer with a cap and the partner sees the offer and its cap. Tracker,
ingest and portal run for real on loopback."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import asyncpg
import pytest

from billing import statements
from billing.consumer import Ingest
from billing.derive import Deriver
from billing.settings import BillingSettings
from clickmint.embedded import pick_port
from kernel.env import Env
from kernel.settings import Settings
from portal.app import build
from tests.browser.kit import ARGS, CHROMIUM, DESKTOP_UA, serve
from tests.portal.kit import PASSWORD, add_user, portal_settings
from tracker.app import TrackerApp
from tracker.settings import TrackerSettings

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium); .ci/run installs it"
)


async def seed(db: asyncpg.Connection, portal_port: int) -> dict[str, Any]:
    merchant = await db.fetchval(
        """INSERT INTO merchants (slug, name, branding)
           VALUES ('sunny-shop', 'Sunny Shop', '{"primary": "#0b6e4f", "tagline": "Partners earn 10% on every order"}')
           RETURNING id"""
    )
    offer = await db.fetchval(
        """INSERT INTO offers (merchant_id, name, destination_url, currency, fee_plan)
           VALUES ($1, 'Everyday offer', $2, 'USD', '{"cps_percent": "10"}') RETURNING id""",
        merchant,
        f"http://127.0.0.1:{portal_port}/healthz?cid={{click_id}}",
    )
    partner = await db.fetchval("INSERT INTO partners (name, email) VALUES ('Pat', 'pat@p.example') RETURNING id")
    await db.execute(
        "INSERT INTO partner_programmes (partner_id, merchant_id, status) VALUES ($1, $2, 'approved')",
        partner,
        merchant,
    )
    await db.execute("INSERT INTO links (code, partner_id, offer_id) VALUES ('sunny-pat-1', $1, $2)", partner, offer)
    await db.execute("INSERT INTO products (merchant_id, sku, name) VALUES ($1, 'LAMP-1', 'Desk lamp')", merchant)
    await db.execute(
        """INSERT INTO prices (merchant_id, sku, kind, amount_minor, currency, valid_from)
           VALUES ($1, 'LAMP-1', 'wholesale', 2000, 'USD', now() - interval '1 day')""",
        merchant,
    )
    start = dt.date.today().replace(day=1) - dt.timedelta(days=1)
    start = start.replace(day=1)
    end = dt.date.today().replace(day=1)
    statement = await db.fetchval(
        """INSERT INTO statements (number, merchant_id, partner_id, currency, period_start, period_end)
           VALUES ('CM-TEST-0001', $1, $2, 'USD', $3, $4) RETURNING id""",
        merchant,
        partner,
        start,
        end,
    )
    await db.execute(
        """INSERT INTO ledger_lines (source, kind, merchant_id, partner_id, offer_id, currency, amount_minor, basis,
                                     occurred_at, statement_id)
           VALUES ('0192c0de-0000-7000-8000-000000000001', 'cps', $1, $2, $3, 'USD', 1234, '10% of 123.40 USD',
                   $4, $5)""",
        merchant,
        partner,
        offer,
        dt.datetime.combine(start, dt.time(12), dt.UTC),
        statement,
    )
    await statements.close(db, statement, dt.datetime.now(dt.UTC))
    await add_user(db, "pat@p.example", "partner", partner_id=partner, merchant_id=merchant)
    await add_user(db, "ops@sunny.example", "operator", merchant_id=merchant)
    return {"merchant": merchant, "offer": offer, "partner": partner, "statement": statement}


async def test_partner_and_operator_in_chromium(settings: Settings, db: asyncpg.Connection, tmp_path) -> None:
    from playwright.async_api import async_playwright

    tracker_port, portal_port = pick_port(0), pick_port(0)
    seeded = await seed(db, portal_port)
    core = Settings(**{**settings.__dict__, "tracker_port": tracker_port, "portal_port": portal_port})
    tracker = TrackerApp(TrackerSettings.from_env(Env({"CLICKMINT_METRICS_PORT": "0"}), core=core))
    portal = build(portal_settings(core, CLICKMINT_TRACKER_PUBLIC_URL=f"http://127.0.0.1:{tracker_port}"))
    ingest = Ingest(BillingSettings.from_env(Env({}), core=core), derive=Deriver())
    ingest_task = asyncio.create_task(ingest.run())
    tracker_url, portal_url = f"http://127.0.0.1:{tracker_port}", f"http://127.0.0.1:{portal_port}"
    try:
        async with serve(tracker, tracker_port), serve(portal, portal_port), async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            partner = await browser.new_context(user_agent=DESKTOP_UA, accept_downloads=True)
            page = await partner.new_page()

            # A visitor clicks the partner's link: 302 to the merchant, recorded.
            landing = await page.goto(f"{tracker_url}/c/sunny-pat-1?sub1=newsletter")
            assert landing is not None and landing.url.startswith(f"{portal_url}/healthz?cid=")

            # The partner signs in on the merchant's branded page.
            await page.goto(f"{portal_url}/m/sunny-shop")
            assert "Sunny Shop partner programme" in await page.inner_text("h1")
            assert "Partners earn 10% on every order" in await page.content()
            await page.fill("input[name=email]", "pat@p.example")
            await page.fill("input[name=password]", PASSWORD)
            await page.click("button[type=submit]")
            await page.wait_for_url(f"{portal_url}/dashboard")

            # The click made a moment ago shows within seconds (billing's rollups, fed by the running ingest).
            clicks = "0"
            for _ in range(50):
                await page.goto(f"{portal_url}/dashboard?range=today")
                cell = await page.query_selector('[data-metric="clicks"]')
                clicks = await cell.inner_text() if cell else "0"
                if clicks == "1":
                    break
                await asyncio.sleep(0.2)
            assert clicks == "1"
            assert "newsletter" in await page.content()

            # It sets its retail price for a markup product; below wholesale is refused with a message.
            await page.goto(f"{portal_url}/prices")
            await page.fill("tr[data-sku='LAMP-1'] input[name=retail]", "19.99")
            await page.click("tr[data-sku='LAMP-1'] button")
            assert "at least the wholesale price 20.00 USD" in await page.inner_text("main")
            await page.goto(f"{portal_url}/prices")
            await page.fill("tr[data-sku='LAMP-1'] input[name=retail]", "24.50")
            await page.click("tr[data-sku='LAMP-1'] button")
            await page.wait_for_url(f"{portal_url}/prices?notice=*")
            assert await page.inner_text("tr[data-sku='LAMP-1'] td.retail") == "24.50"

            # It downloads its statement.
            await page.goto(f"{portal_url}/statements")
            async with page.expect_download() as info:
                await page.click("text=CSV")
            download = await info.value
            path = tmp_path / "statement.csv"
            await download.save_as(path)
            text = path.read_text()
            assert "CM-TEST-0001" in text and "12.34" in text

            # An operator creates a partner-only offer; the partner sees it.
            operator = await browser.new_context(user_agent=DESKTOP_UA)
            ops = await operator.new_page()
            await ops.goto(f"{portal_url}/login")
            await ops.fill("input[name=email]", "ops@sunny.example")
            await ops.fill("input[name=password]", PASSWORD)
            await ops.click("button[type=submit]")
            await ops.wait_for_url(f"{portal_url}/admin")
            await ops.goto(f"{portal_url}/admin/offers")
            await ops.fill("#new-offer input[name=name]", "Partners-only winter sale")
            await ops.fill("#new-offer input[name=destination_url]", "https://sunny.example/winter?c={click_id}")
            await ops.select_option("#new-offer select[name=visibility]", "partners")
            await ops.check("#new-offer input[name=m_cps]")
            await ops.fill("#new-offer input[name=cps_percent]", "12")
            await ops.fill("#new-offer input[name=cap_partner_clicks_daily]", "5")
            await ops.click("#new-offer button[type=submit]")
            await ops.wait_for_url(f"{portal_url}/admin/offers?notice=*")
            assert "Offer Partners-only winter sale created." in await ops.inner_text(".notice")

            # The integration page's test reaches the real tracker, signed with the offer's secret; nothing recorded.
            await ops.goto(f"{portal_url}/admin/offers/{seeded['offer']}/integration")
            await ops.click("button[value=test]")
            notice = await ops.inner_text(".notice")
            assert notice.startswith("Test passed: the tracker accepted the signature"), notice
            await ops.goto(f"{portal_url}/admin/offers/{seeded['offer']}/integration")
            await ops.click("button[value=rotate]")
            # The tracker learns the new secret through the config version: the test passes with it shortly.
            for _ in range(50):
                await ops.goto(f"{portal_url}/admin/offers/{seeded['offer']}/integration")
                await ops.click("button[value=test]")
                notice = await ops.inner_text(".notice")
                if notice.startswith("Test passed"):
                    break
                await asyncio.sleep(0.2)
            assert notice.startswith("Test passed"), notice

            await page.goto(f"{portal_url}/offers")
            offers = await page.inner_text("#offers")
            assert "Partners-only winter sale" in offers and "partners only" in offers
            assert "Your daily cap: 0 clicks of 5 clicks used today (UTC)" in offers  # read from the tracker's counters
            await browser.close()
    finally:
        ingest.stop()
        await ingest_task
